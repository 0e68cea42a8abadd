package store

// Channel records: channels/{channelId}. Free functions on a Firestore client
// (used by shared/channels and RenewChannels).

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

// Channel record errors.
var (
	ErrChannelExists   = errors.New("store: channel record exists")
	ErrChannelNotFound = errors.New("store: channel record not found")
)

// ChannelRef is channels/{id}.
func ChannelRef(fs *firestore.Client, id string) *firestore.DocumentRef {
	return fs.Collection(CollChannels).Doc(id)
}

// CreateChannel writes a new channel record; ErrChannelExists if the id is
// taken (the record doubles as a claim: only one writer creates an id).
func CreateChannel(ctx context.Context, fs *firestore.Client, ch Channel) error {
	_, err := ChannelRef(fs, ch.ChannelID).Create(ctx, ch)
	if status.Code(err) == codes.AlreadyExists {
		return fmt.Errorf("channel %s: %w", ch.ChannelID, ErrChannelExists)
	}
	return err
}

// GetChannel reads one channel record.
func GetChannel(ctx context.Context, fs *firestore.Client, id string) (Channel, error) {
	var ch Channel
	snap, err := ChannelRef(fs, id).Get(ctx)
	if status.Code(err) == codes.NotFound {
		return ch, fmt.Errorf("channel %s: %w", id, ErrChannelNotFound)
	}
	if err != nil {
		return ch, err
	}
	err = snap.DataTo(&ch)
	return ch, err
}

// ChannelsInStates lists every channel record in one of states (all records
// when none given).
func ChannelsInStates(ctx context.Context, fs *firestore.Client, states ...string) ([]Channel, error) {
	q := fs.Collection(CollChannels).Query
	if len(states) == 1 {
		q = q.Where("state", "==", states[0])
	} else if len(states) > 1 {
		q = q.Where("state", "in", states)
	}
	return readChannels(q.Documents(ctx))
}

// ChannelsOfCalendar lists the channel records of one calendar, every state.
func ChannelsOfCalendar(ctx context.Context, fs *firestore.Client, calendarKey string) ([]Channel, error) {
	return readChannels(fs.Collection(CollChannels).Where("calendarKey", "==", calendarKey).Documents(ctx))
}

func readChannels(it *firestore.DocumentIterator) ([]Channel, error) {
	defer it.Stop()
	var out []Channel
	for {
		snap, err := it.Next()
		if errors.Is(err, iterator.Done) {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		var ch Channel
		if err := snap.DataTo(&ch); err != nil {
			return nil, fmt.Errorf("channel %s: %w", snap.Ref.ID, err)
		}
		if ch.ChannelID == "" {
			ch.ChannelID = snap.Ref.ID
		}
		out = append(out, ch)
	}
}

// ActivateChannel records Google's answer to the watch call: state active,
// resource id and URI, granted expiration, and the TTL field.
func ActivateChannel(ctx context.Context, fs *firestore.Client, id, resourceID, resourceURI string, expiration, expireAt time.Time) error {
	_, err := ChannelRef(fs, id).Update(ctx, []firestore.Update{
		{Path: "state", Value: ChannelActive},
		{Path: "resourceId", Value: resourceID},
		{Path: "resourceUri", Value: resourceURI},
		{Path: "expiration", Value: expiration},
		{Path: "expireAt", Value: expireAt},
	})
	if status.Code(err) == codes.NotFound {
		return fmt.Errorf("channel %s: %w", id, ErrChannelNotFound)
	}
	return err
}

// EndChannel moves a record to stopped or expired and sets the TTL field
// (expireAt), so Firestore deletes it later. stoppedAt is set for stopped.
// A missing record is not an error.
func EndChannel(ctx context.Context, fs *firestore.Client, id, state string, at, expireAt time.Time) error {
	ups := []firestore.Update{
		{Path: "state", Value: state},
		{Path: "expireAt", Value: expireAt},
	}
	if state == ChannelStopped {
		ups = append(ups, firestore.Update{Path: "stoppedAt", Value: at})
	}
	_, err := ChannelRef(fs, id).Update(ctx, ups)
	if status.Code(err) == codes.NotFound {
		return nil
	}
	return err
}
