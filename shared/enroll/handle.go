package enroll

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/calsync/calsync/shared/calclient"
	"github.com/calsync/calsync/shared/credentials"
	"github.com/calsync/calsync/shared/lifecycle"
	"github.com/calsync/calsync/shared/logging"
	"github.com/calsync/calsync/shared/messages"
	"github.com/calsync/calsync/shared/sealed"
	"github.com/calsync/calsync/shared/store"
	"github.com/calsync/calsync/shared/tenant"
)

// What the SyncWorker hands over: calendarList pushes (and calsync's own
// list reconcile requests) from the notifications topic, and control
// messages from the control topic. nil acknowledges; a *messages.InvalidError
// marks a message that can never be done (the worker logs it at ERROR,
// counts it, acknowledges it; nothing was changed); any other error asks
// Pub/Sub to redeliver.

// HandleListNotification looks at an identity's calendar list again for a
// push of its list channel. The channel's first message ("sync") needs
// nothing once the identity has been listed; a push received before the
// last applied listing began is covered by it (no call).
func (e *Enroller) HandleListNotification(ctx context.Context, n messages.Notification) error {
	key := n.IdentityKey
	id, err := e.Store.GetIdentity(ctx, key)
	if errors.Is(err, store.ErrNotFound) {
		// The Webhook verified the token, so the key is ours: the identity
		// document is missing (deleted by hand). The channel ends with its TTL.
		e.log(ctx).WarnContext(ctx, "calendarList notification for an identity that is not enrolled; acknowledged",
			logging.KeyIdentityKey, key, logging.KeyResourceState, n.ResourceState)
		return nil
	}
	if err != nil {
		return err
	}
	switch {
	case id.Status != store.StatusActive:
		// Unenrolled (or its grant died): stop a channel still delivering.
		return e.ensureList(ctx, key, id)
	case n.ResourceState == messages.StateSync && !id.ListedAt.IsZero():
		return nil
	case !n.ReceivedAt.IsZero() && n.ReceivedAt.Before(id.ListedAt):
		e.log(ctx).DebugContext(ctx, "calendarList notification covered by a later listing", logging.KeyIdentityKey, key)
		return nil
	}
	_, err = e.Discover(ctx, key)
	return err
}

// HandleControl does what tenant t's control message asks. The message was
// checked by messages.ParseControl; what only acting can find is a
// *messages.InvalidError, found before anything changes: a message issued
// outside the freshness window, an identity outside the tenant's domains or
// of another tenant, one superseded by a later message of the identity, an
// identity never enrolled, a sealed token that does not open, a grant that
// does not work. A requestId done before is a *DuplicateError (nothing is
// done again); while another message of the identity is being applied it
// is ErrControlBusy (redeliver later), so the identity's messages apply in
// the order they were issued.
func (e *Enroller) HandleControl(ctx context.Context, t tenant.Tenant, c messages.Control, creds *credentials.Vault) error {
	start := e.now()
	invalid := func(reason, format string, a ...any) error {
		return &messages.InvalidError{Reason: reason, Detail: fmt.Sprintf(format, a...)}
	}
	maxAge := e.controlMaxAge()
	if age := start.Sub(c.IssuedAt); age > maxAge || age < -time.Minute {
		return invalid(messages.ReasonStaleRequest, "issuedAt %s is not within %s before now (%s)", c.IssuedAt.UTC().Format(time.RFC3339), maxAge, start.Format(time.RFC3339))
	}
	sp := controlSpec(t, c)
	switch {
	case c.Subject != "" && !t.MayDelegate(c.Subject):
		return invalid(messages.ReasonOutsideTenant, "tenant %s may not enroll %s: not in its domains or subjects (TENANTS)", t.Name, c.Subject)
	case c.CredentialID != "" && !t.OAuth:
		return invalid(messages.ReasonOutsideTenant, "tenant %s may not enroll OAuth grants (TENANTS oauth false)", t.Name)
	}
	key := sp.Key()
	if id, err := e.Store.GetIdentity(ctx, key); err == nil && tenant.Of(id.Tenant) != t.Name {
		return invalid(messages.ReasonOtherTenant, "identity %s belongs to another tenant", key)
	} else if err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	req := store.ControlRequest{Tenant: t.Name, RequestID: c.RequestID, IdentityKey: key, Action: c.Action, IssuedAt: c.IssuedAt.UTC()}
	claim, outcome, err := e.Store.ClaimControl(ctx, req, controlHold, 2*maxAge)
	switch {
	case err != nil:
		return err
	case claim == store.ClaimDuplicate:
		return &DuplicateError{Outcome: outcome}
	case claim == store.ClaimBusy:
		return ErrControlBusy
	case claim == store.ClaimSuperseded:
		return invalid(messages.ReasonSuperseded, "a control message for identity %s issued later was applied; this one is older", key)
	}
	if c.Action == messages.ActionDisconnect && t.DeleteMirrorOnDisconnect {
		c.DeleteMirror = true // the tenant's policy
	}
	result, err := e.act(ctx, sp, c, creds)
	if err != nil && !errors.Is(err, messages.ErrInvalid) {
		return err // redelivered: the claim is this request's, it goes again
	}
	outcome = OutcomeAccepted
	if err != nil {
		outcome = messages.InvalidReason(err)
	}
	if eerr := e.Store.EndControl(ctx, req, outcome); eerr != nil {
		return eerr
	}
	if err == nil {
		e.log(ctx).InfoContext(ctx, "control message done", logging.KeyEvent, logging.EventControl, logging.KeyAction, c.Action,
			logging.KeyTenant, t.Name, logging.KeyIdentityKey, key, logging.KeyRequestID, logging.Untrusted(c.RequestID), "result", result,
			logging.KeyDurationMs, time.Since(start).Milliseconds())
	}
	return err
}

