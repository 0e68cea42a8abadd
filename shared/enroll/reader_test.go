package enroll_test

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"google.golang.org/api/calendar/v3"

	"github.com/calsync/calsync/shared/enroll"
	"github.com/calsync/calsync/shared/lifecycle"
	"github.com/calsync/calsync/shared/messages"
	"github.com/calsync/calsync/shared/pubsubx"
	"github.com/calsync/calsync/shared/store"
	"github.com/calsync/calsync/shared/syncer"
)

// feed records the change messages a syncer publishes.
type feed struct {
	mu      sync.Mutex
	changes []change
}

type change struct {
	EventID string         `json:"eventId"`
	Change  string         `json:"change"`
	Event   map[string]any `json:"event"`
}

func (f *feed) PublishAll(_ context.Context, _ string, msgs []pubsubx.Message) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, m := range msgs {
		var c change
		if err := json.Unmarshal(m.Data, &c); err != nil {
			return err
		}
		f.changes = append(f.changes, c)
	}
	return nil
}

// of returns the changes announced for an event, in order.
func (f *feed) of(id string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, c := range f.changes {
		if c.EventID == id {
			out = append(out, c.Change)
		}
	}
	return out
}

// syncAll runs the sync requests the enroller published, with a real
// syncer on the same store and Calendar clients, then forgets them.
func (v *env) syncAll(s *syncer.Syncer) {
	v.t.Helper()
	v.req.mu.Lock()
	msgs := v.req.msgs
	v.req.msgs = nil
	v.req.mu.Unlock()
	for _, n := range msgs {
		if n.Resource == messages.ResourceCalendarList || n.CalendarKey == "" {
			continue
		}
		if err := s.HandleNotification(v.ctx, n); err != nil {
			v.t.Fatalf("sync of %s (%s): %v", n.CalendarKey, n.ResourceState, err)
		}
	}
}

// mirrored returns the mirror's events of a calendar by id (summary).
func (v *env) mirrored(key string) map[string]string {
	v.t.Helper()
	docs, err := v.st.Events(key).Documents(v.ctx).GetAll()
	if err != nil {
		v.t.Fatal(err)
	}
	out := map[string]string{}
	for _, d := range docs {
		s, _ := d.Data()["summary"].(string)
		out[d.Ref.ID] = s
	}
	return out
}

// partnerTeam is a calendar of an outside partner, shared with Workspace
// users of corp.test by role (each added to their list), with one event per
// visibility given ("" public, "private"), by id in that order.
func (v *env) partnerTeam(roles map[string]string, visibilities ...string) (string, []string) {
	v.t.Helper()
	if err := v.emu.CreateDomain("corp.test", "admin@corp.test"); err != nil {
		v.t.Fatal(err)
	}
	partner := v.asUser("partner@other.test")
	team, err := partner.Calendars.Insert(&calendar.Calendar{Summary: "team"}).Do()
	if err != nil {
		v.t.Fatal(err)
	}
	at := time.Now().Add(time.Hour).Truncate(time.Second)
	var ids []string
	for i, vis := range visibilities {
		start := at.Add(time.Duration(i) * 2 * time.Hour)
		e, err := partner.Events.Insert(team.Id, &calendar.Event{Summary: "event " + vis, Visibility: vis,
			Start: &calendar.EventDateTime{DateTime: start.Format(time.RFC3339)}, End: &calendar.EventDateTime{DateTime: start.Add(time.Hour).Format(time.RFC3339)}}).Do()
		if err != nil {
			v.t.Fatal(err)
		}
		ids = append(ids, e.Id)
	}
	for user, role := range roles {
		if err := v.emu.AddDomainUser(user, false); err != nil {
			v.t.Fatal(err)
		}
		if err := v.emu.Share(team.Id, user, role, true); err != nil {
			v.t.Fatal(err)
		}
	}
	return team.Id, ids
}

