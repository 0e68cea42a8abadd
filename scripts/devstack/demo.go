package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"cloud.google.com/go/firestore"
	"cloud.google.com/go/pubsub/v2"
	"google.golang.org/api/calendar/v3"

	"github.com/calsync/calsync/scripts/devstack/calgen"
	"github.com/calsync/calsync/scripts/devstack/stack"
	"github.com/calsync/calsync/shared/channeltoken"
	"github.com/calsync/calsync/shared/lifecycle"
	"github.com/calsync/calsync/shared/messages"
	"github.com/calsync/calsync/shared/pubsubx"
	"github.com/calsync/calsync/shared/store"
	"github.com/calsync/calsync/shared/testing/calendaremu"
)

type demoOptions struct {
	events int
	every  time.Duration
}

// runDemo builds a calendar, has calsync watch it, then changes it in bursts
// while printing the change feed and a status line, until ctx ends.
func runDemo(ctx context.Context, st *stack.Stack, o demoOptions, w io.Writer) error {
	svc, err := calendaremu.NewService(ctx, st.CalendarBaseURL)
	if err != nil {
		return err
	}
	cal, err := svc.Calendars.Insert(&calendar.Calendar{Summary: "calsync demo", TimeZone: "Europe/Paris"}).Context(ctx).Do()
	if err != nil {
		return err
	}
	key := store.CalendarKey(cal.Id)
	fmt.Fprintf(w, "demo: calendar %s (key %s): creating %d events...\n", cal.Id, key, o.events)
	gen := calgen.New(svc, cal.Id, uint64(time.Now().UnixNano()))
	if err := gen.Seed(ctx, o.events); err != nil {
		return err
	}

	// The change feed: a subscription of our own, made before anything syncs.
	subID := "devstack-demo-" + strconv.FormatInt(time.Now().UnixNano()%1e9, 36)
	if err := pubsubx.EnsureSubscription(ctx, st.PubSub, st.ChangesTopic, subID, false); err != nil {
		return err
	}
	feed := &feedStats{}
	go func() {
		_ = st.PubSub.Subscriber(subID).Receive(ctx, func(_ context.Context, m *pubsub.Message) {
			m.Ack()
			feed.print(w, m)
		})
	}()

	// A consumer of the lifecycle topic: what a product reacts to (control
	// answers, enrollments, initial syncs complete), one line each.
	lifeID := "devstack-demo-lifecycle-" + strconv.FormatInt(time.Now().UnixNano()%1e9, 36)
	if err := pubsubx.EnsureSubscription(ctx, st.PubSub, st.LifecycleTopic, lifeID, false); err != nil {
		return err
	}
	go func() {
		_ = st.PubSub.Subscriber(lifeID).Receive(ctx, func(_ context.Context, m *pubsub.Message) {
			m.Ack()
			printLifecycle(w, m)
		})
	}()

	if err := watch(ctx, st, svc, cal.Id, key, w); err != nil {
		return err
	}
	go statusLine(ctx, st, feed, w)

	fmt.Fprintf(w, "demo: changing the calendar every %s (Ctrl-C to stop)\n", o.every)
	t := time.NewTicker(o.every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		n := 1 + gen.Rand.IntN(8)
		var ops []string
		for i := 0; i < n; i++ {
			op, err := gen.Step(ctx)
			if err != nil {
				if ctx.Err() != nil {
					return nil
				}
				fmt.Fprintf(w, "demo: %v\n", err)
				continue
			}
			ops = append(ops, string(op))
		}
		fmt.Fprintf(w, "%s burst: %v\n", time.Now().Format("15:04:05.000"), ops)
	}
}

// watch registers the calendar and has RenewChannels' repair step make its
// channel, as an operator would with the CLI. If RenewChannels is not deployed
// in this build, it watches the calendar itself with a token minted from
// CHANNEL_TOKEN_KEYS, which is what RenewChannels would do.
func watch(ctx context.Context, st *stack.Stack, svc *calendar.Service, calID, key string, w io.Writer) error {
	fs, err := firestore.NewClient(ctx, st.ProjectID)
	if err != nil {
		return err
	}
	defer fs.Close()
	if _, err := lifecycle.Register(ctx, store.New(fs), store.Calendar{CalendarID: calID, AuthMode: store.AuthADC}); err != nil {
		return fmt.Errorf("register: %w", err)
	}
	r, err := st.RunRenew(ctx)
	if err == nil && r.Status/100 == 2 {
		for _, ch := range st.Calendar.Channels() {
			if ch.Calendar == calID && !ch.Stopped && !ch.Expired {
				fmt.Fprintf(w, "demo: registered; RenewChannels made channel %s (expires %s)\n", ch.ID, ch.Expiration.Format(time.TimeOnly))
				return nil
			}
		}
	}
	fmt.Fprintf(w, "demo: RenewChannels made no channel (status %d %v): watching directly\n", r.Status, err)
	keys, err := channeltoken.Parse(st.Env["CHANNEL_TOKEN_KEYS"])
	if err != nil {
		return err
	}
	id := "demo-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	exp := time.Now().Add(7 * 24 * time.Hour) // Google's default TTL, signed into the token
	tok, err := keys.Mint(id, key, exp)
	if err != nil {
		return err
	}
	ch, err := svc.Events.Watch(calID, &calendar.Channel{Id: id, Type: "web_hook", Address: st.WebhookURL, Token: tok, Expiration: exp.UnixMilli()}).Context(ctx).Do()
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "demo: channel %s watching %s\n", ch.Id, calID)
	return nil
}

