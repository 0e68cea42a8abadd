package e2e

import (
	"context"
	"encoding/json"
	"strconv"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"google.golang.org/api/calendar/v3"

	"github.com/calsync/calsync/shared/channeltoken"
	"github.com/calsync/calsync/shared/messages"
	"github.com/calsync/calsync/shared/pubsubx"
	"github.com/calsync/calsync/shared/store"
	"github.com/calsync/calsync/shared/testing/calendaremu"
)

// A channel whose address is the stack's Webhook URL gets every change of its
// calendar onto the notifications topic, tagged with the calendar's key.
func TestWebhookPublishesPushNotifications(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cal := newService(t, ctx)
	c, err := cal.Calendars.Insert(&calendar.Calendar{Summary: "webhook e2e"}).Context(ctx).Do()
	if err != nil {
		t.Fatal(err)
	}
	key := store.CalendarKey(c.Id)
	sub := subscribe(t, ctx, sys.NotificationsTopic)

	keys, err := channeltoken.Parse(sys.Env["CHANNEL_TOKEN_KEYS"])
	if err != nil {
		t.Fatal(err)
	}
	chID := "e2e-webhook-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	exp := time.Now().Add(time.Hour)
	tok, err := keys.Mint(chID, key, exp)
	if err != nil {
		t.Fatal(err)
	}
	ch, err := cal.Events.Watch(c.Id, &calendar.Channel{Id: chID, Type: "web_hook", Address: sys.WebhookURL, Token: tok, Expiration: exp.UnixMilli()}).Context(ctx).Do()
	if err != nil {
		t.Fatal(err)
	}
	defer cal.Channels.Stop(&calendar.Channel{Id: ch.Id, ResourceId: ch.ResourceId}).Context(context.Background()).Do()
	if _, err := cal.Events.Insert(c.Id, &calendar.Event{Summary: "x",
		Start: &calendar.EventDateTime{Date: "2030-01-02"}, End: &calendar.EventDateTime{Date: "2030-01-03"}}).Context(ctx).Do(); err != nil {
		t.Fatal(err)
	}
	// The topic is shared (the stack's RenewChannels and other tests publish
	// requests on it): this channel's pushes are the ones with its id.
	ours := func(ms []*pubsub.Message) []*pubsub.Message {
		var out []*pubsub.Message
		for _, m := range ms {
			if n, err := messages.ParseNotification(m.Data); err == nil && n.ChannelID == chID {
				out = append(out, m)
			}
		}
		return out
	}
	states := map[string]bool{}
	for _, m := range ours(sub.until(t, ctx, func(ms []*pubsub.Message) bool { return len(ours(ms)) >= 2 })) {
		n, err := messages.ParseNotification(m.Data)
		if err != nil {
			t.Fatal(err)
		}
		if n.CalendarKey != key || m.Attributes[messages.AttrCalendarKey] != key {
			t.Fatalf("notification %+v attrs %v: want calendar %s channel %s", n, m.Attributes, key, chID)
		}
		states[n.ResourceState] = true
	}
	if !states[messages.StateSync] || !states[messages.StateExists] {
		t.Fatalf("states %v: want sync and exists", states)
	}
}

// collector gathers the messages of a fresh subscription.
type collector struct {
	ch chan *pubsub.Message
}

// subscribe creates a subscription of its own on topic and collects what arrives.
func subscribe(t *testing.T, ctx context.Context, topic string) *collector {
	t.Helper()
	id := "e2e-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	if err := pubsubx.EnsureSubscription(ctx, sys.PubSub, topic, id, false); err != nil {
		t.Fatal(err)
	}
	c := &collector{ch: make(chan *pubsub.Message, 100000)}
	receive(t, id, func(m *pubsub.Message) { c.ch <- m })
	return c
}

// receive hands each message of subscription id to fn, acknowledged,
// until the test ends.
func receive(t *testing.T, id string, fn func(*pubsub.Message)) {
	rctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = sys.PubSub.Subscriber(id).Receive(rctx, func(_ context.Context, m *pubsub.Message) {
			m.Ack()
			fn(m)
		})
	}()
	t.Cleanup(func() { cancel(); <-done })
}

// until collects messages until done says so or ctx ends (then it fails).
func (c *collector) until(t *testing.T, ctx context.Context, done func([]*pubsub.Message) bool) []*pubsub.Message {
	t.Helper()
	var got []*pubsub.Message
	for !done(got) {
		select {
		case m := <-c.ch:
			got = append(got, m)
		case <-ctx.Done():
			b, _ := json.Marshal(len(got))
			t.Fatalf("gave up waiting for messages; got %s", b)
		}
	}
	return got
}

func newService(t *testing.T, ctx context.Context) *calendar.Service {
	t.Helper()
	svc, err := calendaremu.NewService(ctx, sys.CalendarBaseURL)
	if err != nil {
		t.Fatal(err)
	}
	return svc
}
