package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"github.com/google/uuid"
	"google.golang.org/api/calendar/v3"

	"github.com/calsync/calsync/shared/messages"
	"github.com/calsync/calsync/shared/pubsubx"
	"github.com/calsync/calsync/shared/store"
	"github.com/calsync/calsync/shared/testing/syncertest"
)

// recorder keeps every message of a subscription of its own, made with a
// Pub/Sub filter. The emulator ignores filters (checked: it delivers every
// message of the topic, on pull and push alike), so the recorder applies
// the same rule itself (keep) and counts what the emulator should not have
// delivered; against Google the filter does the work.
type recorder struct {
	mu      sync.Mutex
	msgs    []*pubsub.Message
	foreign int
}

func record(t *testing.T, ctx context.Context, topic, filter string, keep func(*pubsub.Message) bool) *recorder {
	t.Helper()
	id := "e2e-" + uuid.NewString()[:13]
	if _, err := sys.PubSub.SubscriptionAdminClient.CreateSubscription(ctx, &pubsubpb.Subscription{
		Name: pubsubx.SubscriptionName(sys.ProjectID, id), Topic: pubsubx.TopicName(sys.ProjectID, topic), Filter: filter}); err != nil {
		t.Fatal(err)
	}
	r := &recorder{}
	receive(t, id, func(m *pubsub.Message) {
		r.mu.Lock()
		defer r.mu.Unlock()
		if keep != nil && !keep(m) {
			r.foreign++
			return
		}
		r.msgs = append(r.msgs, m)
	})
	return r
}

// tenantRecorder is a tenant's consumer: attributes.tenant = "NAME".
func tenantRecorder(t *testing.T, ctx context.Context, topic, tn string) *recorder {
	return record(t, ctx, topic, fmt.Sprintf("attributes.%s = %q", messages.AttrTenant, tn),
		func(m *pubsub.Message) bool { return m.Attributes[messages.AttrTenant] == tn })
}

func (r *recorder) all() []*pubsub.Message {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*pubsub.Message(nil), r.msgs...)
}

