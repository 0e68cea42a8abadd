// Package messages defines the JSON carried on calsync's two topics: the
// notifications topic (Webhook and RenewChannels → SyncWorker) and the changes
// topic (SyncWorker → consumers). Both sides import these types, so the wire
// format has one definition.
package messages

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Resource states. Google sends sync, exists and not_exists; calsync's own
// requests (RenewChannels, the CLI) use reconcile and full_resync.
const (
	StateSync       = "sync"
	StateExists     = "exists"
	StateNotExists  = "not_exists"
	StateReconcile  = "reconcile"   // sync now, incrementally, whatever happened
	StateFullResync = "full_resync" // drop the token and list everything again
)

// Attribute keys.
const (
	AttrCalendarKey   = "calendarKey"
	AttrResourceState = "resourceState"
	AttrEventID       = "eventId"
	AttrChange        = "change"
)

// Notification is one message on the notifications topic.
type Notification struct {
	ChannelID         string    `json:"channelId,omitempty"`
	ResourceID        string    `json:"resourceId,omitempty"`
	ResourceURI       string    `json:"resourceUri,omitempty"`
	ResourceState     string    `json:"resourceState"`
	MessageNumber     int64     `json:"messageNumber,omitempty"`
	CalendarKey       string    `json:"calendarKey"`
	ChannelExpiration string    `json:"channelExpiration,omitempty"`
	ReceivedAt        time.Time `json:"receivedAt"`
}

// Attributes returns the Pub/Sub attributes of a notification.
func (n Notification) Attributes() map[string]string {
	return map[string]string{AttrCalendarKey: n.CalendarKey, AttrResourceState: n.ResourceState}
}

// Request is calsync's own sync request for a calendar (state
// StateReconcile or StateFullResync), ready to publish on the notifications
// topic.
func Request(calendarKey, state string, now time.Time) (data []byte, attrs map[string]string, err error) {
	n := Notification{ResourceState: state, CalendarKey: calendarKey, ReceivedAt: now.UTC()}
	data, err = json.Marshal(n)
	return data, n.Attributes(), err
}

// ErrInvalid marks a message that can never be processed (acknowledge it).
var ErrInvalid = errors.New("invalid message")

// ParseNotification decodes and checks a notification.
func ParseNotification(data []byte) (Notification, error) {
	var n Notification
	if err := json.Unmarshal(data, &n); err != nil {
		return n, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if n.CalendarKey == "" {
		return n, fmt.Errorf("%w: no calendarKey", ErrInvalid)
	}
	switch n.ResourceState {
	case StateSync, StateExists, StateNotExists, StateReconcile, StateFullResync:
	default:
		return n, fmt.Errorf("%w: unknown resourceState %q", ErrInvalid, n.ResourceState)
	}
	return n, nil
}

// Change kinds on the changes topic.
const (
	ChangeCreated = "created"
	ChangeUpdated = "updated"
	ChangeDeleted = "deleted"
)

// Change is one message on the changes topic: one event that changed.
// Delivery is at least once: consumers deduplicate on (EventID, Etag).
type Change struct {
	CalendarID   string          `json:"calendarId"`
	CalendarKey  string          `json:"calendarKey"`
	EventID      string          `json:"eventId"`
	Change       string          `json:"change"`
	Etag         string          `json:"etag"`
	PreviousEtag string          `json:"previousEtag,omitempty"`
	Sequence     int64           `json:"sequence"`
	Updated      string          `json:"updated,omitempty"`
	SyncedAt     time.Time       `json:"syncedAt"`
	Event        json.RawMessage `json:"event"`
}

// Attributes returns the Pub/Sub attributes of a change.
func (c Change) Attributes() map[string]string {
	return map[string]string{AttrCalendarKey: c.CalendarKey, AttrEventID: c.EventID, AttrChange: c.Change}
}
