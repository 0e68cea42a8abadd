package store

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"cloud.google.com/go/firestore"
)

// A listing of many pages (a full sync of a large calendar) can outlast one
// function invocation. After each page that has a next one, the lease holder
// records where it stands, fenced like every write under the lease:
//
//	calendars/{key}/syncstate/checkpoint              Checkpoint
//	calendars/{key}/syncstate/checkpoint/listed/{n}   Chunk n (full rounds)
//
// The next holder (the same calendar's next message, or the continuation
// request the stopping holder publishes) resumes the round from it instead of
// starting over. Complete removes them with the round's token commit.
const (
	docCheckpoint = "checkpoint"
	collListed    = "listed"
)

// Checkpoint is a round stopped between two pages.
type Checkpoint struct {
	StartedAt time.Time `firestore:"startedAt"` // the round's start: what it covers
	Full      bool      `firestore:"full"`
	Token     string    `firestore:"token,omitempty"` // the sync token the listing started from (incremental)
	PageToken string    `firestore:"pageToken"`       // the next page to list
	TimeZone  string    `firestore:"timeZone,omitempty"`
	Chunks    int       `firestore:"chunks"` // full rounds: Chunk documents written so far
	// Progress so far, carried into the round's report.
	Pages     int `firestore:"pages"`
	Listed    int `firestore:"listed"`
	Written   int `firestore:"written"`
	Deleted   int `firestore:"deleted"`
	Unchanged int `firestore:"unchanged"`
	Stale     int `firestore:"stale"`
	Problems  int `firestore:"problems"`
	Changes   int `firestore:"changes"`
	// Orphans are the cancelled exceptions of series the listing has not
	// reached yet (event JSON; rare).
	Orphans []string `firestore:"orphans,omitempty"`
	// Invocations counts the invocations the round has taken so far.
	Invocations int `firestore:"invocations"`
}

// Chunk is what one page of a full listing contributes to its sweep and to
// its series bookkeeping: the ids it listed and the series masters it saw.
type Chunk struct {
	IDs       []string `firestore:"ids"`
	Live      []string `firestore:"live,omitempty"`      // series masters listed live
	Cancelled []string `firestore:"cancelled,omitempty"` // masters listed cancelled
}

func (s *Store) checkpointRef(key string) *firestore.DocumentRef {
	return s.CalendarRef(key).Collection(CollSyncState).Doc(docCheckpoint)
}

func (s *Store) chunkRef(key string, n int) *firestore.DocumentRef {
	return s.checkpointRef(key).Collection(collListed).Doc(strconv.Itoa(n))
}

// SaveCheckpoint records a round's position after a page, with that page's
// chunk (nil for incremental rounds) as chunk number cp.Chunks-1.
func (s *Store) SaveCheckpoint(ctx context.Context, key string, l Lease, cp Checkpoint, chunk *Chunk) error {
	err := s.commitIdempotent(ctx, key, l, func(b *firestore.WriteBatch) {
		if chunk != nil {
			b.Set(s.chunkRef(key, cp.Chunks-1), chunk)
		}
		b.Set(s.checkpointRef(key), cp)
		b.Update(s.CalendarRef(key), []firestore.Update{{Path: "checkpointed", Value: true}, {Path: "checkpointChunks", Value: cp.Chunks}})
	})
	if err != nil {
		return fmt.Errorf("checkpoint of %s: %w", key, err)
	}
	return nil
}

// Chunks reads the chunks of a checkpoint, in order.
func (s *Store) Chunks(ctx context.Context, key string, n int) ([]Chunk, error) {
	refs := make([]*firestore.DocumentRef, n)
	for i := range refs {
		refs[i] = s.chunkRef(key, i)
	}
	snaps, err := s.Client.GetAll(ctx, refs)
	if err != nil {
		return nil, err
	}
	out := make([]Chunk, n)
	for i, snap := range snaps {
		if !snap.Exists() {
			return nil, fmt.Errorf("checkpoint of %s: chunk %d: %w", key, i, ErrNotFound)
		}
		if err := snap.DataTo(&out[i]); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// DiscardCheckpoint removes a checkpoint that cannot be resumed (its page
// token no longer works), so the round starts over.
func (s *Store) DiscardCheckpoint(ctx context.Context, key string, l Lease, cp Checkpoint) error {
	return s.commitIdempotent(ctx, key, l, func(b *firestore.WriteBatch) {
		for i := range cp.Chunks {
			b.Delete(s.chunkRef(key, i))
		}
		b.Delete(s.checkpointRef(key))
		b.Update(s.CalendarRef(key), clearCheckpoint)
	})
}

var clearCheckpoint = []firestore.Update{{Path: "checkpointed", Value: firestore.Delete}, {Path: "checkpointChunks", Value: firestore.Delete}}

// readCheckpoint reads the calendar's checkpoint in a transaction (nil:
// none; only read when the calendar says there is one).
func (s *Store) readCheckpoint(tx *firestore.Transaction, key string, c Calendar) (*Checkpoint, error) {
	if !c.Checkpointed {
		return nil, nil
	}
	snap, err := tx.Get(s.checkpointRef(key))
	if isNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var cp Checkpoint
	if err := snap.DataTo(&cp); err != nil {
		return nil, err
	}
	return &cp, nil
}

// deleteCheckpoint removes the calendar's checkpoint and its chunks in a
// transaction; the caller clears the calendar's fields (clearCheckpoint).
func (s *Store) deleteCheckpoint(tx *firestore.Transaction, key string, c Calendar) error {
	if !c.Checkpointed {
		return nil
	}
	for i := range c.CheckpointChunks {
		if err := tx.Delete(s.chunkRef(key, i)); err != nil {
			return err
		}
	}
	return tx.Delete(s.checkpointRef(key))
}
