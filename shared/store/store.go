package store

import (
	"errors"
	"fmt"
	"sync"

	"cloud.google.com/go/firestore"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// ErrNotFound: the document does not exist.
var ErrNotFound = errors.New("store: not found")

// Store reads and writes calsync's Firestore documents.
type Store struct {
	Client *firestore.Client
	// locks serializes this process's transactions on one calendar document:
	// concurrent transactions on a document only queue up in Firestore (and
	// the emulator, which locks pessimistically, deadlocks them until its lock
	// timeout), so there is no point sending them at once.
	locks sync.Map // calendar key → *sync.Mutex
}

// lockCalendar takes this process's lock of a calendar document.
func (s *Store) lockCalendar(key string) func() {
	m, _ := s.locks.LoadOrStore(key, &sync.Mutex{})
	mu := m.(*sync.Mutex)
	mu.Lock()
	return mu.Unlock
}

// New returns a Store on client.
func New(client *firestore.Client) *Store { return &Store{Client: client} }

// CalendarRef is calendars/{key}.
func (s *Store) CalendarRef(key string) *firestore.DocumentRef {
	return s.Client.Collection(CollCalendars).Doc(key)
}

// Events is calendars/{key}/events.
func (s *Store) Events(key string) *firestore.CollectionRef {
	return s.CalendarRef(key).Collection(CollEvents)
}

func notFound(err error) bool { return status.Code(err) == codes.NotFound }

func wrapNotFound(err error, what string) error {
	if notFound(err) {
		return fmt.Errorf("%s: %w", what, ErrNotFound)
	}
	return err
}
