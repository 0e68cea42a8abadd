// Package channels makes, renews and stops Google Calendar push channels and
// keeps their records (channels/{id}) in Firestore.
//
// Channel ids form one chain per calendar: the first is RootID(namespace,
// calendarKey, epoch), each next one SuccessorID(previous) (name-based
// UUIDs). Google wants channel ids unique within a Google Cloud project, so
// the namespace is the project and the deployment, and each chain's epoch
// (claimed on the calendar document when a chain starts) only grows: no id
// repeats, even after every record, or the whole database, is gone. The record of a new
// channel is created (state pending) with Firestore's create-if-absent before
// the watch call, so the record is the claim: two overlapping runs that both
// want a calendar's next channel compute the same id and only one of them
// creates it. That is how no calendar ends up with two kept channels, or none.
package channels

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/google/uuid"
	"google.golang.org/api/calendar/v3"

	"github.com/calsync/calsync/shared/calclient"
	"github.com/calsync/calsync/shared/channeltoken"
	"github.com/calsync/calsync/shared/lifecycle"
	"github.com/calsync/calsync/shared/logging"
	"github.com/calsync/calsync/shared/store"
)

// ErrBusy: another run is creating this calendar's next channel.
var ErrBusy = errors.New("channels: calendar busy (another run is making its channel)")

// Services builds Calendar clients (calclient.Factory).
type Services interface {
	Service(ctx context.Context, g store.Grant) (*calendar.Service, error)
}

// Minter mints channel tokens (channeltoken.Keys).
type Minter interface {
	// MintFor signs a token for a channel on resource (channeltoken's
	// ResourceEvents or ResourceCalendarList) of key that ends at the
	// channel's expiration.
	MintFor(channelID, resource, key string, expiration time.Time) (string, error)
	// SigningKeyID names the key Mint signs with; each record keeps it.
	SigningKeyID() string
}

// Manager watches and stops channels.
type Manager struct {
	// Namespace makes channel ids unique per project and deployment
	// (Namespace(project, deployment)).
	Namespace  string
	Store      *store.Store
	Calendars  Services
	Tokens     Minter
	WebhookURL string
	// TTL is asked of Google (params.ttl); Google may grant less.
	TTL time.Duration
	// Retention is how long ended records stay before Firestore's TTL deletes
	// them (expireAt; default 72 h).
	Retention time.Duration
	// PendingTimeout: a pending record older than this belongs to a run that
	// died between record and watch reply (default 2 min).
	PendingTimeout time.Duration
	// Attempts bounds tries of one retryable Calendar call (default 4).
	Attempts int
	// Lifecycle records a calendar Google will not push for as polled
	// (default: an owner on Store).
	Lifecycle *lifecycle.Owner
	Logger    *slog.Logger
	Now       func() time.Time

	// afterWatch runs between the new channel's activation and the old
	// channel's stop during a renewal (tests observe the overlap).
	afterWatch func(old, new store.Channel)
}

var idSpace = uuid.MustParse("8a0f3c64-5d59-4c9e-9a55-3f1d0c6f2b7e")

// Namespace is the channel id namespace of a deployment in a project.
func Namespace(project, deployment string) string { return project + "/" + deployment }

// RootID is the first channel id of a calendar's chain of the given epoch
// (store.ClaimChannelEpoch) in a namespace.
func RootID(namespace, calendarKey, epoch string) string {
	return uuid.NewSHA1(idSpace, []byte("root/"+namespace+"/"+calendarKey+"/"+epoch)).String()
}

// SuccessorID is the channel id that follows id in its chain.
func SuccessorID(id string) string {
	return uuid.NewSHA1(idSpace, []byte("next/"+id)).String()
}

func (m *Manager) now() time.Time {
	if m.Now != nil {
		return m.Now().UTC()
	}
	return time.Now().UTC()
}

func (m *Manager) retention() time.Duration {
	if m.Retention > 0 {
		return m.Retention
	}
	return 72 * time.Hour
}

func (m *Manager) pendingTimeout() time.Duration {
	if m.PendingTimeout > 0 {
		return m.PendingTimeout
	}
	return 2 * time.Minute
}

