package store

import (
	"context"

	"cloud.google.com/go/firestore"
)

// GetCalendar reads calendars/{key}; ErrNotFound when it is not registered.
func (s *Store) GetCalendar(ctx context.Context, key string) (Calendar, error) {
	return getDoc[Calendar](ctx, s.CalendarRef(key), "calendar "+key)
}

// Enrollment is the status an enrollment gives a target whose status is
// current ("" when new): shared/lifecycle's table decides (EnrollStatus).
type Enrollment func(current string) string

// RegisterCalendar creates calendars/{CalendarKey(cal.CalendarID)}, or,
// when it exists, sets its auth fields without touching sync state (token,
// counters, lease); its status is what next says. It returns the key.
func (s *Store) RegisterCalendar(ctx context.Context, cal Calendar, next Enrollment) (string, error) {
	key := cal.Key()
	ref := s.CalendarRef(key)
	now := s.now()
	defer s.lockCalendar(key)()
	err := s.Client.RunTransaction(ctx, func(ctx context.Context, tx *firestore.Transaction) error {
		snap, err := tx.Get(ref)
		if isNotFound(err) {
			c := Calendar{CalendarID: cal.CalendarID, AuthMode: cal.AuthMode, Subject: cal.Subject,
				CredentialID: cal.CredentialID, Status: next(""), CreatedAt: now, UpdatedAt: now}
			return tx.Create(ref, c)
		}
		if err != nil {
			return err
		}
		cur, _ := snap.DataAt("status")
		status, _ := cur.(string)
		return tx.Update(ref, []firestore.Update{
			{Path: "authMode", Value: cal.AuthMode},
			{Path: "status", Value: next(status)},
			{Path: "statusReason", Value: firestore.Delete},
			{Path: "updatedAt", Value: now},
			{Path: "notFoundCount", Value: firestore.Delete},
			{Path: "notFoundSince", Value: firestore.Delete},
			optional("subject", cal.Subject),
			optional("credentialId", cal.CredentialID),
		})
	})
	return key, err
}

// calendarTx reads a calendar in tx; ErrNotFound if it is not registered.
func calendarTx(tx *firestore.Transaction, ref *firestore.DocumentRef) (Calendar, error) {
	var c Calendar
	snap, err := tx.Get(ref)
	if err != nil {
		return c, wrapNotFound(err, "calendar "+ref.ID)
	}
	return c, snap.DataTo(&c)
}

func optional(path, v string) firestore.Update {
	if v == "" {
		return firestore.Update{Path: path, Value: firestore.Delete}
	}
	return firestore.Update{Path: path, Value: v}
}

// SetStatus records a calendar's status and reason (an empty reason clears
// it), e.g. a permanent problem (auth_revoked, not_found) or an operator's
// unwatch. A problem never replaces unwatched: nobody follows the calendar
// any more, and a sync or a revocation that raced the unwatch (or the
// unenrollment of a suspended user) must not put it back before operators.
// If leaseOwner is not empty and holds the lease, the lease is released too.
// It never creates a document: ErrNotFound if missing.
func (s *Store) SetStatus(ctx context.Context, key, status, reason, leaseOwner string) error {
	ref := s.CalendarRef(key)
	defer s.lockCalendar(key)()
	return s.Client.RunTransaction(ctx, func(ctx context.Context, tx *firestore.Transaction) error {
		snap, err := tx.Get(ref)
		if err != nil {
			return wrapNotFound(err, "calendar "+key)
		}
		now := s.now()
		var ups []firestore.Update
		if cur, _ := snap.DataAt("status"); cur != StatusUnwatched || !isProblem(status) {
			ups = append(ups, firestore.Update{Path: "status", Value: status},
				optional("statusReason", reason),
				firestore.Update{Path: "updatedAt", Value: now})
		}
		if owner, _ := snap.DataAt("leaseOwner"); leaseOwner != "" && owner == leaseOwner {
			ups = append(ups, firestore.Update{Path: "leaseOwner", Value: firestore.Delete},
				firestore.Update{Path: "leaseMessageId", Value: firestore.Delete},
				firestore.Update{Path: "leaseUntil", Value: now})
		}
		if len(ups) == 0 {
			return nil
		}
		return tx.Update(ref, ups)
	})
}

// isProblem: the statuses calsync finds rather than is told.
func isProblem(status string) bool {
	switch status {
	case StatusAuthRevoked, StatusNotFound, StatusFreeBusyOnly, StatusDelegationUnauthorized, StatusScopeMissing, StatusAPIDisabled,
		StatusAdminPolicy, StatusClientDisabled:
		return true
	}
	return false
}

// AllCalendars returns every registered calendar by key.
func (s *Store) AllCalendars(ctx context.Context) (map[string]Calendar, error) {
	return readAll[Calendar](s.Client.Collection(CollCalendars).Documents(ctx), "calendar")
}

// ActiveCalendars returns the calendars with status active, by key.
func (s *Store) ActiveCalendars(ctx context.Context) (map[string]Calendar, error) {
	return s.calendarsWhere(ctx, "status", StatusActive)
}

// CalendarsWithCredential returns the calendars read with credential id, by key.
func (s *Store) CalendarsWithCredential(ctx context.Context, credentialID string) (map[string]Calendar, error) {
	return s.calendarsWhere(ctx, "credentialId", credentialID)
}

// CalendarsWithSubject returns the calendars read by delegation as subject, by key.
func (s *Store) CalendarsWithSubject(ctx context.Context, subject string) (map[string]Calendar, error) {
	return s.calendarsWhere(ctx, "subject", subject)
}

func (s *Store) calendarsWhere(ctx context.Context, field, value string) (map[string]Calendar, error) {
	return readAll[Calendar](s.Client.Collection(CollCalendars).Where(field, "==", value).Documents(ctx), "calendar")
}
