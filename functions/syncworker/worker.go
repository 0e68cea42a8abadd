// Package syncworker is the SyncWorker function: an HTTP function that reads
// the notifications topic's messages in Pub/Sub's push format (the push
// subscription terraform/pubsub.tf deploys) and hands each to the sync
// engine (shared/syncer), which coalesces them into incremental syncs of the
// calendar's Firestore mirror and publishes the change feed. 2xx acknowledges;
// 503 makes Pub/Sub redeliver with the subscription's backoff.
package syncworker

import (
	"context"
	"log/slog"
	"strings"

	"github.com/calsync/calsync/shared/messages"
	"github.com/calsync/calsync/shared/tenant"
)

// Syncer is what the worker needs of the sync engine (*syncer.Syncer):
// nil acknowledges the notification, an error asks for redelivery.
type Syncer interface {
	HandleNotification(ctx context.Context, n messages.Notification) error
}

// Enroller is what the worker needs of the enrollment engine
// (shared/enroll): calendarList pushes and control messages. nil
// acknowledges; a *messages.InvalidError marks a message that can never be
// done; any other error asks for redelivery.
type Enroller interface {
	HandleListNotification(ctx context.Context, n messages.Notification) error
	HandleControl(ctx context.Context, t tenant.Tenant, c messages.Control) error
	// AnswerControl answers a control message on the lifecycle topic
	// (err: what HandleControl or parsing returned).
	AnswerControl(ctx context.Context, t tenant.Tenant, c messages.Control, err error)
}

// Worker serves Pub/Sub push requests (ServeHTTP, push.go) with a Syncer.
type Worker struct {
	Syncer    Syncer
	Logger    *slog.Logger
	ProjectID string // for the trace field of log lines
	// Enroll handles calendarList notifications and control messages (nil:
	// they are acknowledged with an ERROR line).
	Enroll Enroller
	// ControlSubscription is the control topic's push subscription (an id
	// in ProjectID, or a full name): pushes of exactly that subscription are
	// the default tenant's control messages (control.go).
	ControlSubscription string
	// Tenants: the other tenants' control subscriptions (ids in ProjectID)
	// deliver their control messages.
	Tenants tenant.Set
	// Subscriptions are the notifications topic's push subscriptions (ids in
	// ProjectID, or full names): pushes of exactly these are notifications.
	// A push of any other subscription is refused (ReasonUnknownSubscription):
	// someone else's subscription pointed at this function.
	Subscriptions []string
}

// fullSubscription is a subscription's full name: "projects/P/subscriptions/ID".
func (w *Worker) fullSubscription(s string) string {
	if strings.HasPrefix(s, "projects/") {
		return s
	}
	return "projects/" + w.ProjectID + "/subscriptions/" + s
}

// controlTenant is the tenant whose control subscription a push came from
// (ok false: not a control subscription).
func (w *Worker) controlTenant(subscription string) (t tenant.Tenant, ok bool) {
	if w.ControlSubscription != "" && subscription == w.fullSubscription(w.ControlSubscription) {
		return w.Tenants.Get(tenant.Default)
	}
	id, found := strings.CutPrefix(subscription, w.fullSubscription(""))
	if !found || id == "" {
		return t, false
	}
	return w.Tenants.BySubscription(id)
}

// isNotifications reports whether a push came from one of the
// notifications subscriptions.
func (w *Worker) isNotifications(subscription string) bool {
	for _, s := range w.Subscriptions {
		if subscription == w.fullSubscription(s) {
			return true
		}
	}
	return false
}

// HandleNotification syncs for one notification (see
// syncer.HandleNotification); nil means acknowledge. ServeHTTP passes a
// context whose logger (logging.FromContext) names the push delivery.
func (w *Worker) HandleNotification(ctx context.Context, n messages.Notification) error {
	if n.Resource == messages.ResourceCalendarList {
		if w.Enroll == nil {
			return &messages.InvalidError{Reason: messages.ReasonUnknownResource, Detail: "calendarList notification and no enrollment configured"}
		}
		return w.Enroll.HandleListNotification(ctx, n)
	}
	return w.Syncer.HandleNotification(ctx, n)
}
