package store

// The control path's memory: which control messages were done (a replay
// of one is a duplicate, not a second enroll) and, per identity, the last
// one applied and the one being applied (a late or concurrent message never
// undoes a later one). Kept for twice CONTROL_MAX_AGE (a TTL policy on
// expireAt deletes them); anything older is refused by its issuedAt.

import (
	"context"
	"time"

	"cloud.google.com/go/firestore"
)

// Collections of the control path.
const (
	CollControlRequests = "controlRequests" // controlRequests/{ControlRequestKey}
	CollControlOrder    = "controlOrder"    // controlOrder/{identityKey}
)

// ControlRequest is controlRequests/{key}: one control message, by its
// tenant and requestId.
type ControlRequest struct {
	Tenant      string    `firestore:"tenant"`
	RequestID   string    `firestore:"requestId"`
	IdentityKey string    `firestore:"identityKey"`
	Action      string    `firestore:"action"`
	IssuedAt    time.Time `firestore:"issuedAt"`
	// Outcome: "" while it is acted on, then "accepted" or the reason it
	// was refused.
	Outcome   string    `firestore:"outcome"`
	ExpireAt  time.Time `firestore:"expireAt"` // the TTL policy's field
	UpdatedAt time.Time `firestore:"updatedAt"`
}

// ControlOrder is controlOrder/{identityKey}.
type ControlOrder struct {
	LastIssuedAt  time.Time `firestore:"lastIssuedAt"`
	LastRequestID string    `firestore:"lastRequestId"`
	// InFlight is the request key being applied, until InFlightUntil (a
	// dead worker's claim runs out).
	InFlight      string    `firestore:"inFlight,omitempty"`
	InFlightUntil time.Time `firestore:"inFlightUntil,omitempty"`
	ExpireAt      time.Time `firestore:"expireAt"`
}

// ControlRequestKey is a request's document id: its tenant and requestId,
// hashed (a requestId is the product's text).
func ControlRequestKey(tenantName, requestID string) string {
	return "q" + hashKey("control:"+tenantName+"\n"+requestID)
}

// Claim is what ClaimControl found.
type Claim int

// Claims.
const (
	ClaimGo         Claim = iota // act on it (first delivery, or a redelivery of one not done)
	ClaimDuplicate               // done before: Outcome says how
	ClaimSuperseded              // a later control message of the identity was applied or is being applied
	ClaimBusy                    // another control message of the identity is being applied: try again later
)

// ControlSeen reports whether a tenant's request id was claimed before
// (and its outcome: "" while it is applied).
func (s *Store) ControlSeen(ctx context.Context, tenantName, requestID string) (seen bool, outcome string, err error) {
	snap, err := s.Client.Collection(CollControlRequests).Doc(ControlRequestKey(tenantName, requestID)).Get(ctx)
	if isNotFound(err) {
		return false, "", nil
	}
	if err != nil {
		return false, "", err
	}
	o, _ := snap.DataAt("outcome")
	outcome, _ = o.(string)
	return true, outcome, nil
}

// ClaimControl records r as the identity's control message being applied,
// unless it was done before, a later one was claimed, or another is in
// flight. hold bounds the claim (a dead worker's), keep how long the
// records live.
func (s *Store) ClaimControl(ctx context.Context, r ControlRequest, hold, keep time.Duration) (claim Claim, outcome string, err error) {
	key := ControlRequestKey(r.Tenant, r.RequestID)
	reqRef := s.Client.Collection(CollControlRequests).Doc(key)
	orderRef := s.Client.Collection(CollControlOrder).Doc(r.IdentityKey)
	now := s.now()
	err = s.Client.RunTransaction(ctx, func(ctx context.Context, tx *firestore.Transaction) error {
		claim, outcome = ClaimGo, ""
		var req ControlRequest
		snap, err := tx.Get(reqRef)
		switch {
		case err == nil:
			if err := snap.DataTo(&req); err != nil {
				return err
			}
			if req.Outcome != "" {
				claim, outcome = ClaimDuplicate, req.Outcome
				return nil
			}
		case !isNotFound(err):
			return err
		}
		var order ControlOrder
		snap, err = tx.Get(orderRef)
		switch {
		case err == nil:
			if err := snap.DataTo(&order); err != nil {
				return err
			}
		case !isNotFound(err):
			return err
		}
		if order.InFlight != "" && order.InFlight != key && now.Before(order.InFlightUntil) {
			claim = ClaimBusy
			return nil
		}
		if order.LastIssuedAt.After(r.IssuedAt) || (order.LastIssuedAt.Equal(r.IssuedAt) && order.LastRequestID != r.RequestID) {
			claim = ClaimSuperseded
			return nil
		}
		expire := now.Add(keep)
		r.Outcome, r.ExpireAt, r.UpdatedAt = "", expire, now
		if err := tx.Set(reqRef, r); err != nil {
			return err
		}
		return tx.Set(orderRef, ControlOrder{LastIssuedAt: r.IssuedAt, LastRequestID: r.RequestID, InFlight: key,
			InFlightUntil: now.Add(hold), ExpireAt: expire})
	})
	return claim, outcome, err
}

// EndControl records r's outcome and ends its claim on the identity.
func (s *Store) EndControl(ctx context.Context, r ControlRequest, outcome string) error {
	key := ControlRequestKey(r.Tenant, r.RequestID)
	reqRef := s.Client.Collection(CollControlRequests).Doc(key)
	orderRef := s.Client.Collection(CollControlOrder).Doc(r.IdentityKey)
	return s.Client.RunTransaction(ctx, func(ctx context.Context, tx *firestore.Transaction) error {
		snap, err := tx.Get(orderRef)
		if err != nil && !isNotFound(err) {
			return err
		}
		if err := tx.Update(reqRef, []firestore.Update{{Path: "outcome", Value: outcome}, {Path: "updatedAt", Value: s.now()}}); err != nil {
			return err
		}
		if err == nil {
			if inFlight, _ := snap.DataAt("inFlight"); inFlight == key {
				return tx.Update(orderRef, []firestore.Update{{Path: "inFlight", Value: firestore.Delete}, {Path: "inFlightUntil", Value: firestore.Delete}})
			}
		}
		return nil
	})
}
