// Package syncworker is the SyncWorker function: it receives the
// notifications topic's messages as Eventarc Pub/Sub CloudEvents and hands
// each to the sync engine (shared/syncer), which coalesces them into
// incremental syncs of the calendar's Firestore mirror and publishes the
// change feed. A nil return acknowledges; an error makes Pub/Sub redeliver.
package syncworker

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/calsync/calsync/shared/logging"
	"github.com/calsync/calsync/shared/messages"
	"github.com/calsync/calsync/shared/syncer"
)

// Worker handles notifications with the sync engine.
type Worker struct {
	Syncer *syncer.Syncer
	Logger *slog.Logger
}

// HandleNotification syncs for one notification (see syncer.HandleNotification).
func (w *Worker) HandleNotification(ctx context.Context, n messages.Notification) error {
	return w.Syncer.HandleNotification(logging.WithLogger(ctx, w.Logger), n)
}

// PubSubMessage is the message inside Eventarc's
// google.cloud.pubsub.topic.v1.messagePublished data.
type PubSubMessage struct {
	Data        []byte            `json:"data"` // base64 in JSON
	Attributes  map[string]string `json:"attributes,omitempty"`
	MessageID   string            `json:"messageId,omitempty"`
	PublishTime time.Time         `json:"publishTime,omitempty"`
}

// MessagePublishedData is the CloudEvent data Eventarc sends for Pub/Sub.
type MessagePublishedData struct {
	Message      PubSubMessage `json:"message"`
	Subscription string        `json:"subscription,omitempty"`
}

// HandleCloudEvent decodes an Eventarc Pub/Sub CloudEvent and handles its
// notification. Undecodable or invalid messages are logged (WARNING) and
// acknowledged: redelivering them cannot help.
func (w *Worker) HandleCloudEvent(ctx context.Context, e event.Event) error {
	n, id, err := decode(e)
	if err != nil {
		w.Logger.Warn("invalid notification message; acknowledged", logging.KeyEvent, logging.EventSyncError,
			logging.KeyReason, "invalid_message", logging.KeyMessageID, id, logging.KeyError, err.Error())
		return nil
	}
	return w.HandleNotification(ctx, n)
}

func decode(e event.Event) (messages.Notification, string, error) {
	var d MessagePublishedData
	if err := json.Unmarshal(e.Data(), &d); err != nil {
		// Some senders base64 the whole payload (e.g. structured mode).
		if raw, berr := base64.StdEncoding.DecodeString(string(e.Data())); berr == nil && json.Unmarshal(raw, &d) == nil {
			err = nil
		}
		if err != nil {
			return messages.Notification{}, "", fmt.Errorf("%w: CloudEvent data is not a Pub/Sub message: %v", messages.ErrInvalid, err)
		}
	}
	if len(d.Message.Data) == 0 {
		return messages.Notification{}, d.Message.MessageID, errors.New("empty Pub/Sub message data")
	}
	n, err := messages.ParseNotification(d.Message.Data)
	return n, d.Message.MessageID, err
}
