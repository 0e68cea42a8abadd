package store

// Calendar registration and listing for RenewChannels and the operator CLI:
// free functions on a Firestore client, distinct from the SyncWorker's
// lease/sync code.

import (
	"context"
	"errors"
	"fmt"
	"time"

	"cloud.google.com/go/firestore"
	"google.golang.org/api/iterator"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// ErrCalendarNotRegistered: no calendars/{key} document.
var ErrCalendarNotRegistered = errors.New("store: calendar not registered")

// RegisterCalendar creates calendars/{CalendarKey(cal.CalendarID)} with status
// active, or, when it exists, sets its auth fields and status active without
// touching sync state (token, counters, lease). It returns the key.
func RegisterCalendar(ctx context.Context, fs *firestore.Client, cal Calendar, now time.Time) (string, error) {
	key := CalendarKey(cal.CalendarID)
	ref := fs.Collection(CollCalendars).Doc(key)
	err := fs.RunTransaction(ctx, func(ctx context.Context, tx *firestore.Transaction) error {
		_, err := tx.Get(ref)
		if status.Code(err) == codes.NotFound {
			c := Calendar{CalendarID: cal.CalendarID, AuthMode: cal.AuthMode, Subject: cal.Subject,
				CredentialID: cal.CredentialID, Status: StatusActive, CreatedAt: now, UpdatedAt: now}
			return tx.Create(ref, c)
		}
		if err != nil {
			return err
		}
		ups := []firestore.Update{
			{Path: "authMode", Value: cal.AuthMode},
			{Path: "status", Value: StatusActive},
			{Path: "statusReason", Value: firestore.Delete},
			{Path: "updatedAt", Value: now},
		}
		ups = append(ups, optional("subject", cal.Subject), optional("credentialId", cal.CredentialID))
		return tx.Update(ref, ups)
	})
	return key, err
}

func optional(path, v string) firestore.Update {
	if v == "" {
		return firestore.Update{Path: path, Value: firestore.Delete}
	}
	return firestore.Update{Path: path, Value: v}
}

// RegisteredCalendar reads calendars/{key}.
func RegisteredCalendar(ctx context.Context, fs *firestore.Client, key string) (Calendar, error) {
	var c Calendar
	snap, err := fs.Collection(CollCalendars).Doc(key).Get(ctx)
	if status.Code(err) == codes.NotFound {
		return c, fmt.Errorf("calendar %s: %w", key, ErrCalendarNotRegistered)
	}
	if err != nil {
		return c, err
	}
	err = snap.DataTo(&c)
	return c, err
}

// AllCalendars returns every registered calendar by key.
func AllCalendars(ctx context.Context, fs *firestore.Client) (map[string]Calendar, error) {
	return readCalendars(fs.Collection(CollCalendars).Documents(ctx))
}

// ActiveCalendars returns the calendars with status active, by key.
func ActiveCalendars(ctx context.Context, fs *firestore.Client) (map[string]Calendar, error) {
	return readCalendars(fs.Collection(CollCalendars).Where("status", "==", StatusActive).Documents(ctx))
}

// CalendarsWithCredential returns the calendars read with credential id, by key.
func CalendarsWithCredential(ctx context.Context, fs *firestore.Client, credentialID string) (map[string]Calendar, error) {
	return readCalendars(fs.Collection(CollCalendars).Where("credentialId", "==", credentialID).Documents(ctx))
}

// CalendarsWithSubject returns the calendars read by delegation as subject, by key.
func CalendarsWithSubject(ctx context.Context, fs *firestore.Client, subject string) (map[string]Calendar, error) {
	return readCalendars(fs.Collection(CollCalendars).Where("subject", "==", subject).Documents(ctx))
}

func readCalendars(it *firestore.DocumentIterator) (map[string]Calendar, error) {
	defer it.Stop()
	out := map[string]Calendar{}
	for {
		snap, err := it.Next()
		if errors.Is(err, iterator.Done) {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		var c Calendar
		if err := snap.DataTo(&c); err != nil {
			return nil, fmt.Errorf("calendar %s: %w", snap.Ref.ID, err)
		}
		out[snap.Ref.ID] = c
	}
}

// SetCalendarStatus sets status and reason (empty reason clears it). It
// never creates a document: ErrCalendarNotRegistered if missing.
func SetCalendarStatus(ctx context.Context, fs *firestore.Client, key, status, reason string, now time.Time) error {
	_, err := fs.Collection(CollCalendars).Doc(key).Update(ctx, []firestore.Update{
		{Path: "status", Value: status},
		optional("statusReason", reason),
		{Path: "updatedAt", Value: now},
	})
	if statusCode(err) == codes.NotFound {
		return fmt.Errorf("calendar %s: %w", key, ErrCalendarNotRegistered)
	}
	return err
}

func statusCode(err error) codes.Code { return status.Code(err) }
