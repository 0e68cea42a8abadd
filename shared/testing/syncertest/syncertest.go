// Package syncertest holds test helpers for the sync engine that other
// packages' tests (end-to-end, devstack) reuse: the mirror-versus-Calendar
// comparison and an in-memory change-feed recorder.
package syncertest

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"

	"google.golang.org/api/calendar/v3"

	"github.com/calsync/calsync/schemas"
	"github.com/calsync/calsync/shared/messages"
	"github.com/calsync/calsync/shared/pubsubx"
	"github.com/calsync/calsync/shared/store"
	"github.com/calsync/calsync/shared/syncer"
)

// Expected lists a calendar as Google (or the emulator) has it now and returns
// what the mirror must hold, id → etag: every live event, plus the cancelled
// exceptions of live series.
func Expected(ctx context.Context, svc *calendar.Service, calendarID string) (map[string]string, error) {
	var items []*calendar.Event
	err := svc.Events.List(calendarID).ShowDeleted(true).MaxResults(2500).Pages(ctx, func(p *calendar.Events) error {
		items = append(items, p.Items...)
		return nil
	})
	if err != nil {
		return nil, err
	}
	live := map[string]bool{}
	for _, ev := range items {
		if ev.RecurringEventId == "" && ev.Status != "cancelled" {
			live[ev.Id] = true
		}
	}
	want := map[string]string{}
	for _, ev := range items {
		switch {
		case ev.Status != "cancelled":
			want[ev.Id] = ev.Etag
		case ev.RecurringEventId != "" && live[ev.RecurringEventId]:
			want[ev.Id] = ev.Etag
		}
	}
	return want, nil
}

// Mirror reads the mirror of a calendar, id → etag.
func Mirror(ctx context.Context, st *store.Store, key string) (map[string]string, error) {
	got := map[string]string{}
	err := st.ForEachEvent(ctx, key, func(id, etag string) error {
		got[id] = etag
		return nil
	})
	return got, err
}

// Diff compares the mirror with the calendar event by event (id and etag);
// "" means equal.
func Diff(ctx context.Context, st *store.Store, svc *calendar.Service, calendarID string) (string, error) {
	want, err := Expected(ctx, svc, calendarID)
	if err != nil {
		return "", fmt.Errorf("list calendar: %w", err)
	}
	got, err := Mirror(ctx, st, store.CalendarKey(calendarID))
	if err != nil {
		return "", fmt.Errorf("read mirror: %w", err)
	}
	var diffs []string
	for id, etag := range want {
		switch g, ok := got[id]; {
		case !ok:
			diffs = append(diffs, "missing "+id)
		case g != etag:
			diffs = append(diffs, fmt.Sprintf("stale %s: mirror %s, calendar %s", id, g, etag))
		}
	}
	for id := range got {
		if _, ok := want[id]; !ok {
			diffs = append(diffs, "extra "+id)
		}
	}
	sort.Strings(diffs)
	if len(diffs) > 10 {
		diffs = append(diffs[:10], fmt.Sprintf("... %d more", len(diffs)-10))
	}
	if len(diffs) == 0 {
		return "", nil
	}
	return fmt.Sprintf("mirror of %s has %d events, calendar %d: %s", calendarID, len(got), len(want), strings.Join(diffs, "; ")), nil
}

// AssertMirror fails the test unless the mirror equals the calendar, event by
// event (id and etag).
func AssertMirror(tb testing.TB, ctx context.Context, st *store.Store, svc *calendar.Service, calendarID string) {
	tb.Helper()
	d, err := Diff(ctx, st, svc, calendarID)
	if err != nil {
		tb.Fatal(err)
	}
	if d != "" {
		tb.Fatal(d)
	}
}

// Recorder is an in-memory syncer.Publisher that keeps every change.
type Recorder struct {
	mu      sync.Mutex
	changes []messages.Change
	all     []messages.Change // never reset
	// Fail, if set, is returned by PublishAll instead of recording.
	Fail func() error
}

var _ syncer.Publisher = (*Recorder)(nil)

