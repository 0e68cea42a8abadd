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

// HandleControl does what a product's control message asks. The message
// was checked by messages.ParseControl; what only acting can find (an
// identity never enrolled, a sealed token that does not open, a grant that
// does not work) is a *messages.InvalidError, found before anything changes.
func (e *Enroller) HandleControl(ctx context.Context, c messages.Control, creds *credentials.Vault) error {
	start := e.now()
	sp := IdentitySpec{AuthMode: store.AuthDelegation, Subject: c.Subject}
	if c.CredentialID != "" {
		sp = IdentitySpec{AuthMode: store.AuthOAuth, CredentialID: c.CredentialID, Email: c.Email}
	}
	key := sp.Key()
	invalid := func(reason, format string, a ...any) error {
		return &messages.InvalidError{Reason: reason, Detail: fmt.Sprintf(format, a...)}
	}
	var outcome any
	switch c.Action {
	case messages.ActionEnroll:
		created := false
		if c.CredentialID != "" {
			var err error
			if created, err = e.storeCredential(ctx, c, creds); err != nil {
				return err
			}
		}
		if c.Filters != nil { // validated by messages.ParseControl
			sp.Filters = *c.Filters
		}
		sp.DeleteMirrorOnRemove = c.DeleteMirrorOnRemove
		r, err := e.EnrollIdentity(ctx, sp)
		if errors.Is(err, ErrNotAuthorized) {
			if created {
				// Refused: leave nothing behind (the grant does not work).
				if derr := e.Store.DeleteCredential(ctx, c.CredentialID); derr != nil {
					return derr
				}
			}
			return invalid(messages.ReasonNotAuthorized, "%v", err)
		}
		if err != nil {
			return err
		}
		outcome = r
	case messages.ActionUnenroll:
		if _, err := e.Store.GetIdentity(ctx, key); errors.Is(err, store.ErrNotFound) {
			return invalid(messages.ReasonUnknownIdentity, "identity %s is not enrolled", key)
		} else if err != nil {
			return err
		}
		r, err := e.UnenrollIdentity(ctx, key, c.DeleteMirror, "unenrolled by a control message")
		if err != nil {
			return err
		}
		outcome = r
	case messages.ActionResync:
		id, err := e.Store.GetIdentity(ctx, key)
		if errors.Is(err, store.ErrNotFound) || (err == nil && id.Status != store.StatusActive) {
			return invalid(messages.ReasonUnknownIdentity, "identity %s is not enrolled", key)
		} else if err != nil {
			return err
		}
		n, err := e.Resync(ctx, key, c.Full)
		if err != nil {
			return err
		}
		outcome = map[string]int{"calendars": n}
	}
	e.log(ctx).InfoContext(ctx, "control message done", logging.KeyEvent, logging.EventControl, logging.KeyAction, c.Action,
		logging.KeyIdentityKey, key, logging.KeyRequestID, logging.Untrusted(c.RequestID), "result", outcome,
		logging.KeyDurationMs, time.Since(start).Milliseconds())
	return nil
}

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
