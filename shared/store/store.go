package store

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"cloud.google.com/go/firestore"
	"google.golang.org/api/iterator"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// ErrNotFound: the document does not exist. Errors wrap it with what was
// not found ("calendar KEY", "channel ID", "credential ID").
var ErrNotFound = errors.New("store: not found")

// Store reads and writes calsync's Firestore documents. Every caller holds a
// *Store; nothing else touches these collections.
type Store struct {
	Client *firestore.Client
	// Now is the clock of the timestamps the Store writes itself (default time.Now).
	Now func() time.Time
	// Unfenced leaves the fence out of the writes made under a lease. For
	// benchmarks only, to measure what fencing costs: without it a worker
	// paused past its lease can write over a newer holder's data.
	Unfenced bool
	// locks serializes this process's transactions on one calendar document:
	// concurrent transactions on a document only queue up in Firestore (and
	// the emulator, which locks pessimistically, deadlocks them until its lock
	// timeout), so there is no point sending them at once. An optimisation
	// only: correctness never depends on it (other processes do not share it).
	locks sync.Map // calendar key → *sync.Mutex
}

// New returns a Store on client.
func New(client *firestore.Client) *Store { return &Store{Client: client} }

func (s *Store) now() time.Time {
	if s.Now != nil {
		return s.Now().UTC()
	}
	return time.Now().UTC()
}

// lockCalendar takes this process's lock of a calendar document.
func (s *Store) lockCalendar(key string) func() {
	m, _ := s.locks.LoadOrStore(key, &sync.Mutex{})
	mu := m.(*sync.Mutex)
	mu.Lock()
	return mu.Unlock
}

// CalendarRef is calendars/{key}.
func (s *Store) CalendarRef(key string) *firestore.DocumentRef {
	return s.Client.Collection(CollCalendars).Doc(key)
}

// Events is calendars/{key}/events.
func (s *Store) Events(key string) *firestore.CollectionRef {
	return s.CalendarRef(key).Collection(CollEvents)
}

// ChannelRef is channels/{id}.
func (s *Store) ChannelRef(id string) *firestore.DocumentRef {
	return s.Client.Collection(CollChannels).Doc(id)
}

// CredentialRef is credentials/{id}.
func (s *Store) CredentialRef(id string) *firestore.DocumentRef {
	return s.Client.Collection(CollCredentials).Doc(id)
}

func isNotFound(err error) bool { return status.Code(err) == codes.NotFound }

// wrapNotFound turns Firestore's NotFound into ErrNotFound naming what.
func wrapNotFound(err error, what string) error {
	if isNotFound(err) {
		return fmt.Errorf("%s: %w", what, ErrNotFound)
	}
	return err
}

// getDoc reads one document into a T; ErrNotFound (naming what) when it is missing.
func getDoc[T any](ctx context.Context, ref *firestore.DocumentRef, what string) (T, error) {
	var v T
	snap, err := ref.Get(ctx)
	if err != nil {
		return v, wrapNotFound(err, what)
	}
	if err := snap.DataTo(&v); err != nil {
		return v, fmt.Errorf("%s: %w", what, err)
	}
	return v, nil
}

// readAll decodes every document of a query into a T, keyed by document id.
func readAll[T any](it *firestore.DocumentIterator, what string) (map[string]T, error) {
	defer it.Stop()
	out := map[string]T{}
	for {
		snap, err := it.Next()
		if errors.Is(err, iterator.Done) {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		var v T
		if err := snap.DataTo(&v); err != nil {
			return nil, fmt.Errorf("%s %s: %w", what, snap.Ref.ID, err)
		}
		out[snap.Ref.ID] = v
	}
}
