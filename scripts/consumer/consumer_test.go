package main

import (
	"encoding/json"
	"io/fs"
	"strings"
	"testing"
	"time"

	"github.com/calsync/calsync/schemas"
	"github.com/calsync/calsync/shared/messages"
)

// Keys of the form calsync gives them (the schemas check the form).
const (
	calA  = "c00000000000000000000000001"
	calB  = "c00000000000000000000000002"
	idAnn = "i00000000000000000000000001"
)

var t0 = time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)

// change is a real change message: messages.Change as calsync marshals it,
// with its own Attributes.
func change(calKey, eventID, etag, kind, origin, summary string) (map[string]string, []byte) {
	c := messages.Change{SchemaVersion: messages.ChangeSchemaVersion, Origin: origin,
		Attribution: messages.Attribution{Tenant: "acme", IdentityKey: idAnn, ExternalID: "user-42"},
		CalendarID:  "ann@acme.example", CalendarKey: calKey, EventID: eventID, Change: kind, Etag: etag,
		Sequence: 0, SyncedAt: t0, Event: json.RawMessage(`{"id":"` + eventID + `","summary":"` + summary + `"}`)}
	switch kind {
	case messages.ChangeUpdated:
		c.ChangedFields = []string{"etag", "summary", "updated"}
	case messages.ChangeDeleted, messages.ChangeCancelled:
		c.Event = json.RawMessage(`{"id":"` + eventID + `","status":"cancelled"}`)
		c.LastKnown = json.RawMessage(`{"id":"` + eventID + `","summary":"` + summary + `"}`)
	}
	data, err := json.Marshal(c)
	if err != nil {
		panic(err)
	}
	return c.Attributes(), data
}

// lifecycle is a real lifecycle message of type typ, with the fields its
// schema requires of that type, encoded by messages.Lifecycle.Encode.
func lifecycle(typ string, at time.Time, edit func(*messages.Lifecycle)) (map[string]string, []byte) {
	l := messages.Lifecycle{Type: typ, Attribution: messages.Attribution{Tenant: "acme"}, OccurredAt: at}
	switch {
	case strings.HasPrefix(typ, "identity."):
		l.IdentityKey, l.ExternalID = idAnn, "user-42"
	case strings.HasPrefix(typ, "calendar."):
		l.IdentityKey, l.ExternalID, l.CalendarKey, l.CalendarID = idAnn, "user-42", calA, "ann@acme.example"
	case strings.HasPrefix(typ, "domain."):
		l.Tenant, l.Domain = "default", "acme.example"
	case strings.HasPrefix(typ, "control."):
		l.Control = &messages.ControlAnswer{RequestID: "r-1", Action: messages.ActionEnroll}
	}
	switch typ {
	case messages.LifecycleInitialSyncComplete:
		n := 3
		l.Events = &n
	case messages.LifecycleIdentityAuthProblem, messages.LifecycleCalendarAuthProblem, messages.LifecycleDomainAuthProblem:
		l.Reason, l.UserAction = "auth_revoked", messages.UserReconnect
	case messages.LifecycleControlRejected:
		l.Reason = messages.ReasonOutsideTenant
	}
	if edit != nil {
		edit(&l)
	}
	data, attrs, err := l.Encode()
	if err != nil {
		panic(err)
	}
	return attrs, data
}

func handle(t *testing.T, c *Consumer, attrs map[string]string, data []byte) Outcome {
	t.Helper()
	o := c.Handle(attrs, data)
	if strings.Contains(o.Line, "\n") {
		t.Errorf("line %q spans lines", o.Line)
	}
	return o
}

func newConsumer(t *testing.T, size int) *Consumer {
	t.Helper()
	c, err := NewConsumer(size)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// A change is acted on by its kind and origin: a new user's history
// (origin initial) is an import, not new events.
func TestHandleDecidesChanges(t *testing.T) {
	for _, tc := range []struct {
		kind, origin, want, inLine string
	}{
		{messages.ChangeCreated, messages.OriginInitial, "initial import", `summary="Standup"`},
		{messages.ChangeCreated, messages.OriginIncremental, "new event", "origin=incremental"},
		{messages.ChangeCreated, messages.OriginResync, "new event", "origin=resync"},
		{messages.ChangeUpdated, messages.OriginIncremental, "updated etag,summary,updated", "externalId=user-42"},
		{messages.ChangeCancelled, messages.OriginIncremental, "occurrence cancelled", `summary="Standup"`},
		{messages.ChangeDeleted, messages.OriginIncremental, "deleted", `summary="Standup"`}, // from lastKnown
		{messages.ChangeDeleted, messages.OriginResync, "deleted", "origin=resync"},
		{messages.ChangeDeleted, messages.OriginPurge, "removed from the mirror", "origin=purge"},
	} {
		attrs, data := change(calA, "ev1", `"1"`, tc.kind, tc.origin, "Standup")
		o := handle(t, newConsumer(t, 10), attrs, data)
		if o.Verdict != VerdictApplied || o.Action != tc.want || !strings.Contains(o.Line, tc.inLine) {
			t.Errorf("%s/%s: %+v, want applied %q with %q in the line", tc.kind, tc.origin, o, tc.want, tc.inLine)
		}
	}
}

// Every lifecycle type the schema lists validates as built here and has an
// action of its own (a type added to the schema fails this until it has one).
func TestEveryLifecycleTypeHasAnAction(t *testing.T) {
	data, err := fs.ReadFile(schemas.FS, schemas.Lifecycle)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Properties struct {
			Type struct {
				Examples []string `json:"examples"`
			} `json:"type"`
		} `json:"properties"`
	}
	if err := json.Unmarshal(data, &doc); err != nil || len(doc.Properties.Type.Examples) < 15 {
		t.Fatalf("lifecycle types from the schema: %v, %v", doc.Properties.Type.Examples, err)
	}
	for _, typ := range doc.Properties.Type.Examples {
		attrs, data := lifecycle(typ, t0, nil)
		o := handle(t, newConsumer(t, 10), attrs, data)
		if o.Verdict != VerdictApplied || o.Action == "" || o.Action == "no action" || !strings.Contains(o.Line, typ) {
			t.Errorf("%s: %+v", typ, o)
		}
	}
}