func (m *Manager) lifecycle() *lifecycle.Owner {
	if m.Lifecycle != nil {
		return m.Lifecycle
	}
	return &lifecycle.Owner{Store: m.Store, Logger: m.Logger}
}

func (m *Manager) log(ctx context.Context) *slog.Logger {
	if m.Logger != nil {
		return m.Logger
	}
	return logging.FromContext(ctx)
}

// Watch makes cal's next channel after the channel id after ("" starts at
// the chain's root; ids already used by ended channels are skipped). The
// pending record is written first, then events.watch is called, then the
// record gets Google's resourceId, resourceUri and granted expiration (state
// active). ErrBusy when another run holds the next id (pending or live).
// On a failed watch the record is marked expired and the error returned.
func (m *Manager) Watch(ctx context.Context, cal store.Calendar, after string) (store.Channel, error) {
	return m.watch(ctx, eventsTarget(cal), after)
}

// watch makes the next channel of t's chain (Watch; lists.go for lists).
func (m *Manager) watch(ctx context.Context, t target, after string) (store.Channel, error) {
	key := t.key
	svc, err := m.Calendars.Service(ctx, t.grant)
	if err != nil {
		return store.Channel{}, err
	}
	var id string
	if after != "" {
		id = SuccessorID(after)
	} else {
		// A new chain: claim the calendar's next epoch first, so two runs
		// starting one at once cannot both (the loser is busy).
		claim := m.Store.ClaimChannelEpoch
		if t.resource == channeltoken.ResourceCalendarList {
			claim = m.Store.ClaimListChannelEpoch
		}
		epoch, err := claim(ctx, key, t.epoch)
		if errors.Is(err, store.ErrChannelEpochMoved) {
			return store.Channel{}, ErrBusy
		}
		if err != nil {
			return store.Channel{}, fmt.Errorf("channels: %w", err)
		}
		id = RootID(m.Namespace, key, epoch)
	}
	now := m.now()
	// The expiration asked of Google is the one signed into the token:
	// Google grants it or less, so no push of this channel verifies after
	// it (plus the Webhook's grace).
	expiration := now.Add(m.TTL).Truncate(time.Millisecond)
	rec := store.Channel{Kind: t.kind, Key: key, CalendarID: t.label, Resource: t.resource, State: store.ChannelPending,
		CreatedAt: now, Expiration: expiration, ExpireAt: expiration.Add(m.retention()),
		TokenKeyID: m.Tokens.SigningKeyID(), Creator: &t.grant}
	for hops := 0; ; hops++ {
		if hops > 1000 {
			return store.Channel{}, fmt.Errorf("channels: no free id in the chain of %s", key)
		}
		rec.ChannelID = id
		err := m.Store.CreateChannel(ctx, rec)
		if err == nil {
			break
		}
		if !errors.Is(err, store.ErrChannelExists) {
			return store.Channel{}, fmt.Errorf("channels: pending record: %w", err)
		}
		old, err := m.Store.GetChannel(ctx, id)
		if errors.Is(err, store.ErrNotFound) {
			continue // deleted meanwhile: try the same id again
		}
		if err != nil {
			return store.Channel{}, err
		}
		if m.holds(old, now) {
			return store.Channel{}, ErrBusy
		}
		id = SuccessorID(id)
	}
	token, err := m.Tokens.MintFor(id, t.resource, key, expiration)
	if err != nil {
		m.end(ctx, rec, store.ChannelExpired)
		return store.Channel{}, err
	}
	var got *calendar.Channel
	err = m.retry(ctx, func() error {
		var err error
		got, err = t.call(ctx, svc, &calendar.Channel{
			Id: id, Type: "web_hook", Address: m.WebhookURL, Token: token,
			Expiration: expiration.UnixMilli(),
		})
		return err
	})
	if err != nil {
		if ctx.Err() == nil { // a known failure: the id is spent
			m.end(ctx, rec, store.ChannelExpired)
		}
		return store.Channel{}, fmt.Errorf("channels: watch %s: %w", t.label, err)
	}
	rec.State = store.ChannelActive
	rec.ResourceID, rec.ResourceURI = got.ResourceId, got.ResourceUri
	rec.Expiration = time.UnixMilli(got.Expiration).UTC()
	rec.ExpireAt = rec.Expiration.Add(m.retention())
	if err := m.Store.ActivateChannel(ctx, id, rec.ResourceID, rec.ResourceURI, rec.Expiration, rec.ExpireAt); err != nil {
		// A live channel without a usable record: stop it rather than leak it.
		_ = m.Stop(ctx, t.grant, rec)
		return store.Channel{}, fmt.Errorf("channels: activate record %s: %w", id, err)
	}
	m.log(ctx).InfoContext(ctx, "channel created", logging.KeyEvent, logging.EventChannelCreated,
		keyAttr(t.kind), key, logging.KeyChannelID, id, logging.KeyExpiration, rec.Expiration, logging.KeyKeyID, rec.TokenKeyID)
	return rec, nil
}