// OutcomeAccepted is a done control message's outcome (a refused one's is
// its reason).
const OutcomeAccepted = "accepted"

// controlHold bounds a control message's claim on its identity: a worker
// that died applying it holds the identity's later messages this long.
const controlHold = 5 * time.Minute

// ErrControlBusy: another control message of the identity is being applied.
var ErrControlBusy = errors.New("enroll: another control message of this identity is being applied; try again")

// DuplicateError: the control message's requestId was done before, with
// Outcome; nothing was done again.
type DuplicateError struct{ Outcome string }

func (e *DuplicateError) Error() string { return "control request done before: " + e.Outcome }

// controlSpec is the identity a control message of tenant t names.
func controlSpec(t tenant.Tenant, c messages.Control) IdentitySpec {
	sp := IdentitySpec{AuthMode: store.AuthDelegation, Subject: c.Subject}
	if c.CredentialID != "" {
		sp = IdentitySpec{AuthMode: store.AuthOAuth, CredentialID: c.CredentialID, Email: c.Email}
	}
	sp.Tenant, sp.ExternalID = t.Name, c.ExternalID
	return sp
}

// act does what the control message asks, once claimed.
func (e *Enroller) act(ctx context.Context, sp IdentitySpec, c messages.Control, creds *credentials.Vault) (any, error) {
	key := sp.Key()
	invalid := func(reason, format string, a ...any) error {
		return &messages.InvalidError{Reason: reason, Detail: fmt.Sprintf(format, a...)}
	}
	switch c.Action {
	case messages.ActionEnroll:
		created := false
		if c.CredentialID != "" {
			var err error
			if created, err = e.storeCredential(ctx, c, creds); err != nil {
				return nil, err
			}
		}
		if c.Filters != nil { // validated by messages.ParseControl
			sp.Filters = *c.Filters
		}
		sp.DeleteMirrorOnRemove = c.DeleteMirrorOnRemove
		r, err := e.EnrollIdentity(ctx, sp)
		if errors.Is(err, ErrNotAuthorized) || errors.Is(err, store.ErrOtherTenant) {
			if created {
				// Refused: leave nothing behind.
				if derr := e.Store.DeleteCredential(ctx, c.CredentialID); derr != nil {
					return nil, derr
				}
			}
			if errors.Is(err, store.ErrOtherTenant) {
				return nil, invalid(messages.ReasonOtherTenant, "%v", err)
			}
			return nil, invalid(messages.ReasonNotAuthorized, "%v", err)
		}
		return r, err
	case messages.ActionUnenroll:
		if _, err := e.Store.GetIdentity(ctx, key); errors.Is(err, store.ErrNotFound) {
			return nil, invalid(messages.ReasonUnknownIdentity, "identity %s is not enrolled", key)
		} else if err != nil {
			return nil, err
		}
		return e.UnenrollIdentity(ctx, key, c.DeleteMirror, "unenrolled by a control message")
	case messages.ActionDisconnect:
		id, err := e.Store.GetIdentity(ctx, key)
		if errors.Is(err, store.ErrNotFound) {
			return nil, invalid(messages.ReasonUnknownIdentity, "identity %s is not enrolled", key)
		} else if err != nil {
			return nil, err
		}
		r, err := e.UnenrollIdentity(ctx, key, c.DeleteMirror, "disconnected by a control message")
		if err != nil || id.AuthMode != store.AuthOAuth {
			return r, err // a Workspace user's delegation is the admin's to revoke
		}
		return r, e.revokeCredential(ctx, id.CredentialID, creds)
	case messages.ActionResync:
		id, err := e.Store.GetIdentity(ctx, key)
		if errors.Is(err, store.ErrNotFound) || (err == nil && id.Status != store.StatusActive) {
			return nil, invalid(messages.ReasonUnknownIdentity, "identity %s is not enrolled", key)
		} else if err != nil {
			return nil, err
		}
		n, err := e.Resync(ctx, key, c.Full)
		return map[string]int{"calendars": n}, err
	}
	return nil, invalid(messages.ReasonUnknownAction, "action %q", c.Action)
}

