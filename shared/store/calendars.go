package store

import (
	"context"
	"time"

	"cloud.google.com/go/firestore"
)

// GetCalendar reads calendars/{key}; ErrNotFound when it is not registered.
func (s *Store) GetCalendar(ctx context.Context, key string) (Calendar, error) {
	var c Calendar
	snap, err := s.CalendarRef(key).Get(ctx)
	if err != nil {
		return c, wrapNotFound(err, "calendar "+key)
	}
	err = snap.DataTo(&c)
	return c, err
}

// PutCalendar writes a whole calendar document (registration by the CLI and
// tests). Key defaults to CalendarKey(c.CalendarID).
func (s *Store) PutCalendar(ctx context.Context, c Calendar) (string, error) {
	key := CalendarKey(c.CalendarID)
	now := time.Now().UTC()
	if c.CreatedAt.IsZero() {
		c.CreatedAt = now
	}
	c.UpdatedAt = now
	if c.Status == "" {
		c.Status = StatusActive
	}
	_, err := s.CalendarRef(key).Set(ctx, c)
	return key, err
}

// SetStatus records a permanent problem (auth_revoked, not_found, error) and
// releases the lease if owner holds it. It never resurrects a document.
func (s *Store) SetStatus(ctx context.Context, key, status, reason, owner string) error {
	defer s.lockCalendar(key)()
	return s.Client.RunTransaction(ctx, func(ctx context.Context, tx *firestore.Transaction) error {
		snap, err := tx.Get(s.CalendarRef(key))
		if err != nil {
			return wrapNotFound(err, "calendar "+key)
		}
		var c Calendar
		if err := snap.DataTo(&c); err != nil {
			return err
		}
		ups := []firestore.Update{
			{Path: "status", Value: status},
			{Path: "statusReason", Value: reason},
			{Path: "updatedAt", Value: time.Now().UTC()},
		}
		if owner != "" && c.LeaseOwner == owner {
			ups = append(ups, firestore.Update{Path: "leaseOwner", Value: firestore.Delete},
				firestore.Update{Path: "leaseUntil", Value: time.Now().UTC()})
		}
		return tx.Update(s.CalendarRef(key), ups)
	})
}
