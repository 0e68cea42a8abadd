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

// MarkAnnouncing records ids before their "created" changes are published
// (a fenced write: only the lease holder's).
func (s *Store) MarkAnnouncing(ctx context.Context, key string, l Lease, ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	return s.commitIdempotent(ctx, key, l, func(b *firestore.WriteBatch) {
		b.Set(s.announcingRef(key), map[string]any{fieldAnnounced: firestore.ArrayUnion(anySlice(ids)...)}, firestore.MergeAll)
	})
}

// UnmarkAnnouncing drops ids whose documents are written (or resolved).
func (s *Store) UnmarkAnnouncing(ctx context.Context, key string, l Lease, ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	return s.commitIdempotent(ctx, key, l, func(b *firestore.WriteBatch) {
		// Set with merge, not Update: the record may not exist.
		b.Set(s.announcingRef(key), map[string]any{fieldAnnounced: firestore.ArrayRemove(anySlice(ids)...)}, firestore.MergeAll)
	})
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
