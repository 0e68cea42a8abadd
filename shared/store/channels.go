package store

// Channel records: channels/{channelId} (shared/channels and RenewChannels).

import (
	"context"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"time"

	"cloud.google.com/go/firestore"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// ErrChannelExists: CreateChannel found the id taken.
var ErrChannelExists = errors.New("store: channel record exists")

// CreateChannel writes a new channel record; ErrChannelExists if the id is
// taken (the record doubles as a claim: only one writer creates an id).
func (s *Store) CreateChannel(ctx context.Context, ch Channel) error {
	_, err := s.ChannelRef(ch.ChannelID).Create(ctx, ch)
	if status.Code(err) == codes.AlreadyExists {
		return fmt.Errorf("channel %s: %w", ch.ChannelID, ErrChannelExists)
	}
	return err
}

// GetChannel reads one channel record; ErrNotFound when there is none.
func (s *Store) GetChannel(ctx context.Context, id string) (Channel, error) {
	ch, err := getDoc[Channel](ctx, s.ChannelRef(id), "channel "+id)
	if err == nil && ch.ChannelID == "" {
		ch.ChannelID = id
	}
	return ch, err
}

// ChannelsInStates lists every channel record in one of states (all records
// when none given).
func (s *Store) ChannelsInStates(ctx context.Context, states ...string) ([]Channel, error) {
	q := s.Client.Collection(CollChannels).Query
	if len(states) == 1 {
		q = q.Where("state", "==", states[0])
	} else if len(states) > 1 {
		q = q.Where("state", "in", states)
	}
	return channelList(q.Documents(ctx))
}

// ChannelsOfCalendar lists the channel records of one calendar, every state.
func (s *Store) ChannelsOfCalendar(ctx context.Context, calendarKey string) ([]Channel, error) {
	return channelList(s.Client.Collection(CollChannels).Where("calendarKey", "==", calendarKey).Documents(ctx))
}

// channelList reads channel records in document id order.
func channelList(it *firestore.DocumentIterator) ([]Channel, error) {
	byID, err := readAll[Channel](it, "channel")
	if err != nil {
		return nil, err
	}
	out := make([]Channel, 0, len(byID))
	for id, ch := range byID {
		if ch.ChannelID == "" {
			ch.ChannelID = id
		}
		out = append(out, ch)
	}
	slices.SortFunc(out, func(a, b Channel) int { return strings.Compare(a.ChannelID, b.ChannelID) })
	return out, nil
}

// ActivateChannel records Google's answer to the watch call: state active,
// resource id and URI, granted expiration, and the TTL field.
func (s *Store) ActivateChannel(ctx context.Context, id, resourceID, resourceURI string, expiration, expireAt time.Time) error {
	_, err := s.ChannelRef(id).Update(ctx, []firestore.Update{
		{Path: "state", Value: ChannelActive},
		{Path: "resourceId", Value: resourceID},
		{Path: "resourceUri", Value: resourceURI},
		{Path: "expiration", Value: expiration},
		{Path: "expireAt", Value: expireAt},
	})
	return wrapNotFound(err, "channel "+id)
}

// EndChannel moves a record to stopped or expired and sets the TTL field
// (expireAt), so Firestore deletes it later. stoppedAt is set for stopped.
// A missing record is not an error.
func (s *Store) EndChannel(ctx context.Context, id, state string, at, expireAt time.Time) error {
	ups := []firestore.Update{
		{Path: "state", Value: state},
		{Path: "expireAt", Value: expireAt},
	}
	if state == ChannelStopped {
		ups = append(ups, firestore.Update{Path: "stoppedAt", Value: at})
	}
	_, err := s.ChannelRef(id).Update(ctx, ups)
	if isNotFound(err) {
		return nil
	}
	return err
}

// ErrChannelEpochMoved: another run started a new chain of channel ids for
// the calendar since the caller read it.
var ErrChannelEpochMoved = errors.New("store: the calendar's channel epoch moved")

// ClaimChannelEpoch starts a new chain of channel ids for calendar key: if
// its channelEpoch is still prev, it becomes a new one (the current time in
// milliseconds, later than prev's, and random letters), which is returned.
// Two runs racing both read prev; one claims, the other gets
// ErrChannelEpochMoved. Epochs only grow, so a chain, and a channel id,
// never repeats, even after every channel record (or the whole database)
// was deleted.
func (s *Store) ClaimChannelEpoch(ctx context.Context, key, prev string) (string, error) {
	defer s.lockCalendar(key)()
	return s.claimEpoch(ctx, s.CalendarRef(key), "calendar "+key, prev)
}

// ClaimListChannelEpoch is ClaimChannelEpoch for the chain of an
// identity's calendar-list channels, on the identity's document.
func (s *Store) ClaimListChannelEpoch(ctx context.Context, identityKey, prev string) (string, error) {
	return s.claimEpoch(ctx, s.IdentityRef(identityKey), "identity "+identityKey, prev)
}

func (s *Store) claimEpoch(ctx context.Context, ref *firestore.DocumentRef, what, prev string) (string, error) {
	var next string
	err := s.Client.RunTransaction(ctx, func(ctx context.Context, tx *firestore.Transaction) error {
		snap, err := tx.Get(ref)
		if err != nil {
			return wrapNotFound(err, what)
		}
		cur, _ := snap.DataAt("channelEpoch")
		if c, _ := cur.(string); c != prev {
			return ErrChannelEpochMoved
		}
		ms := s.now().UnixMilli()
		if p, _, ok := strings.Cut(prev, "-"); ok {
			if n, err := strconv.ParseInt(p, 10, 64); err == nil && n >= ms {
				ms = n + 1 // a clock behind the last epoch's
			}
		}
		next = fmt.Sprintf("%d-%s", ms, randomLetters(6))
		return tx.Update(ref, []firestore.Update{{Path: "channelEpoch", Value: next}})
	})
	if err != nil {
		return "", fmt.Errorf("claim channel epoch of %s: %w", what, err)
	}
	return next, nil
}

func randomLetters(n int) string {
	const alphabet = "abcdefghijklmnopqrstuvwxyz234567"
	b := make([]byte, n)
	for i := range b {
		b[i] = alphabet[mrand.IntN(len(alphabet))]
	}
	return string(b)
}