// What the user must do about an auth problem decides what a product shows.
func TestHandleAuthProblemUserAction(t *testing.T) {
	for action, want := range map[string]string{
		messages.UserReconnect:   "show a reconnect banner",
		messages.UserGrantScopes: "ask to reconnect with every permission ticked",
		messages.UserAskAdmin:    "tell the user their Workspace admin must act",
		messages.UserOperator:    "calsync's operator must act",
	} {
		for _, typ := range []string{messages.LifecycleIdentityAuthProblem, messages.LifecycleCalendarAuthProblem} {
			attrs, data := lifecycle(typ, t0, func(l *messages.Lifecycle) { l.UserAction = action })
			if o := handle(t, newConsumer(t, 10), attrs, data); o.Action != want {
				t.Errorf("%s userAction %s: %q, want %q", typ, action, o.Action, want)
			}
		}
	}
}

// Duplicates are found by the documented keys, and only by them.
func TestHandleDeduplicates(t *testing.T) {
	c := newConsumer(t, 100)
	type step struct {
		name, want string
		attrs      map[string]string
		data       []byte
	}
	var steps []step
	add := func(name, want string, attrs map[string]string, data []byte) {
		steps = append(steps, step{name, want, attrs, data})
	}
	a1, d1 := change(calA, "ev1", `"1"`, messages.ChangeCreated, messages.OriginIncremental, "Standup")
	add("a change", VerdictApplied, a1, d1)
	add("the same change again (redelivered, or published twice)", VerdictDuplicate, a1, d1)
	a, d := change(calA, "ev1", `"2"`, messages.ChangeUpdated, messages.OriginIncremental, "Standup")
	add("the same event, a new etag", VerdictApplied, a, d)
	a, d = change(calB, "ev1", `"1"`, messages.ChangeCreated, messages.OriginIncremental, "Standup")
	add("the same event id and etag on another attendee's calendar", VerdictApplied, a, d)
	a, d = change(calA, "ev1", `"1"`, messages.ChangeCreated, messages.OriginResync, "Standup renamed")
	add("the first version again, found by a resync: (calendarKey, eventId, etag) is the same", VerdictDuplicate, a, d)

	l1, ld1 := lifecycle(messages.LifecycleIdentityAuthProblem, t0, nil)
	add("an auth problem", VerdictApplied, l1, ld1)
	add("the same auth problem again", VerdictDuplicate, l1, ld1)
	a, d = lifecycle(messages.LifecycleIdentityAuthProblem, t0.Add(time.Hour), nil)
	add("the same type for the same identity later: a new transition", VerdictApplied, a, d)
	a, d = lifecycle(messages.LifecycleCalendarAuthProblem, t0, nil)
	add("another type at the same instant", VerdictApplied, a, d)

	a, d = lifecycle(messages.LifecycleControlAccepted, t0, nil)
	add("a control answer", VerdictApplied, a, d)
	a, d = lifecycle(messages.LifecycleControlAccepted, t0.Add(time.Minute), func(l *messages.Lifecycle) { l.Control.Duplicate = true })
	add("the answer to the request published again: same requestId", VerdictDuplicate, a, d)
	a, d = lifecycle(messages.LifecycleControlRejected, t0, func(l *messages.Lifecycle) { l.Tenant = "globex" })
	add("another tenant's request of the same id", VerdictApplied, a, d)

	for _, s := range steps {
		if o := handle(t, c, s.attrs, s.data); o.Verdict != s.want {
			t.Errorf("%s: %s (%s), want %s", s.name, o.Verdict, o.Line, s.want)
		}
	}
	want := "summary: 12 messages, 8 applied (2 new event, 1 request accepted, 1 request refused, 3 show a reconnect banner, 1 updated etag,summary,updated), 4 duplicates, 0 poison"
	if got := c.Summary(); got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}