type feedStats struct {
	mu    sync.Mutex
	n     int
	kinds map[string]int
	lags  []time.Duration
}

func (f *feedStats) print(w io.Writer, m *pubsub.Message) {
	var c messages.Change
	if err := json.Unmarshal(m.Data, &c); err != nil {
		fmt.Fprintf(w, "change feed: undecodable message %s: %v\n", m.ID, err)
		return
	}
	var ev struct {
		Summary string `json:"summary"`
	}
	_ = json.Unmarshal(c.Event, &ev)
	lag := time.Duration(-1)
	if u, err := time.Parse(time.RFC3339Nano, c.Updated); err == nil {
		lag = time.Since(u)
	}
	f.mu.Lock()
	f.n++
	if f.kinds == nil {
		f.kinds = map[string]int{}
	}
	f.kinds[c.Change]++
	if lag >= 0 {
		f.lags = append(f.lags, lag)
		if len(f.lags) > 100 {
			f.lags = f.lags[len(f.lags)-100:]
		}
	}
	f.mu.Unlock()
	fmt.Fprintf(w, "%s change %-7s %-8s %-11s %-40s %-30q lag %s\n", time.Now().Format("15:04:05.000"), c.Change, c.Tenant, c.Origin, c.EventID, ev.Summary, fmtLag(lag))
}

// printLifecycle prints one lifecycle message: its type, tenant and what
// it is about.
func printLifecycle(w io.Writer, m *pubsub.Message) {
	var l messages.Lifecycle
	if err := json.Unmarshal(m.Data, &l); err != nil {
		fmt.Fprintf(w, "lifecycle: undecodable message %s: %v\n", m.ID, err)
		return
	}
	about := []string{}
	for k, v := range map[string]string{"identity": l.IdentityKey, "externalId": l.ExternalID, "calendar": l.CalendarID, "reason": l.Reason, "status": l.Status} {
		if v != "" {
			about = append(about, k+"="+v)
		}
	}
	if l.Control != nil {
		about = append(about, "requestId="+l.Control.RequestID, "action="+l.Control.Action)
	}
	if l.Events != nil {
		about = append(about, "events="+strconv.Itoa(*l.Events))
	}
	sort.Strings(about)
	fmt.Fprintf(w, "%s lifecycle %-32s %-8s %s\n", time.Now().Format("15:04:05.000"), l.Type, l.Tenant, strings.Join(about, " "))
}

func fmtLag(d time.Duration) string {
	if d < 0 {
		return "?"
	}
	return d.Round(time.Millisecond).String()
}

func statusLine(ctx context.Context, st *stack.Stack, f *feedStats, w io.Writer) {
	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		f.mu.Lock()
		n, kinds := f.n, fmt.Sprint(f.kinds)
		lags := append([]time.Duration(nil), f.lags...)
		f.mu.Unlock()
		sort.Slice(lags, func(i, j int) bool { return lags[i] < lags[j] })
		p50, max := time.Duration(-1), time.Duration(-1)
		if len(lags) > 0 {
			p50, max = lags[len(lags)/2], lags[len(lags)-1]
		}
		cs := st.Calendar.Stats()
		total := 0
		for _, v := range cs.Requests {
			total += v
		}
		fs := st.SyncWorker.Front.Stats()
		fmt.Fprintf(w, "── %s changes %d %s | lag (last 100) p50 %s max %s | Calendar API %d calls (list %d, watch %d, stop %d), push sent %d | SyncWorker deliveries ok %d failed %d, in flight %s | RenewChannels runs %d\n",
			time.Now().Format("15:04:05"), n, kinds, fmtLag(p50), fmtLag(max), total, cs.Requests["events.list"],
			cs.Requests["events.watch"], cs.Requests["channels.stop"], cs.Notifications.Sent, fs.OK, fs.Failed+fs.Unavailable+fs.TimedOut,
			inFlight(st), st.RenewRuns())
	}
}

// inFlight is the SyncWorker requests in flight per instance, e.g. "0/2".
func inFlight(st *stack.Stack) string {
	out := ""
	for i, in := range st.SyncWorker.Infos() {
		if i > 0 {
			out += "/"
		}
		out += strconv.FormatInt(in.InFlight, 10)
	}
	return out
}