// revokeCredential revokes a disconnected user's grant at Google and
// deletes its credential. A grant Google revoked already is only deleted;
// one deleted already (a redelivery) is done.
func (e *Enroller) revokeCredential(ctx context.Context, credentialID string, creds *credentials.Vault) error {
	if creds == nil || e.Revoker == nil {
		return errors.New("enroll: no credential vault or revocation endpoint to disconnect with")
	}
	tok, err := creds.RefreshToken(ctx, credentialID)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil
	case calclient.IsAuthRevoked(err):
	case err != nil:
		return err
	default:
		if err := e.Revoker.RevokeGrant(ctx, tok); err != nil {
			return err
		}
	}
	if err := e.Store.DeleteCredential(ctx, credentialID); err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	e.log(ctx).InfoContext(ctx, "grant revoked at Google and credential deleted", logging.KeyEvent, logging.EventControl,
		logging.KeyAction, messages.ActionDisconnect, logging.KeyCredentialID, credentialID)
	return nil
}

// AnswerControl publishes the answer to tenant t's control message on the
// lifecycle topic: accepted, or rejected with the reason of err (an
// *messages.InvalidError), or the earlier outcome of a duplicate. An error
// that asks for redelivery gets no answer yet.
func (e *Enroller) AnswerControl(ctx context.Context, t tenant.Tenant, c messages.Control, err error) {
	m := messages.Lifecycle{Type: messages.LifecycleControlAccepted, Attribution: messages.Attribution{Tenant: t.Name, ExternalID: c.ExternalID},
		Control: &messages.ControlAnswer{RequestID: c.RequestID, Action: c.Action}}
	var dup *DuplicateError
	switch {
	case err == nil:
	case errors.As(err, &dup):
		m.Control.Duplicate = true
		if dup.Outcome != OutcomeAccepted {
			m.Type, m.Reason = messages.LifecycleControlRejected, dup.Outcome
		}
	case errors.Is(err, messages.ErrInvalid):
		m.Type, m.Reason, m.Detail = messages.LifecycleControlRejected, messages.InvalidReason(err), logging.Clip(err.Error())
	default:
		return
	}
	if c.Subject != "" || c.CredentialID != "" {
		m.IdentityKey = controlSpec(t, c).Key()
		if m.ExternalID == "" && m.Reason != messages.ReasonOtherTenant {
			if id, gerr := e.Store.GetIdentity(ctx, m.IdentityKey); gerr == nil && tenant.Of(id.Tenant) == t.Name {
				m.ExternalID = id.ExternalID
			}
		}
	}
	e.lifecycle().Announce(ctx, m)
}

func (e *Enroller) controlMaxAge() time.Duration {
	if e.ControlMaxAge > 0 {
		return e.ControlMaxAge
	}
	return DefaultControlMaxAge
}

// DefaultControlMaxAge is CONTROL_MAX_AGE's default.
const DefaultControlMaxAge = 10 * time.Minute

// storeCredential stores the sealed refresh token of an enroll (checked to
// open first), or checks that the credential is stored already; created:
// this call stored it.
func (e *Enroller) storeCredential(ctx context.Context, c messages.Control, creds *credentials.Vault) (bool, error) {
	invalid := func(reason string, err error) error {
		return &messages.InvalidError{Reason: reason, Detail: err.Error()}
	}
	if c.SealedRefreshToken == "" {
		cr, err := e.Store.GetCredential(ctx, c.CredentialID)
		switch {
		case errors.Is(err, store.ErrNotFound):
			return false, invalid(messages.ReasonNoCredential, fmt.Errorf("credential %s is not stored and no sealedRefreshToken was given", c.CredentialID))
		case err != nil:
			return false, err
		case cr.Status == store.StatusAuthRevoked:
			return false, invalid(messages.ReasonRevokedCredential, fmt.Errorf("credential %s was revoked", c.CredentialID))
		}
		return false, nil
	}
	if creds == nil {
		return false, errors.New("enroll: no credential store to keep a sealed token")
	}
	created, err := creds.AddSealed(ctx, c.CredentialID, c.Email, c.SealedRefreshToken)
	switch {
	case errors.Is(err, sealed.ErrOpen), errors.Is(err, sealed.ErrUnknownKey), errors.Is(err, sealed.ErrMalformed):
		return false, invalid(messages.ReasonSealedNotOpening, err)
	case errors.Is(err, credentials.ErrCredentialTaken):
		return false, invalid(messages.ReasonCredentialTaken, err)
	case errors.Is(err, credentials.ErrCredentialRevoked):
		return false, invalid(messages.ReasonRevokedCredential, err)
	case errors.Is(err, calclient.ErrScopesMissing):
		return false, invalid(messages.ReasonScopesMissing, err)
	case lifecycle.Classify(err).IsAuth():
		// Google refuses the grant itself (revoked, client disabled, ...).
		return false, invalid(messages.ReasonNotAuthorized, err)
	}
	return created, err
}
