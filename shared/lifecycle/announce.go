package lifecycle

import (
	"context"
	"time"

	"github.com/calsync/calsync/shared/logging"
	"github.com/calsync/calsync/shared/messages"
	"github.com/calsync/calsync/shared/store"
	"github.com/calsync/calsync/shared/tenant"
)

// Announcer publishes lifecycle messages: the LIFECYCLE_TOPIC publisher.
type Announcer interface {
	Publish(ctx context.Context, data []byte, attrs map[string]string, orderingKey string) error
}

// Announce publishes m on the lifecycle topic, once its transition is
// recorded. A publish that fails is logged at ERROR (lifecycle_publish_failed,
// alerted) and not retried by the caller: the transition is recorded, and
// redoing it would not announce it again. nil Announcer: nothing.
func (o *Owner) Announce(ctx context.Context, m messages.Lifecycle) {
	if o.Announcer == nil {
		return
	}
	if m.OccurredAt.IsZero() {
		m.OccurredAt = time.Now()
	}
	data, attrs, err := m.Encode()
	if err == nil {
		err = o.Announcer.Publish(ctx, data, attrs, "")
	}
	if err != nil {
		o.log(ctx).ErrorContext(ctx, "lifecycle message not published; the transition is recorded", logging.KeyEvent, logging.EventLifecyclePublishFailed,
			logging.KeyType, m.Type, logging.KeyTenant, m.Tenant, logging.KeyIdentityKey, m.IdentityKey, logging.KeyCalendarKey, m.CalendarKey,
			logging.KeyError, err.Error())
	}
}

// announceTarget publishes a transition of t, attributed to t.
func (o *Owner) announceTarget(ctx context.Context, t Target, typ string, m messages.Lifecycle) {
	m.Type = typ
	switch t.Kind {
	case KindCalendar:
		m.Attribution = t.Calendar.Attribution()
		m.CalendarKey, m.CalendarID = t.Key, t.Calendar.CalendarID
	case KindIdentity:
		m.Attribution = t.Identity.Attribution(t.Key)
	case KindDomain:
		m.Attribution = messages.Attribution{Tenant: tenant.Default}
		m.Domain = t.Domain
	}
	o.Announce(ctx, m)
}

// announceAuthProblem publishes a grant's refusal: for its identity when
// it is enrolled (idKey), else for the calendar it reads.
func (o *Owner) announceAuthProblem(ctx context.Context, t Target, idKey, status, reason string) {
	m := messages.Lifecycle{Status: status, Reason: status, Detail: Advice(status) + " (" + reason + ")", UserAction: UserAction(status, grantOf(t).AuthMode)}
	if idKey == "" || t.Kind == KindDomain {
		typ := messages.LifecycleCalendarAuthProblem
		if t.Kind == KindDomain {
			typ = messages.LifecycleDomainAuthProblem
		}
		o.announceTarget(ctx, t, typ, m)
		return
	}
	m.Type = messages.LifecycleIdentityAuthProblem
	id := t.Identity
	if t.Kind != KindIdentity {
		// Met on a calendar: the identity says whose it is (a read only
		// on a transition, which is rare).
		var err error
		if id, err = o.Store.GetIdentity(ctx, idKey); err != nil {
			id = store.Identity{Tenant: t.Calendar.Tenant}
		}
	}
	m.Attribution = id.Attribution(idKey)
	o.Announce(ctx, m)
}

// UserAction is who must do what about a refusal status: an OAuth user
// reconnects; a Workspace admin authorises delegation or lifts a policy;
// the operator enables an API or the OAuth client.
func UserAction(status, authMode string) string {
	switch status {
	case store.StatusAuthRevoked, store.StatusScopeMissing:
		if authMode == store.AuthOAuth {
			if status == store.StatusScopeMissing {
				return messages.UserGrantScopes
			}
			return messages.UserReconnect
		}
		return messages.UserAskAdmin
	case store.StatusDelegationUnauthorized, store.StatusAdminPolicy, store.StatusDirectoryForbidden:
		return messages.UserAskAdmin
	}
	return messages.UserOperator
}

// announceUnenrolled publishes an identity's unenrollment (not again for
// one unenrolled already: reports repeat).
func (o *Owner) announceUnenrolled(ctx context.Context, t Target, reason string) {
	if t.Kind == KindIdentity && t.status() != store.StatusUnenrolled {
		o.announceTarget(ctx, t, messages.LifecycleIdentityUnenrolled, messages.Lifecycle{Status: store.StatusUnenrolled, Detail: reason})
	}
}