// PublishAll records the messages.
func (r *Recorder) PublishAll(_ context.Context, key string, msgs []pubsubx.Message) error {
	if r.Fail != nil {
		if err := r.Fail(); err != nil {
			return err
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, m := range msgs {
		if err := ValidateChange(m.Data); err != nil {
			return err
		}
		var c messages.Change
		if err := json.Unmarshal(m.Data, &c); err != nil {
			return err
		}
		if c.CalendarKey != key || m.Attributes[messages.AttrEventID] != c.EventID || m.Attributes[messages.AttrChange] != c.Change ||
			m.Attributes[messages.AttrOrigin] != c.Origin || c.Origin == "" || m.Attributes[messages.AttrIdentityKey] != c.IdentityKey ||
			m.Attributes[messages.AttrTenant] != c.Tenant || m.Attributes[messages.AttrExternalID] != c.ExternalID ||
			c.SchemaVersion != messages.ChangeSchemaVersion || m.Attributes[messages.AttrSchemaVersion] != strconv.Itoa(c.SchemaVersion) {
			return fmt.Errorf("syncertest: inconsistent change message %s %v (key %s)", m.Data, m.Attributes, key)
		}
		r.changes = append(r.changes, c)
		r.all = append(r.all, c)
	}
	return nil
}

// Changes returns what was recorded so far.
func (r *Recorder) Changes() []messages.Change {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]messages.Change(nil), r.changes...)
}

// All returns every change recorded, Reset or not.
func (r *Recorder) All() []messages.Change {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]messages.Change(nil), r.all...)
}

// Replay applies a change feed, in order, to an empty mirror and returns
// id → etag: what a consumer that started with the feed holds. Duplicates
// (at-least-once) are harmless.
func Replay(cs []messages.Change) map[string]string {
	m := map[string]string{}
	for _, c := range cs {
		if c.Change == messages.ChangeDeleted {
			delete(m, c.EventID)
		} else {
			m[c.EventID] = c.Etag
		}
	}
	return m
}

// Reset forgets the recorded changes (All keeps them).
func (r *Recorder) Reset() {
	r.mu.Lock()
	r.changes = nil
	r.mu.Unlock()
}

// Counts returns the number of changes per kind (created, updated, deleted).
func Counts(cs []messages.Change) map[string]int {
	out := map[string]int{}
	for _, c := range cs {
		out[c.Change]++
	}
	return out
}

// ValidateChange checks a change message's body against the published
// schema (schemas/change.v1.json).
func ValidateChange(data []byte) error {
	if err := schemas.Validate(schemas.Change, data); err != nil {
		return fmt.Errorf("syncertest: change message %s: %w", data, err)
	}
	return nil
}

// ValidateLifecycle checks a lifecycle message against the published
// schema (schemas/lifecycle.v1.json).
func ValidateLifecycle(data []byte) error {
	if err := schemas.Validate(schemas.Lifecycle, data); err != nil {
		return fmt.Errorf("syncertest: lifecycle message %s: %w", data, err)
	}
	return nil
}

// Announcements records lifecycle messages (a lifecycle.Announcer), each
// checked against its schema and its attributes against its body.
type Announcements struct {
	mu  sync.Mutex
	all []messages.Lifecycle
	// Err is the first message that did not check.
	Err error
}

// Publish records one lifecycle message.
func (a *Announcements) Publish(_ context.Context, data []byte, attrs map[string]string, _ string) error {
	var m messages.Lifecycle
	err := ValidateLifecycle(data)
	if err == nil {
		err = json.Unmarshal(data, &m)
	}
	if err == nil && (attrs[messages.AttrType] != m.Type || attrs[messages.AttrTenant] != m.Tenant ||
		attrs[messages.AttrIdentityKey] != m.IdentityKey || attrs[messages.AttrExternalID] != m.ExternalID ||
		attrs[messages.AttrCalendarKey] != m.CalendarKey) {
		err = fmt.Errorf("syncertest: lifecycle attributes %v disagree with %s", attrs, data)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if err != nil && a.Err == nil {
		a.Err = err
	}
	a.all = append(a.all, m)
	return err
}

// Of are the messages of one type so far.
func (a *Announcements) Of(typ string) []messages.Lifecycle {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []messages.Lifecycle
	for _, m := range a.all {
		if m.Type == typ {
			out = append(out, m)
		}
	}
	return out
}

// ValidateControl checks a control message against the published schema
// (schemas/control.v1.json).
func ValidateControl(data []byte) error {
	if err := schemas.Validate(schemas.Control, data); err != nil {
		return fmt.Errorf("syncertest: control message %s: %w", data, err)
	}
	return nil
}
