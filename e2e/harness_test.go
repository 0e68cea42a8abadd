package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/firestore"
	"cloud.google.com/go/pubsub/v2"
	"google.golang.org/api/calendar/v3"
	"google.golang.org/api/iterator"

	"github.com/calsync/calsync/shared/messages"
	"github.com/calsync/calsync/shared/store"
	"github.com/calsync/calsync/shared/testing/calendaremu"
	"github.com/calsync/calsync/shared/testing/syncertest"
)

var (
	fsOnce   sync.Once
	fsClient *firestore.Client
	fsErr    error
)

// firestoreClient is the official client on the stack's Firestore emulator.
func firestoreClient(t testing.TB) *firestore.Client {
	t.Helper()
	fsOnce.Do(func() { fsClient, fsErr = firestore.NewClient(context.Background(), sys.ProjectID) })
	if fsErr != nil {
		t.Fatal(fsErr)
	}
	return fsClient
}

// gotMirror reads calendars/{key}/events: id → etag.
func gotMirror(ctx context.Context, fs *firestore.Client, key string) (map[string]string, error) {
	got := map[string]string{}
	it := fs.Collection(store.CollCalendars).Doc(key).Collection(store.CollEvents).Documents(ctx)
	defer it.Stop()
	for {
		snap, err := it.Next()
		if err == iterator.Done {
			return got, nil
		}
		if err != nil {
			return nil, err
		}
		id, _ := snap.Data()["id"].(string)
		if id == "" {
			id = snap.Ref.ID
		}
		etag, _ := snap.Data()["etag"].(string)
		got[id] = etag
	}
}

// diff describes how got differs from want ("" when equal).
func diff(want, got map[string]string) string {
	var missing, extra, stale []string
	for id, e := range want {
		g, ok := got[id]
		switch {
		case !ok:
			missing = append(missing, id)
		case g != e:
			stale = append(stale, fmt.Sprintf("%s(%s!=%s)", id, g, e))
		}
	}
	for id := range got {
		if _, ok := want[id]; !ok {
			extra = append(extra, id)
		}
	}
	if len(missing)+len(extra)+len(stale) == 0 {
		return ""
	}
	sort.Strings(missing)
	sort.Strings(extra)
	sort.Strings(stale)
	return fmt.Sprintf("%d events want, %d in mirror; missing %s; extra %s; stale %s", len(want), len(got),
		head(missing), head(extra), head(stale))
}

func head(s []string) string {
	if len(s) > 6 {
		return fmt.Sprintf("%v… (%d)", s[:6], len(s))
	}
	return fmt.Sprint(s)
}

// waitConverged polls until the mirror equals the calendar event by event.
func waitConverged(t *testing.T, ctx context.Context, svc *calendar.Service, calID string, timeout time.Duration) map[string]string {
	t.Helper()
	return waitConvergedKey(t, ctx, svc, calID, store.CalendarKey(calID), timeout)
}

// waitConvergedKey is waitConverged for the mirror under key (a tenant's:
// store.CalendarKeyIn).
func waitConvergedKey(t *testing.T, ctx context.Context, svc *calendar.Service, calID, key string, timeout time.Duration) map[string]string {
	t.Helper()
	fs := firestoreClient(t)
	deadline := time.Now().Add(timeout)
	last := ""
	for {
		want, err := syncertest.Expected(ctx, svc, calID) // every live event and the cancelled occurrences of live series
		if err != nil {
			t.Fatalf("list calendar: %v", err)
		}
		got, err := gotMirror(ctx, fs, key)
		if err != nil {
			t.Fatalf("read mirror: %v", err)
		}
		if last = diff(want, got); last == "" {
			return want
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			t.Fatalf("mirror of %s did not converge in %s: %s\nSyncWorker front %+v, instances %+v, calendar %+v",
				calID, timeout, last, sys.SyncWorker.Front.Stats(), sys.SyncWorker.Infos(), sys.Calendar.Stats())
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// changeLog collects a calendar's messages from the changes topic.
type changeLog struct {
	mu  sync.Mutex
	key string
	all []messages.Change
	bad []string
}

func watchChanges(t *testing.T, key string) *changeLog {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c := subscribe(t, ctx, sys.ChangesTopic)
	l := &changeLog{key: key}
	go func() {
		for m := range c.ch {
			l.add(m)
		}
	}()
	return l
}

func (l *changeLog) add(m *pubsub.Message) {
	if m.Attributes[messages.AttrCalendarKey] != l.key {
		return
	}
	var c messages.Change
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := json.Unmarshal(m.Data, &c); err != nil {
		l.bad = append(l.bad, err.Error())
		return
	}
	if err := syncertest.ValidateChange(m.Data); err != nil {
		l.bad = append(l.bad, err.Error())
		return
	}
	if c.CalendarKey != l.key || c.EventID == "" || m.Attributes[messages.AttrEventID] != c.EventID || m.Attributes[messages.AttrChange] != c.Change {
		l.bad = append(l.bad, fmt.Sprintf("inconsistent message %v %s", m.Attributes, m.Data))
		return
	}
	l.all = append(l.all, c)
}

// missing says which final states never appeared on the changes topic: every
// event of want with its etag (created or updated), and a deletion for every
// event that was announced and is no longer wanted. Empty when complete.
func (l *changeLog) missing(want map[string]string) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	seen := map[string]bool{}    // id + etag announced as present
	deleted := map[string]bool{} // id announced as deleted
	ids := map[string]bool{}
	for _, c := range l.all {
		ids[c.EventID] = true
		if c.Change == messages.ChangeDeleted {
			deleted[c.EventID] = true
		} else {
			seen[c.EventID+" "+c.Etag] = true
		}
	}
	var out []string
	out = append(out, l.bad...)
	for id, etag := range want {
		if !seen[id+" "+etag] {
			out = append(out, "no change for "+id+" "+etag)
		}
	}
	for id := range ids {
		if _, ok := want[id]; !ok && !deleted[id] {
			var hist []string
			for _, c := range l.all {
				if c.EventID == id {
					hist = append(hist, c.Change+" "+c.Etag+" at "+c.SyncedAt.Format("15:04:05.000"))
				}
			}
			out = append(out, fmt.Sprintf("no deletion of %s (announced: %v)", id, hist))
		}
	}
	sort.Strings(out)
	if len(out) == 0 {
		return ""
	}
	return fmt.Sprintf("%d problems: %s", len(out), head(out))
}

// waitChanges polls until the change feed covers want.
func (l *changeLog) wait(t *testing.T, want map[string]string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		m := l.missing(want)
		if m == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("change feed incomplete after %s: %s", timeout, m)
		}
		time.Sleep(300 * time.Millisecond)
	}
}

