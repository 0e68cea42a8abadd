package store

import (
	"context"

	"cloud.google.com/go/firestore"
)

// calendars/{key}/syncstate/announcing holds the ids of events whose
// "created" change is being published but whose documents are not written
// yet. A sync killed in between leaves them there; the next completed round
// announces "deleted" for those the mirror still lacks, so consumers keep no
// ghost. At most one page of ids is in it at a time (it is cleared after each
// page is written), well under Firestore's document size limit.
const (
	CollSyncState  = "syncstate"
	docAnnouncing  = "announcing"
	fieldAnnounced = "ids"
)

func (s *Store) announcingRef(key string) *firestore.DocumentRef {
	return s.CalendarRef(key).Collection(CollSyncState).Doc(docAnnouncing)
}

// MarkAnnouncing records ids before their "created" changes are published.
func (s *Store) MarkAnnouncing(ctx context.Context, key string, ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	_, err := s.announcingRef(key).Set(ctx, map[string]any{fieldAnnounced: firestore.ArrayUnion(anySlice(ids)...)}, firestore.MergeAll)
	return err
}

// UnmarkAnnouncing drops ids whose documents are written (or resolved).
func (s *Store) UnmarkAnnouncing(ctx context.Context, key string, ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	_, err := s.announcingRef(key).Update(ctx, []firestore.Update{{Path: fieldAnnounced, Value: firestore.ArrayRemove(anySlice(ids)...)}})
	if isNotFound(err) {
		return nil
	}
	return err
}

// Announcing returns the ids left by syncs that died between publishing and
// writing (nil when none).
func (s *Store) Announcing(ctx context.Context, key string) ([]string, error) {
	snap, err := s.announcingRef(key).Get(ctx)
	if isNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var d struct {
		IDs []string `firestore:"ids"`
	}
	if err := snap.DataTo(&d); err != nil {
		return nil, err
	}
	return d.IDs, nil
}

func anySlice(ids []string) []any {
	out := make([]any, len(ids))
	for i, id := range ids {
		out[i] = id
	}
	return out
}