// holds reports whether an existing record keeps its id busy: a live
// channel, or a pending one whose creator may still be working.
func (m *Manager) holds(ch store.Channel, now time.Time) bool {
	switch ch.State {
	case store.ChannelActive:
		return ch.Expiration.After(now)
	case store.ChannelPending:
		return now.Sub(ch.CreatedAt) < m.pendingTimeout()
	}
	return false
}

// Stop stops a channel at Google (channels.stop with id and resourceId, as
// grant g, which made it; 404 counts as stopped) and marks its record
// stopped with stoppedAt and expireAt.
func (m *Manager) Stop(ctx context.Context, g store.Grant, ch store.Channel) error {
	if ch.Creator != nil {
		g = *ch.Creator // only its creator may stop a channel
	}
	if ch.ResourceID != "" {
		svc, err := m.Calendars.Service(ctx, g)
		if err == nil {
			err = m.retry(ctx, func() error {
				return svc.Channels.Stop(&calendar.Channel{Id: ch.ChannelID, ResourceId: ch.ResourceID}).Context(ctx).Do()
			})
		}
		switch {
		case err == nil, calclient.IsNotFound(err):
		case calclient.IsAuthRevoked(err):
			// Only the creator may stop a channel, and its grant is dead:
			// Google stops delivering with it; the record is closed.
			m.log(ctx).WarnContext(ctx, "channel cannot be stopped: its grant is revoked; record closed",
				keyAttr(ch.Watches()), ch.Key, logging.KeyChannelID, ch.ChannelID, logging.KeyError, err.Error())
		default:
			return fmt.Errorf("channels: stop %s: %w", ch.ChannelID, err)
		}
	}
	if err := m.end(ctx, ch, store.ChannelStopped); err != nil {
		return err
	}
	m.log(ctx).InfoContext(ctx, "channel stopped", logging.KeyEvent, logging.EventChannelStopped,
		keyAttr(ch.Watches()), ch.Key, logging.KeyChannelID, ch.ChannelID)
	return nil
}

// StopCalendar stops every live or pending channel of cal.
func (m *Manager) StopCalendar(ctx context.Context, cal store.Calendar, reason string) (int, error) {
	chans, err := m.Store.ChannelsOfCalendar(ctx, cal.Key())
	if err != nil {
		return 0, err
	}
	n := 0
	var errs []error
	for _, ch := range chans {
		if ch.State != store.ChannelActive && ch.State != store.ChannelPending {
			continue
		}
		if err := m.Stop(ctx, cal.Grant(), ch); err != nil {
			errs = append(errs, err)
			continue
		}
		n++
	}
	return n, errors.Join(errs...)
}

func (m *Manager) end(ctx context.Context, ch store.Channel, state string) error {
	now := m.now()
	return m.Store.EndChannel(ctx, ch.ChannelID, state, now, now.Add(m.retention()))
}

// retry runs f until it succeeds, fails for good, or Attempts are spent,
// backing off exponentially with jitter on retryable errors.
func (m *Manager) retry(ctx context.Context, f func() error) error {
	attempts := m.Attempts
	if attempts <= 0 {
		attempts = 4
	}
	delay := 250 * time.Millisecond
	for i := 1; ; i++ {
		err := f()
		if err == nil || i >= attempts || !calclient.IsRetryable(err) {
			return err
		}
		d := delay/2 + rand.N(delay)
		select {
		case <-ctx.Done():
			return err
		case <-time.After(d):
		}
		delay *= 2
	}
}