// newSyncer is a SyncWorker's engine on the env's store and Calendar
// clients, announcing to f.
func (v *env) newSyncer(f *feed) *syncer.Syncer {
	return syncer.New(syncer.Options{Store: v.st, Services: syncer.ServicesFunc(v.e.Calendars.Service), Publisher: f,
		Lifecycle: v.e.Lifecycle, Logger: v.e.Logger, FollowUpDelay: -1})
}

// The best reader (issue 22, item 5). A calendar two identities share is
// read with the one of most access whichever enrolled first, and the choice
// is remade when it loses access: the next takes over with a full resync,
// and the mirror is what the new reader sees (a private event it sees only
// as a busy block is deleted). A calendar seen as free/busy only is never
// presented as a complete mirror.
func TestBestReaderOfASharedCalendar(t *testing.T) {
	v := newEnv(t)
	teamID, ids := v.partnerTeam(map[string]string{"rita@corp.test": "reader", "olga@corp.test": "owner", "fred@corp.test": "freeBusyReader"},
		"", "private")
	standup, doctor := &calendar.Event{Id: ids[0]}, &calendar.Event{Id: ids[1]}
	f := &feed{}
	s := v.newSyncer(f)
	key := store.CalendarKey(teamID)
	only := messages.Filters{Include: []string{teamID}}
	spec := func(user string, f messages.Filters) enroll.IdentitySpec {
		return enroll.IdentitySpec{AuthMode: store.AuthDelegation, Subject: user, Filters: f}
	}
	rita, olga, fred := spec("rita@corp.test", only), spec("olga@corp.test", only),
		spec("fred@corp.test", messages.Filters{Include: only.Include, MinAccessRole: "freeBusyReader"})

	// The reader enrolls first: read as the reader, the private event not
	// mirrored (a busy block is not an event).
	if _, err := v.e.EnrollIdentity(v.ctx, rita); err != nil {
		t.Fatal(err)
	}
	v.syncAll(s)
	if c := v.calendars()[teamID]; c.EnrolledBy != rita.Key() || c.AccessRole != "reader" || c.Status != store.StatusActive {
		t.Fatalf("after the reader enrolled: %+v", c)
	}
	if m := v.mirrored(key); m[standup.Id] != "event " || len(m) != 1 {
		t.Fatalf("mirror as the reader: %v", m)
	}
	// The owner enrolls second: the calendar is handed over to the owner,
	// fully resynced, and the private event mirrored with its details.
	res, err := v.e.EnrollIdentity(v.ctx, olga)
	if err != nil {
		t.Fatal(err)
	}
	c := v.calendars()[teamID]
	if c.EnrolledBy != olga.Key() || c.AccessRole != "owner" || c.Subject != "olga@corp.test" || len(c.Readers) != 2 || c.SyncToken != "" {
		t.Fatalf("after the owner enrolled (%+v): %+v", res, c)
	}
	if v.liveChannels()[teamID] != 1 {
		t.Fatalf("live channels after the hand-over: %d", v.liveChannels()[teamID])
	}
	v.syncAll(s)
	if m := v.mirrored(key); m[doctor.Id] != "event private" || m[standup.Id] != "event " {
		t.Fatalf("mirror as the owner: %v", m)
	}
	if got := f.of(doctor.Id); len(got) != 1 || got[0] != "created" {
		t.Fatalf("the private event's changes as the owner: %v", got)
	}
	if id, _ := v.st.GetIdentity(v.ctx, olga.Key()); id.Calendars != 1 {
		t.Fatalf("the owner's count: %d", id.Calendars)
	}
	if id, _ := v.st.GetIdentity(v.ctx, rita.Key()); id.Calendars != 0 {
		t.Fatalf("the reader's count: %d", id.Calendars)
	}

	// The owner loses access: its next listing hands the calendar back to
	// the reader, with a full resync (not the owner's token), and the
	// private event leaves the mirror, announced deleted.
	if err := v.emu.Share(teamID, "olga@corp.test", "", false); err != nil {
		t.Fatal(err)
	}
	if _, err := v.e.Discover(v.ctx, olga.Key()); err != nil {
		t.Fatal(err)
	}
	c = v.calendars()[teamID]
	if c.EnrolledBy != rita.Key() || c.AccessRole != "reader" || c.SyncToken != "" || c.Status != store.StatusActive || len(c.Readers) != 1 {
		t.Fatalf("after the owner lost access: %+v", c)
	}
	v.syncAll(s)
	if m := v.mirrored(key); len(m) != 1 || m[standup.Id] != "event " {
		t.Fatalf("mirror as the reader again: %v", m)
	}
	if got := f.of(doctor.Id); len(got) != 2 || got[1] != "deleted" {
		t.Fatalf("the private event's changes: %v", got)
	}
	if c := v.calendars()[teamID]; c.SyncToken == "" || c.Subject != "rita@corp.test" {
		t.Fatalf("the reader's full resync did not complete: %+v", c)
	}

	// Free/busy only: fred's listing has it (his filters take free/busy);
	// once the reader loses access too, fred is all that is left, and the
	// calendar is not synced, nor watched, and says why.
	if _, err := v.e.EnrollIdentity(v.ctx, fred); err != nil {
		t.Fatal(err)
	}
	if err := v.emu.Share(teamID, "rita@corp.test", "", false); err != nil {
		t.Fatal(err)
	}
	if _, err := v.e.Discover(v.ctx, rita.Key()); err != nil {
		t.Fatal(err)
	}
	c = v.calendars()[teamID]
	if c.Status != store.StatusFreeBusyOnly || c.AccessRole != "freeBusyReader" || c.EnrolledBy != fred.Key() || c.StatusReason == "" {
		t.Fatalf("free/busy only: %+v", c)
	}
	if n := v.liveChannels()[teamID]; n != 0 {
		t.Fatalf("a free/busy-only calendar is watched: %d channels", n)
	}
	before := len(f.changes)
	if err := s.HandleNotification(v.ctx, messages.Notification{CalendarKey: key, ResourceState: messages.StateFullResync,
		ReceivedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if len(f.changes) != before {
		t.Fatalf("a free/busy-only calendar was synced: %v", f.changes[before:])
	}
}

// A calendar read with a grant that sees free/busy only (an operator's
// registration, a role narrowed between listings) is never mirrored as if
// complete: its sync stops with status free_busy_only, nothing written.
func TestFreeBusyOnlySyncIsRefused(t *testing.T) {
	v := newEnv(t)
	teamID, _ := v.partnerTeam(map[string]string{"fred@corp.test": "freeBusyReader"}, "")
	key, err := lifecycle.Register(v.ctx, v.st, store.Calendar{CalendarID: teamID, AuthMode: store.AuthDelegation, Subject: "fred@corp.test"})
	if err != nil {
		t.Fatal(err)
	}
	f := &feed{}
	s := v.newSyncer(f)
	if err := s.HandleNotification(v.ctx, messages.Notification{CalendarKey: key, ResourceState: messages.StateFullResync,
		ReceivedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	c, err := v.st.GetCalendar(v.ctx, key)
	if err != nil || c.Status != store.StatusFreeBusyOnly || c.SyncToken != "" || c.LeaseOwner != "" {
		t.Fatalf("calendar: %+v %v", c, err)
	}
	if m := v.mirrored(key); len(m) != 0 || len(f.changes) != 0 {
		t.Fatalf("busy blocks mirrored: %v, announced %v", m, f.changes)
	}
	if v.logs.Count("WARNING", "free_busy_only") != 1 {
		t.Fatalf("no free_busy_only line:\n%s", v.logs.String())
	}
}

// sharedTeam is a calendar of an outside partner with a public and a
// private event, shared with olga (owner) and rita (reader), both
// enrolled and the calendar synced as olga.
type sharedTeam struct {
	key, id, private string
	olga, rita       enroll.IdentitySpec
	s                *syncer.Syncer
	f                *feed
}

func (v *env) sharedTeam() sharedTeam {
	v.t.Helper()
	id, ids := v.partnerTeam(map[string]string{"olga@corp.test": "owner", "rita@corp.test": "reader"}, "", "private")
	st := sharedTeam{key: store.CalendarKey(id), id: id, private: ids[1], f: &feed{}}
	only := messages.Filters{Include: []string{id}}
	st.olga = enroll.IdentitySpec{AuthMode: store.AuthDelegation, Subject: "olga@corp.test", Filters: only}
	st.rita = enroll.IdentitySpec{AuthMode: store.AuthDelegation, Subject: "rita@corp.test", Filters: only}
	for _, sp := range []enroll.IdentitySpec{st.olga, st.rita} {
		if _, err := v.e.EnrollIdentity(v.ctx, sp); err != nil {
			v.t.Fatal(err)
		}
	}
	st.s = v.newSyncer(st.f)
	v.syncAll(st.s)
	if c := v.calendars()[id]; c.EnrolledBy != st.olga.Key() || len(v.mirrored(st.key)) != 2 {
		v.t.Fatalf("set up: read by %s, mirror %v", c.EnrolledBy, v.mirrored(st.key))
	}
	return st
}

// syncUntilDone delivers one push until the syncer acknowledges it (Pub/Sub
// redelivers what it refuses), at most 5 times.
func (v *env) syncUntilDone(s *syncer.Syncer, key string) int {
	v.t.Helper()
	for i := 1; i <= 5; i++ {
		err := s.HandleNotification(v.ctx, messages.Notification{CalendarKey: key, ResourceState: messages.StateExists,
			ChannelID: "ch-test", MessageNumber: 10, ReceivedAt: time.Now()})
		if err == nil {
			return i
		}
	}
	v.t.Fatal("push never acknowledged")
	return 0
}

// The calendar's reader loses it between listings: its sync's 404 (or 403)
// hands the calendar to the next best reader at once (no 404 streak to wait
// out), and the redelivered push syncs as that reader, from scratch: the
// private event it cannot see is deleted.
func TestReaderLostMidSyncHandsOver(t *testing.T) {
	v := newEnv(t)
	team := v.sharedTeam()
	if err := v.emu.Share(team.id, "olga@corp.test", "", false); err != nil {
		t.Fatal(err)
	}
	if n := v.syncUntilDone(team.s, team.key); n != 2 {
		t.Fatalf("acknowledged after %d deliveries, want 2 (the 404's, then the new reader's sync)", n)
	}
	c := v.calendars()[team.id]
	if c.EnrolledBy != team.rita.Key() || c.Status != store.StatusActive || c.NotFoundCount != 0 || c.SyncToken == "" {
		t.Fatalf("after the 404: %+v", c)
	}
	if got := team.f.of(team.private); len(got) != 2 || got[1] != "deleted" {
		t.Fatalf("the private event's changes: %v", got)
	}
	if v.logs.Count("INFO", "reader_changed") != 1 {
		t.Fatalf("reader_changed lines: %d", v.logs.Count("INFO", "reader_changed"))
	}
}

// The reader's grant dies (a suspended Workspace user): the calendar goes
// to the next best reader rather than auth_revoked.
func TestDeadGrantHandsOver(t *testing.T) {
	v := newEnv(t)
	team := v.sharedTeam()
	v.emu.SuspendAccount("olga@corp.test")
	v.syncUntilDone(team.s, team.key)
	c := v.calendars()[team.id]
	if c.EnrolledBy != team.rita.Key() || c.Status != store.StatusActive {
		t.Fatalf("after the grant died: %+v", c)
	}
	if id, _ := v.st.GetIdentity(v.ctx, team.olga.Key()); id.Status != store.StatusAuthRevoked {
		t.Fatalf("the dead grant's identity: %+v", id)
	}
	if got := team.f.of(team.private); len(got) != 2 || got[1] != "deleted" {
		t.Fatalf("the private event's changes: %v", got)
	}
}