// waitUntil polls until cond holds of what arrived.
func (r *recorder) waitUntil(t *testing.T, timeout time.Duration, what string, cond func([]*pubsub.Message) bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond(r.all()) {
		if time.Now().After(deadline) {
			var got []string
			for _, m := range r.all() {
				got = append(got, string(m.Data))
			}
			t.Fatalf("%s: not within %s; got %d messages:\n%s", what, timeout, len(got), strings.Join(got, "\n"))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// decode is each message's data as a T (messages.Change, messages.Lifecycle).
func decode[T any](t *testing.T, ms []*pubsub.Message) []T {
	t.Helper()
	out := make([]T, 0, len(ms))
	for _, m := range ms {
		var v T
		if err := json.Unmarshal(m.Data, &v); err != nil {
			t.Fatalf("message %s: %v", m.Data, err)
		}
		out = append(out, v)
	}
	return out
}

func lifecycles(t *testing.T, ms []*pubsub.Message) []messages.Lifecycle {
	return decode[messages.Lifecycle](t, ms)
}

func changes(t *testing.T, ms []*pubsub.Message) []messages.Change {
	return decode[messages.Change](t, ms)
}

// answerTo finds the control answer to requestID.
func answerTo(ls []messages.Lifecycle, requestID string) (messages.Lifecycle, bool) {
	for _, l := range ls {
		if l.Control != nil && l.Control.RequestID == requestID {
			return l, true
		}
	}
	return messages.Lifecycle{}, false
}

// controlCLI runs `calsync control --wait` for a tenant: the requestId it
// printed and the answer it waited for; exit 1 (rejected) is expected when
// want is control.rejected.
func controlCLI(t *testing.T, ctx context.Context, want string, args ...string) (string, messages.Lifecycle) {
	t.Helper()
	code, stdout, stderr := runCLI(t, ctx, "control", append(args, "--wait", "--timeout", "60s")...)
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	var a messages.Lifecycle
	if len(lines) != 2 || json.Unmarshal([]byte(lines[1]), &a) != nil || a.Type != want ||
		(code == 0) != (want == messages.LifecycleControlAccepted) || a.Control == nil || a.Control.RequestID != lines[0] {
		t.Fatalf("calsync control %s: exit %d, want %s\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, want, stdout, stderr)
	}
	return lines[0], a
}

// TestTenantsEndToEnd is issue 23's proof on the multi-process stack: two
// products (tenants acme and globex, each with its own control topic) each
// enroll a Workspace user by publishing control messages (the operator CLI's
// `control`, as a product backend would), ann's calendar being shared with
// bob. Each tenant's consumer (subscriptions filtered on the tenant
// attribute) sees only its own messages, attributed to its own identity;
// the shared calendar is mirrored once per tenant under different keys; the
// first sync's changes are "initial", later ones "incremental"; every
// transition and every control message is answered on the lifecycle topic;
// a control message about another tenant's domain is refused
// (outside_tenant); an enroll issued before an unenroll and delivered after
// it changes nothing (superseded); and every change, lifecycle and control
// message of the run matches its JSON Schema.
func TestTenantsEndToEnd(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	start := time.Now()
	const ann, bob = "ann@acme.test", "bob@globex.test"
	emu := sys.Calendar
	for _, d := range []string{"acme.test", "globex.test"} {
		if err := emu.CreateDomain(d, "admin@"+d); err != nil {
			t.Fatal(err)
		}
	}
	for _, u := range []string{ann, bob} {
		if err := emu.AddDomainUser(u, false); err != nil {
			t.Fatal(err)
		}
	}
	annSvc, bobSvc := asUser(t, ctx, ann), asUser(t, ctx, bob)
	addEvents(t, ctx, annSvc, ann, 3)
	addEvents(t, ctx, bobSvc, bob, 2)
	if err := emu.Share(ann, bob, "reader", true); err != nil { // on bob's list too
		t.Fatal(err)
	}
	annKey := store.Grant{AuthMode: store.AuthDelegation, Subject: ann}.IdentityKey()
	bobKey := store.Grant{AuthMode: store.AuthDelegation, Subject: bob}.IdentityKey()
	annCal := store.CalendarKeyIn("acme", ann)      // acme's mirror of ann's calendar
	sharedCal := store.CalendarKeyIn("globex", ann) // globex's mirror of it, read as bob
	bobCal := store.CalendarKeyIn("globex", bob)
	if annCal == sharedCal {
		t.Fatalf("one key for both tenants' mirrors of ann's calendar: %s", annCal)
	}

	// The consumers: one per tenant on the changes and lifecycle topics, and
	// every message of the control, changes and lifecycle topics for the
	// schema checks.
	feed := map[string]*recorder{}
	life := map[string]*recorder{}
	for _, tn := range []string{"acme", "globex"} {
		feed[tn] = tenantRecorder(t, ctx, sys.ChangesTopic, tn)
		life[tn] = tenantRecorder(t, ctx, sys.LifecycleTopic, tn)
	}
	everyChange := record(t, ctx, sys.ChangesTopic, "", nil)
	everyLifecycle := record(t, ctx, sys.LifecycleTopic, "", nil)
	var everyControl []*recorder
	for _, tc := range sys.Tenants {
		everyControl = append(everyControl, record(t, ctx, tc.ControlTopic, "", nil))
	}

	// 1. Each product enrolls its user on its own control topic.
	acmeEnroll, a := controlCLI(t, ctx, messages.LifecycleControlAccepted, "--tenant", "acme", "--action", "enroll", "--subject", ann, "--external-id", "acme-ann")
	if a.Tenant != "acme" || a.IdentityKey != annKey || a.ExternalID != "acme-ann" {
		t.Fatalf("acme's enroll answered %+v", a)
	}
	globexEnroll, a := controlCLI(t, ctx, messages.LifecycleControlAccepted, "--tenant", "globex", "--action", "enroll", "--subject", bob, "--external-id", "globex-bob")
	if a.Tenant != "globex" || a.IdentityKey != bobKey || a.ExternalID != "globex-bob" {
		t.Fatalf("globex's enroll answered %+v", a)
	}
	// 2. Neither may act outside its domains.
	acmeForBob, a := controlCLI(t, ctx, messages.LifecycleControlRejected, "--tenant", "acme", "--action", "enroll", "--subject", bob)
	if a.Tenant != "acme" || a.Reason != messages.ReasonOutsideTenant {
		t.Fatalf("acme's enroll of bob answered %+v", a)
	}
	globexForAnn, a := controlCLI(t, ctx, messages.LifecycleControlRejected, "--tenant", "globex", "--action", "enroll", "--subject", ann)
	if a.Tenant != "globex" || a.Reason != messages.ReasonOutsideTenant {
		t.Fatalf("globex's enroll of ann answered %+v", a)
	}

	// 3. The first syncs complete: acme's mirror of ann's calendar, globex's
	// of bob's and of ann's (shared with bob).
	initialDone := func(tn string, want map[string]int) {
		t.Helper()
		life[tn].waitUntil(t, 90*time.Second, tn+"'s initial syncs complete", func(ms []*pubsub.Message) bool {
			got := map[string]int{}
			for _, l := range lifecycles(t, ms) {
				if l.Type == messages.LifecycleInitialSyncComplete && l.Events != nil {
					got[l.CalendarKey] = *l.Events
				}
			}
			for k, n := range want {
				if got[k] != n {
					return false
				}
			}
			return true
		})
	}
	initialDone("acme", map[string]int{annCal: 3})
	initialDone("globex", map[string]int{bobCal: 2, sharedCal: 3})
	for key, c := range map[string]struct {
		svc *calendar.Service
		id  string
	}{annCal: {annSvc, ann}, bobCal: {bobSvc, bob}, sharedCal: {bobSvc, ann}} {
		waitConvergedKey(t, ctx, c.svc, c.id, key, 30*time.Second)
	}
	initialAt := time.Since(start)

	// 4. An event created now reaches each tenant once, as its own.
	ev, err := annSvc.Events.Insert(ann, &calendar.Event{Summary: "after enrollment",
		Start: &calendar.EventDateTime{DateTime: "2026-12-20T09:00:00Z"}, End: &calendar.EventDateTime{DateTime: "2026-12-20T10:00:00Z"}}).Context(ctx).Do()
	if err != nil {
		t.Fatal(err)
	}
	for tn, key := range map[string]string{"acme": annCal, "globex": sharedCal} {
		feed[tn].waitUntil(t, 30*time.Second, tn+"'s change of the new event", func(ms []*pubsub.Message) bool {
			for _, c := range changes(t, ms) {
				if c.EventID == ev.Id && c.CalendarKey == key {
					return true
				}
			}
			return false
		})
	}

	waitConvergedKey(t, ctx, annSvc, ann, annCal, 30*time.Second)
	waitConvergedKey(t, ctx, bobSvc, ann, sharedCal, 30*time.Second)

	// 5. An enroll of ann issued before acme's unenroll of her, delivered
	// after it, changes nothing.
	late := messages.Control{Version: messages.ControlVersion, Action: messages.ActionEnroll, RequestID: uuid.NewString(),
		IssuedAt: time.Now().Add(-time.Minute).UTC(), Subject: ann, ExternalID: "acme-ann"}
	unenroll, a := controlCLI(t, ctx, messages.LifecycleControlAccepted, "--tenant", "acme", "--action", "unenroll", "--subject", ann)
	if a.IdentityKey != annKey || a.ExternalID != "acme-ann" {
		t.Fatalf("acme's unenroll answered %+v", a)
	}
	topic, err := sys.ControlTopicOf("acme")
	if err != nil {
		t.Fatal(err)
	}
	data, err := json.Marshal(late)
	if err != nil {
		t.Fatal(err)
	}
	pub := pubsubx.NewPublisher(sys.PubSub, topic, false)
	defer pub.Stop()
	if err := pub.Publish(ctx, data, late.Attributes(), ""); err != nil {
		t.Fatal(err)
	}
	life["acme"].waitUntil(t, 30*time.Second, "the late enroll's answer", func(ms []*pubsub.Message) bool {
		_, ok := answerTo(lifecycles(t, ms), late.RequestID)
		return ok
	})
	if a, _ := answerTo(lifecycles(t, life["acme"].all()), late.RequestID); a.Type != messages.LifecycleControlRejected || a.Reason != messages.ReasonSuperseded {
		t.Fatalf("the late enroll answered %+v, want control.rejected superseded", a)
	}
	st := store.New(firestoreClient(t))
	waitQuiet(t, 2*time.Second, time.Minute)
	if id, err := st.GetIdentity(ctx, annKey); err != nil || id.Status != store.StatusUnenrolled {
		t.Fatalf("ann after the late enroll: %+v %v, want unenrolled", id, err)
	}
	if c, err := st.GetCalendar(ctx, annCal); err != nil || c.Status == store.StatusActive {
		t.Fatalf("acme's mirror of ann's calendar after the unenroll: %+v %v", c, err)
	}
	if c, err := st.GetCalendar(ctx, sharedCal); err != nil || c.Status != store.StatusActive {
		t.Fatalf("globex's mirror of ann's calendar followed acme's unenroll: %+v %v", c, err)
	}
	time.Sleep(2 * time.Second) // stragglers of at-least-once delivery

	// Each tenant's change feed: its own calendars only, attributed to its
	// own identity, body and attributes alike; the seeded events "initial",
	// the new one "incremental", each once (deduplicated on calendarKey,
	// eventId, etag, as the README tells consumers).
	type want struct{ identity, externalID string }
	owners := map[string]map[string]want{
		"acme":   {annCal: {annKey, "acme-ann"}},
		"globex": {sharedCal: {bobKey, "globex-bob"}, bobCal: {bobKey, "globex-bob"}},
	}
	for tn, cals := range owners {
		seen := map[string]messages.Change{}
		origins := map[string]map[string]int{} // calendarKey → origin → changes
		ms := feed[tn].all()
		for i, c := range changes(t, ms) {
			m := ms[i]
			w, ok := cals[c.CalendarKey]
			if !ok {
				t.Errorf("%s's feed has a change of calendar %s (%s), not one of its own", tn, c.CalendarKey, c.CalendarID)
				continue
			}
			if c.Tenant != tn || c.IdentityKey != w.identity || c.ExternalID != w.externalID ||
				m.Attributes[messages.AttrIdentityKey] != w.identity || m.Attributes[messages.AttrExternalID] != w.externalID ||
				m.Attributes[messages.AttrOrigin] != c.Origin {
				t.Errorf("%s's change %s of %s attributed %+v, attributes %v; want %s/%s", tn, c.EventID, c.CalendarKey, c.Attribution, m.Attributes, w.identity, w.externalID)
			}
			k := c.CalendarKey + "/" + c.EventID + "/" + c.Etag
			if _, dup := seen[k]; dup {
				continue
			}
			seen[k] = c
			if origins[c.CalendarKey] == nil {
				origins[c.CalendarKey] = map[string]int{}
			}
			origins[c.CalendarKey][c.Origin+" "+c.Change]++
			if c.EventID == ev.Id && c.Origin != messages.OriginIncremental {
				t.Errorf("%s: the event created after enrollment came %q, want incremental", tn, c.Origin)
			}
		}
		wantOrigins := map[string]map[string]int{
			annCal: {"initial created": 3, "incremental created": 1}, sharedCal: {"initial created": 3, "incremental created": 1},
			bobCal: {"initial created": 2}}
		for key := range cals {
			if fmt.Sprint(origins[key]) != fmt.Sprint(wantOrigins[key]) {
				t.Errorf("%s's feed of %s: %v, want %v", tn, key, origins[key], wantOrigins[key])
			}
		}
	}

	// Each tenant's lifecycle: one message per transition (deduplicated as
	// the README says), each control message answered.
	type lcWant struct {
		typ, calendarKey string
		events           int
	}
	count := func(tn string) map[lcWant]int {
		got := map[lcWant]int{}
		dedup := map[string]bool{}
		for _, l := range lifecycles(t, life[tn].all()) {
			k := fmt.Sprint(l.Type, l.IdentityKey, l.CalendarKey, l.OccurredAt.UnixNano())
			if l.Control != nil {
				k = l.Type + l.Control.RequestID
			}
			if dedup[k] {
				continue
			}
			dedup[k] = true
			w := lcWant{typ: l.Type, calendarKey: l.CalendarKey}
			if l.Events != nil {
				w.events = *l.Events
			}
			if l.Tenant != tn {
				t.Errorf("%s's lifecycle feed: %+v", tn, l)
			}
			if l.Control == nil && l.IdentityKey != "" && l.IdentityKey != map[string]string{"acme": annKey, "globex": bobKey}[tn] {
				t.Errorf("%s's lifecycle feed names another identity: %+v", tn, l)
			}
			got[w]++
		}
		return got
	}
	for tn, w := range map[string]map[lcWant]int{
		"acme": {{typ: messages.LifecycleIdentityEnrolled}: 1, {typ: messages.LifecycleCalendarAdded, calendarKey: annCal}: 1,
			{typ: messages.LifecycleInitialSyncComplete, calendarKey: annCal, events: 3}: 1,
			{typ: messages.LifecycleIdentityUnenrolled}:                                  1, {typ: messages.LifecycleCalendarRemoved, calendarKey: annCal}: 1,
			{typ: messages.LifecycleControlAccepted}: 2, {typ: messages.LifecycleControlRejected}: 2},
		"globex": {{typ: messages.LifecycleIdentityEnrolled}: 1, {typ: messages.LifecycleCalendarAdded, calendarKey: bobCal}: 1,
			{typ: messages.LifecycleCalendarAdded, calendarKey: sharedCal}:                  1,
			{typ: messages.LifecycleInitialSyncComplete, calendarKey: bobCal, events: 2}:    1,
			{typ: messages.LifecycleInitialSyncComplete, calendarKey: sharedCal, events: 3}: 1,
			{typ: messages.LifecycleControlAccepted}:                                        1, {typ: messages.LifecycleControlRejected}: 1},
	} {
		if got := count(tn); fmt.Sprint(got) != fmt.Sprint(w) {
			t.Errorf("%s's lifecycle feed:\n got  %v\n want %v", tn, got, w)
		}
	}
	for tn, reqs := range map[string]map[string]string{
		"acme":   {acmeEnroll: "control.accepted", unenroll: "control.accepted", acmeForBob: "control.rejected outside_tenant", late.RequestID: "control.rejected superseded"},
		"globex": {globexEnroll: "control.accepted", globexForAnn: "control.rejected outside_tenant"},
	} {
		ls := lifecycles(t, life[tn].all())
		for id, w := range reqs {
			a, _ := answerTo(ls, id)
			if got := strings.TrimSpace(a.Type + " " + a.Reason); got != w {
				t.Errorf("%s's request %s answered %q, want %q", tn, id, got, w)
			}
		}
	}

	// Every message of the run matches its schema, and a change's or
	// lifecycle message's tenant attribute is its body's (what the
	// consumers' filters rely on).
	var n [3]int
	for _, m := range everyChange.all() {
		n[0]++
		var c messages.Change
		if err := syncertest.ValidateChange(m.Data); err != nil {
			t.Error(err)
		} else if json.Unmarshal(m.Data, &c) != nil || m.Attributes[messages.AttrTenant] != c.Tenant {
			t.Errorf("change attributes %v, body %s", m.Attributes, m.Data)
		}
	}
	for _, m := range everyLifecycle.all() {
		n[1]++
		var l messages.Lifecycle
		if err := syncertest.ValidateLifecycle(m.Data); err != nil {
			t.Error(err)
		} else if json.Unmarshal(m.Data, &l) != nil || m.Attributes[messages.AttrTenant] != l.Tenant {
			t.Errorf("lifecycle attributes %v, body %s", m.Attributes, m.Data)
		}
	}
	for _, r := range everyControl {
		for _, m := range r.all() {
			n[2]++
			if err := syncertest.ValidateControl(m.Data); err != nil {
				t.Error(err)
			}
		}
	}
	if n[2] != 6 {
		t.Errorf("%d control messages on the control topics, want 6", n[2])
	}
	t.Logf("initial syncs complete %s after start; %s in all; schemas checked: %d change, %d lifecycle, %d control messages; "+
		"filtered out by the test (the emulator ignores filters): acme %d+%d, globex %d+%d",
		initialAt.Round(time.Millisecond), time.Since(start).Round(time.Millisecond), n[0], n[1], n[2],
		feed["acme"].foreign, life["acme"].foreign, feed["globex"].foreign, life["globex"].foreign)
}