// The dedup set is a window: a duplicate older than the last dedupSize keys
// is acted on again. That is the trade-off of an in-memory set (README).
func TestDedupWindowIsBounded(t *testing.T) {
	c := newConsumer(t, 2)
	var msgs [][2]any
	for _, id := range []string{"ev1", "ev2", "ev3"} {
		a, d := change(calA, id, `"1"`, messages.ChangeCreated, messages.OriginIncremental, id)
		msgs = append(msgs, [2]any{a, d})
	}
	for i, want := range []struct {
		msg     int
		verdict string
	}{{0, VerdictApplied}, {1, VerdictApplied}, {1, VerdictDuplicate}, {2, VerdictApplied}, {0, VerdictApplied}, {2, VerdictDuplicate}} {
		m := msgs[want.msg]
		if o := handle(t, c, m[0].(map[string]string), m[1].([]byte)); o.Verdict != want.verdict {
			t.Errorf("step %d (ev%d): %s, want %s", i, want.msg+1, o.Verdict, want.verdict)
		}
	}
}

// A message that fails its schema, or whose attributes contradict its body,
// is poison: no action, no dedup key taken, counted.
func TestHandlePoison(t *testing.T) {
	attrs, data := change(calA, "ev1", `"1"`, messages.ChangeCreated, messages.OriginIncremental, "Standup")
	lattrs, ldata := lifecycle(messages.LifecycleIdentityEnrolled, t0, nil)
	with := func(m map[string]string, k, v string) map[string]string {
		out := map[string]string{}
		for kk, vv := range m {
			out[kk] = vv
		}
		if v == "" {
			delete(out, k)
		} else {
			out[k] = v
		}
		return out
	}
	for _, tc := range []struct {
		name, why string
		attrs     map[string]string
		data      string
	}{
		{"not JSON", "not JSON", attrs, "{"},
		{"no etag", "etag", attrs, strings.Replace(string(data), `"etag":"\"1\"",`, "", 1)},
		{"schema version 2", "schemaVersion", attrs, strings.Replace(string(data), `"schemaVersion":1`, `"schemaVersion":2`, 1)},
		{"an unknown origin", "origin", attrs, strings.Replace(string(data), `"origin":"incremental"`, `"origin":"later"`, 1)},
		{"a lifecycle body without its type attribute", "change.v1.json", with(lattrs, messages.AttrType, ""), string(ldata)},
		{"a change body with a type attribute", "lifecycle.v1.json", with(attrs, messages.AttrType, "calendar.added"), string(data)},
		{"a tenant attribute the body contradicts", "attribute tenant", with(attrs, messages.AttrTenant, "globex"), string(data)},
		{"an origin attribute the body contradicts", "attribute origin", with(attrs, messages.AttrOrigin, messages.OriginInitial), string(data)},
		{"an externalId attribute the body lacks", "attribute externalId", with(lattrs, messages.AttrExternalID, "user-43"), string(ldata)},
		{"an enrolled identity without its key", "identityKey", lattrs, strings.Replace(string(ldata), `"identityKey":"`+idAnn+`",`, "", 1)},
	} {
		c := newConsumer(t, 10)
		o := handle(t, c, tc.attrs, []byte(tc.data))
		if o.Verdict != VerdictPoison || o.Key != "" || o.Err == nil || !strings.Contains(o.Line, tc.why) || !strings.HasPrefix(o.Line, "poison") {
			t.Errorf("%s: %+v, want poison naming %q", tc.name, o, tc.why)
			continue
		}
		// Nothing was remembered: the valid message is new.
		if o := handle(t, c, attrs, data); o.Verdict != VerdictApplied {
			t.Errorf("%s: the valid message after it: %s", tc.name, o.Verdict)
		}
		if got, want := c.Summary(), "summary: 2 messages, 1 applied (1 new event), 0 duplicates, 1 poison"; got != want {
			t.Errorf("%s: %s, want %s", tc.name, got, want)
		}
	}
}

// The summary counts verdicts, and applied messages by action.
func TestSummary(t *testing.T) {
	c := newConsumer(t, 10)
	a, d := change(calA, "ev1", `"1"`, messages.ChangeCreated, messages.OriginInitial, "x")
	handle(t, c, a, d)
	handle(t, c, a, d)
	a, d = change(calA, "ev2", `"1"`, messages.ChangeCreated, messages.OriginInitial, "y")
	handle(t, c, a, d)
	a, d = lifecycle(messages.LifecycleInitialSyncComplete, t0, nil)
	handle(t, c, a, d)
	handle(t, c, a, []byte("not json"))
	want := "summary: 5 messages, 3 applied (2 initial import, 1 initial import complete (new-event automations on from here)), 1 duplicates, 1 poison"
	if got := c.Summary(); got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}
