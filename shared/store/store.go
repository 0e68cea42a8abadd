package store

import (
	"errors"
	"fmt"

	"cloud.google.com/go/firestore"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// ErrNotFound: the document does not exist.
var ErrNotFound = errors.New("store: not found")

// Store reads and writes calsync's Firestore documents.
type Store struct {
	Client *firestore.Client
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