func (l *changeLog) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.all)
}

// newCalendar makes a calendar of the emulator's default user.
func newCalendar(t *testing.T, ctx context.Context, svc *calendar.Service, name string) string {
	t.Helper()
	c, err := svc.Calendars.Insert(&calendar.Calendar{Summary: name, TimeZone: "Europe/Paris"}).Context(ctx).Do()
	if err != nil {
		t.Fatal(err)
	}
	return c.Id
}

// liveChannels are the calendar's channels the emulator still delivers on.
func liveChannels(calID string) []calendaremu.ChannelInfo {
	var out []calendaremu.ChannelInfo
	for _, ch := range sys.Calendar.Channels() {
		if ch.Calendar == calID && !ch.Stopped && !ch.Expired {
			out = append(out, ch)
		}
	}
	return out
}

// renew calls RenewChannels as the scheduler does and fails on a non-2xx.
func renew(t *testing.T, ctx context.Context) string {
	t.Helper()
	r, err := sys.RunRenew(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if r.Status/100 != 2 {
		t.Fatalf("RenewChannels answered %d: %s", r.Status, r.Body)
	}
	return r.Body
}

// clearCalendarFaults drops every fault rule through the emulator's control API.
func clearCalendarFaults(t *testing.T) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodDelete, sys.CalendarBaseURL+"/emulator/v1/faults", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		t.Fatalf("DELETE faults: %d", resp.StatusCode)
	}
	sys.Calendar.SetNotificationFaults(calendaremu.NotificationFaults{})
}

// waitQuiet waits until the SyncWorker front has had no request for quiet,
// none is in flight, and every notification it has seen is acknowledged or
// dead-lettered (none waits for a redelivery). Messages the emulator has not
// pushed yet keep its push loops busy, so they show as activity.
func waitQuiet(t *testing.T, quiet, timeout time.Duration) {
	t.Helper()
	if err := quietWithin(quiet, timeout); err != nil {
		t.Fatal(err)
	}
}

// quietWithin is waitQuiet's wait; it says what still moves after timeout.
func quietWithin(quiet, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		f := sys.SyncWorker.Front
		st := f.Stats()
		pending := sys.PendingNotifications()
		if time.Since(f.LastActivity()) >= quiet && st.InFlight == 0 && pending == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			var waiting []string
			for _, n := range sys.Notifications() {
				if !n.Acked && !n.DeadLettered {
					waiting = append(waiting, fmt.Sprintf("%s %+v first seen %s, %d attempts %v, %d copies forwarded",
						n.MessageID, n.Notification, n.FirstSeen.Format("15:04:05.000"), n.Attempts, n.Statuses, n.Forwarded))
				}
			}
			return fmt.Errorf("system not quiet after %s: SyncWorker front %+v (last request %s ago), requests at the front %+v, %d notifications waiting for redelivery %s, instances %+v",
				timeout, st, time.Since(f.LastActivity()).Round(time.Millisecond), f.InFlightRequests(), pending, head(waiting), sys.SyncWorker.Infos())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func short(s string) string {
	s = strings.TrimSpace(s)
	if len(s) > 300 {
		return s[:300] + "…"
	}
	return s
}
