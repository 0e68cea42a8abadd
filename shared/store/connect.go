package store

// The Connect function's records: a connect link's nonce once spent (a
// link works once), and the state of a consent in flight (what the
// callback needs: whose link it was, the PKCE verifier). Both expire by a
// TTL policy on expireAt; a session is deleted by the callback that takes it.

import (
	"context"
	"errors"
	"fmt"
	"time"

	"cloud.google.com/go/firestore"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Collections of the Connect function.
const (
	CollConnectLinks    = "connectLinks"    // connectLinks/{nonce}
	CollConnectSessions = "connectSessions" // connectSessions/{sessionKey}
)

// ErrLinkUsed: the connect link's nonce was spent before.
var ErrLinkUsed = errors.New("store: the connect link was used already")

// SpendConnectLink records a link's nonce as used, once: ErrLinkUsed when
// it was.
func (s *Store) SpendConnectLink(ctx context.Context, nonce, tenantName string, expireAt time.Time) error {
	_, err := s.Client.Collection(CollConnectLinks).Doc(nonce).Create(ctx, map[string]any{
		"tenant": tenantName, "usedAt": s.now(), "expireAt": expireAt})
	if status.Code(err) == codes.AlreadyExists {
		return ErrLinkUsed
	}
	return err
}

// LinkUsed reports whether a link's nonce was spent.
func (s *Store) LinkUsed(ctx context.Context, nonce string) (bool, error) {
	_, err := s.Client.Collection(CollConnectLinks).Doc(nonce).Get(ctx)
	if isNotFound(err) {
		return false, nil
	}
	return err == nil, err
}

// ConnectSession is connectSessions/{key}: one consent in flight.
type ConnectSession struct {
	Tenant     string    `firestore:"tenant"`
	ExternalID string    `firestore:"externalId"`
	ReturnURL  string    `firestore:"returnUrl"`
	Nonce      string    `firestore:"nonce"`
	Verifier   string    `firestore:"verifier"` // PKCE: what only this session may exchange the code with
	ExpireAt   time.Time `firestore:"expireAt"`
}

// SessionKey is a session's document id: the hash of its OAuth state, so
// the state itself (a bearer value in the callback URL) is not stored.
func SessionKey(state string) string { return "s" + hashKey("connect-state:"+state) }

// PutConnectSession stores a consent in flight under its state.
func (s *Store) PutConnectSession(ctx context.Context, state string, cs ConnectSession) error {
	_, err := s.Client.Collection(CollConnectSessions).Doc(SessionKey(state)).Create(ctx, cs)
	return err
}

// TakeConnectSession reads and deletes the session of state, once:
// ErrNotFound when there is none (never made, taken before, or expired).
func (s *Store) TakeConnectSession(ctx context.Context, state string) (ConnectSession, error) {
	ref := s.Client.Collection(CollConnectSessions).Doc(SessionKey(state))
	var cs ConnectSession
	err := s.Client.RunTransaction(ctx, func(ctx context.Context, tx *firestore.Transaction) error {
		snap, err := tx.Get(ref)
		if err != nil {
			return wrapNotFound(err, "connect session")
		}
		if err := snap.DataTo(&cs); err != nil {
			return err
		}
		if !s.now().Before(cs.ExpireAt) {
			return fmt.Errorf("connect session expired: %w", ErrNotFound)
		}
		return tx.Delete(ref)
	})
	return cs, err
}
