package enroll_test

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"testing"

	"golang.org/x/oauth2"
	"google.golang.org/api/calendar/v3"
	"google.golang.org/api/option"

	"github.com/calsync/calsync/shared/enroll"
	"github.com/calsync/calsync/shared/logging"
	"github.com/calsync/calsync/shared/messages"
	"github.com/calsync/calsync/shared/store"
	"github.com/calsync/calsync/shared/testing/calendaremu"
)

// asUser is the official client acting as a user of the emulator.
func (v *env) asUser(email string) *calendar.Service {
	v.t.Helper()
	tok := v.emu.IssueToken(email)
	svc, err := calendaremu.NewService(v.ctx, v.base, option.WithTokenSource(oauth2.StaticTokenSource(&oauth2.Token{AccessToken: tok.AccessToken})))
	if err != nil {
		v.t.Fatal(err)
	}
	return svc
}

// A delegated identity: its list is read, the calendars the filters keep
// are registered, watched and given a first full sync, the list is watched;
// a calendar that leaves the list is unenrolled (its mirror kept), one that
// joins it is enrolled, both when the list's push comes.
func TestEnrollIdentityFollowsItsList(t *testing.T) {
	v := newEnv(t)
	if err := v.emu.CreateDomain("corp.test", "admin@corp.test"); err != nil {
		t.Fatal(err)
	}
	if err := v.emu.AddDomainUser("ann@corp.test", false); err != nil {
		t.Fatal(err)
	}
	ann := v.asUser("ann@corp.test")
	team, err := ann.Calendars.Insert(&calendar.Calendar{Summary: "team"}).Do()
	if err != nil {
		t.Fatal(err)
	}
	partner := v.asUser("partner@other.test")
	shared, _ := partner.Calendars.Insert(&calendar.Calendar{Summary: "shared"}).Do()
	fb, _ := partner.Calendars.Insert(&calendar.Calendar{Summary: "free/busy only"}).Do()
	skipped, _ := partner.Calendars.Insert(&calendar.Calendar{Summary: "excluded"}).Do()
	_ = v.emu.Share(shared.Id, "ann@corp.test", "reader", true)
	_ = v.emu.Share(fb.Id, "ann@corp.test", "freeBusyReader", true)
	_ = v.emu.Share(skipped.Id, "ann@corp.test", "writer", true)

	sp := enroll.IdentitySpec{AuthMode: store.AuthDelegation, Subject: "ann@corp.test",
		Filters: messages.Filters{Exclude: []string{skipped.Id}}}
	res, err := v.e.EnrollIdentity(v.ctx, sp)
	if err != nil {
		t.Fatal(err)
	}
	key := sp.Key()
	if res.Listed != 4 || res.Kept != 3 || res.Enrolled != 3 || res.Calendars != 3 || res.Failed != 0 {
		t.Fatalf("enroll: %+v", res)
	}
	cals := v.calendars()
	for _, id := range []string{"ann@corp.test", team.Id, shared.Id} {
		c, ok := cals[id]
		if !ok || c.Status != store.StatusActive || c.EnrolledBy != key || c.Subject != "ann@corp.test" || c.AuthMode != store.AuthDelegation {
			t.Fatalf("%s: %+v", id, c)
		}
		if v.liveChannels()[id] != 1 {
			t.Fatalf("%s: %d live channels", id, v.liveChannels()[id])
		}
		if st := v.req.states()[store.CalendarKey(id)]; !slices.Equal(st, []string{messages.StateFullResync}) {
			t.Fatalf("%s: requests %v, want one full_resync", id, st)
		}
	}
	for _, id := range []string{fb.Id, skipped.Id} {
		if _, ok := cals[id]; ok {
			t.Fatalf("%s enrolled against the filters", id)
		}
	}
	listID := v.listChannelID(key)
	if listID == "" || v.liveChannels()["users/ann@corp.test/calendarList"] != 1 {
		t.Fatalf("list channel %q, live %v", listID, v.liveChannels())
	}
	// The same enrollment again changes nothing (idempotent, no new channel).
	v.req.reset()
	if res, err := v.e.EnrollIdentity(v.ctx, sp); err != nil || res.Enrolled != 0 || res.Calendars != 3 {
		t.Fatalf("again: %+v %v", res, err)
	}
	if len(v.req.states()) != 0 || v.listChannelID(key) != listID {
		t.Fatalf("enrolling again asked %v / made a new list channel", v.req.states())
	}

	// team leaves ann's list: unenrolled at the list's push, mirror kept.
	pushes := v.hook.count(listID, "exists")
	if err := ann.CalendarList.Delete(team.Id).Do(); err != nil {
		t.Fatal(err)
	}
	v.listPush(key, listID, pushes)
	c := v.calendars()[team.Id]
	if c.Status != store.StatusUnwatched || v.liveChannels()[team.Id] != 0 {
		t.Fatalf("team after leaving the list: %+v, live %d", c, v.liveChannels()[team.Id])
	}
	if st := v.req.states()[store.CalendarKey(team.Id)]; len(st) != 0 {
		t.Fatalf("a kept mirror was asked %v", st)
	}
	// A calendar shared later joins the list: enrolled at the push.
	late, _ := partner.Calendars.Insert(&calendar.Calendar{Summary: "later"}).Do()
	pushes = v.hook.count(listID, "exists")
	_ = v.emu.Share(late.Id, "ann@corp.test", "reader", true)
	v.listPush(key, listID, pushes)
	if c := v.calendars()[late.Id]; c.Status != store.StatusActive || v.liveChannels()[late.Id] != 1 {
		t.Fatalf("calendar shared later: %+v", c)
	}
	// A push received before the last listing began is covered: no call.
	lists := v.emu.Stats().Requests["calendarList.list"]
	old := messages.Notification{Resource: messages.ResourceCalendarList, IdentityKey: key, ResourceState: messages.StateExists}
	id, _ := v.st.GetIdentity(v.ctx, key)
	old.ReceivedAt = id.ListedAt.Add(-1)
	if err := v.e.HandleListNotification(v.ctx, old); err != nil || v.emu.Stats().Requests["calendarList.list"] != lists {
		t.Fatalf("covered push: %v, %d lists", err, v.emu.Stats().Requests["calendarList.list"]-lists)
	}
	if n := len(v.logLines("discovery")); n < 4 {
		t.Fatalf("%d discovery lines", n)
	}
}

// Unenrolling stops the list channel and every calendar's, and with
// deleteMirror asks for each mirror's purge (done by the SyncWorker).
func TestUnenrollIdentity(t *testing.T) {
	v := newEnv(t)
	if err := v.emu.CreateDomain("x.test", "bob@x.test"); err != nil { // Google delegates within Workspace domains only
		t.Fatal(err)
	}
	bob := v.asUser("bob@x.test")
	extra, _ := bob.Calendars.Insert(&calendar.Calendar{Summary: "extra"}).Do()
	sp := enroll.IdentitySpec{AuthMode: store.AuthDelegation, Subject: "bob@x.test", DeleteMirrorOnRemove: true}
	if _, err := v.e.EnrollIdentity(v.ctx, sp); err != nil {
		t.Fatal(err)
	}
	key := sp.Key()
	// With deleteMirrorOnRemove, a calendar leaving the list is purged.
	v.req.reset()
	listID := v.listChannelID(key)
	pushes := v.hook.count(listID, "exists")
	if err := bob.CalendarList.Delete(extra.Id).Do(); err != nil {
		t.Fatal(err)
	}
	v.listPush(key, listID, pushes)
	if st := v.req.states()[store.CalendarKey(extra.Id)]; !slices.Equal(st, []string{messages.StatePurge}) {
		t.Fatalf("left the list with deleteMirrorOnRemove: %v", st)
	}
	v.req.reset()
	res, err := v.e.UnenrollIdentity(v.ctx, key, true, "test")
	if err != nil || res.Unenrolled != 1 || res.Purged != 2 {
		t.Fatalf("unenroll: %+v %v", res, err)
	}
	for _, c := range v.calendars() {
		if c.Status == store.StatusActive {
			t.Fatalf("%s still active", c.CalendarID)
		}
	}
	if live := v.liveChannels(); len(live) != 0 {
		t.Fatalf("live channels after unenroll: %v", live)
	}
	if id, _ := v.st.GetIdentity(v.ctx, key); id.Status != store.StatusUnenrolled {
		t.Fatalf("identity %+v", id)
	}
	// A list push after that (Google may still deliver) only closes channels.
	if err := v.e.HandleListNotification(v.ctx, messages.Notification{Resource: messages.ResourceCalendarList, IdentityKey: key,
		ResourceState: messages.StateExists}); err != nil {
		t.Fatal(err)
	}
	if _, err := v.e.UnenrollIdentity(v.ctx, store.Grant{AuthMode: store.AuthDelegation, Subject: "nobody@x.test"}.IdentityKey(), false, "t"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("unenroll of an unknown identity: %v", err)
	}
}

// An identity whose grant does not work is refused before anything is
// written; one whose grant dies later becomes auth_revoked at its next look.
func TestEnrollRefusedAndRevoked(t *testing.T) {
	v := newEnv(t)
	if err := v.emu.CreateDomain("corp.test", "admin@corp.test"); err != nil {
		t.Fatal(err)
	}
	_ = v.emu.AddDomainUser("sus@corp.test", false)
	_ = v.emu.AddDomainUser("cat@corp.test", false)
	_ = v.emu.SuspendUser("sus@corp.test", true)
	sp := enroll.IdentitySpec{AuthMode: store.AuthDelegation, Subject: "sus@corp.test"}
	if _, err := v.e.EnrollIdentity(v.ctx, sp); !errors.Is(err, enroll.ErrNotAuthorized) {
		t.Fatalf("suspended subject: %v", err)
	}
	if _, err := v.st.GetIdentity(v.ctx, sp.Key()); !errors.Is(err, store.ErrNotFound) || len(v.calendars()) != 0 {
		t.Fatalf("a refused enrollment wrote something: %v", err)
	}
	cat := enroll.IdentitySpec{AuthMode: store.AuthDelegation, Subject: "cat@corp.test"}
	if _, err := v.e.EnrollIdentity(v.ctx, cat); err != nil {
		t.Fatal(err)
	}
	// Delegation withdrawn (unauthorized_client; this config has no grace
	// period): the next look marks the identity and its calendar.
	_ = v.emu.SetDelegation("corp.test", "someone-else@p.iam.gserviceaccount.com")
	v.e.Calendars.(interface{ Forget(store.Grant) }).Forget(store.Grant{AuthMode: store.AuthDelegation, Subject: "cat@corp.test"})
	if _, err := v.e.Discover(context.Background(), cat.Key()); err != nil {
		t.Fatal(err)
	}
	id, _ := v.st.GetIdentity(v.ctx, cat.Key())
	if id.Status != store.StatusDelegationUnauthorized || v.calendars()["cat@corp.test"].Status != store.StatusDelegationUnauthorized {
		t.Fatalf("after delegation withdrawn: identity %s, calendar %s", id.Status, v.calendars()["cat@corp.test"].Status)
	}
	// One refused grant, one ERROR line (the identity and its calendar together).
	if n, errs := v.logs.Count("ERROR", logging.EventDelegationUnauthorized), v.logs.CountSeverity("ERROR"); n != 1 || errs != 1 {
		t.Fatalf("%d delegation_unauthorized of %d ERROR lines:\n%s", n, errs, v.logs.String())
	}
}

// A 404 on the watch of a calendar just enrolled is not proof that it is
// gone (Google answers some while a share propagates): it is counted in the
// calendar's 404 streak, the calendar stays active and gets its first sync,
// as RenewChannels and the SyncWorker treat the same answer.
func TestEnrollWatch404FollowsTheStreak(t *testing.T) {
	v := newEnv(t)
	if err := v.emu.CreateDomain("corp.test", "admin@corp.test"); err != nil {
		t.Fatal(err)
	}
	if err := v.emu.AddDomainUser("dan@corp.test", false); err != nil {
		t.Fatal(err)
	}
	v.emu.AddFault(calendaremu.Fault{Method: "events.watch", Count: 1, Code: 404, Reason: "notFound", Calendar: "dan@corp.test"})
	sp := enroll.IdentitySpec{AuthMode: store.AuthDelegation, Subject: "dan@corp.test"}
	res, err := v.e.EnrollIdentity(v.ctx, sp)
	if err != nil {
		t.Fatal(err)
	}
	if res.Enrolled != 1 || res.Failed != 1 {
		t.Fatalf("enroll: %+v", res)
	}
	c := v.calendars()["dan@corp.test"]
	if c.Status != store.StatusActive || c.NotFoundCount != 1 {
		t.Fatalf("after one 404 on its watch: status %s, streak %d", c.Status, c.NotFoundCount)
	}
	if st := v.req.states()[store.CalendarKey("dan@corp.test")]; !slices.Equal(st, []string{messages.StateFullResync}) {
		t.Fatalf("requests %v, want its first full sync", st)
	}
	if n := v.logs.Count("WARNING", logging.EventNotFoundOnce); n != 1 {
		t.Fatalf("%d not_found_once lines:\n%s", n, v.logs.String())
	}
}

// The cap on calendars per identity: a list of 6 with a cap of 4 enrolls 4
// (WARNING calendar_cap_reached with the counts); a later listing keeps
// those 4 and enrolls no fifth, even when a followed one left the list's
// head; one leaving makes room for one more.
func TestCalendarsPerIdentityCap(t *testing.T) {
	v := newEnv(t)
	v.e.MaxCalendarsPerIdentity = 4
	if err := v.emu.CreateDomain("cap.test", "admin@cap.test"); err != nil {
		t.Fatal(err)
	}
	if err := v.emu.AddDomainUser("bob@cap.test", false); err != nil {
		t.Fatal(err)
	}
	bob := v.asUser("bob@cap.test")
	var ids []string
	for i := range 5 {
		c, err := bob.Calendars.Insert(&calendar.Calendar{Summary: "c" + strconv.Itoa(i)}).Do()
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, c.Id)
	}
	sp := enroll.IdentitySpec{AuthMode: store.AuthDelegation, Subject: "bob@cap.test"}
	res, err := v.e.EnrollIdentity(v.ctx, sp)
	if err != nil || res.Listed != 6 || res.Enrolled != 4 || res.CapLeftOut != 2 || res.Calendars != 4 {
		t.Fatalf("enroll: %+v %v", res, err)
	}
	lines := v.logLines("calendar_cap_reached")
	if len(lines) != 1 || lines[0]["severity"] != "WARNING" || lines[0]["cap"] != 4.0 || lines[0]["leftOut"] != 2.0 ||
		lines[0]["identityKey"] != sp.Key() {
		t.Fatalf("cap lines %v", lines)
	}
	followed := func() []string {
		var out []string
		for id, c := range v.calendars() {
			if c.Status == store.StatusActive && c.EnrolledBy == sp.Key() {
				out = append(out, id)
			}
		}
		slices.Sort(out)
		return out
	}
	first := followed()
	if len(first) != 4 {
		t.Fatalf("followed %v", first)
	}
	// Listed again: the same four, no newcomer.
	res, err = v.e.Discover(v.ctx, sp.Key())
	if err != nil || res.Enrolled != 0 || res.Unenrolled != 0 || res.CapLeftOut != 2 || !slices.Equal(followed(), first) {
		t.Fatalf("second listing: %+v %v, followed %v (was %v)", res, err, followed(), first)
	}
	// One followed calendar leaves the list: one of the others takes its place.
	var gone string
	for _, id := range first {
		if id != "bob@cap.test" {
			gone = id
			break
		}
	}
	if err := bob.CalendarList.Delete(gone).Do(); err != nil {
		t.Fatal(err)
	}
	res, err = v.e.Discover(v.ctx, sp.Key())
	if err != nil || res.Unenrolled != 1 || res.Enrolled != 1 || res.CapLeftOut != 1 || len(followed()) != 4 {
		t.Fatalf("after one left: %+v %v, followed %v", res, err, followed())
	}
	// The identity says so, and stays active: calendarsLeftOut.
	if id, err := v.st.GetIdentity(v.ctx, sp.Key()); err != nil || id.Status != store.StatusActive || id.CalendarsLeftOut != 1 {
		t.Fatalf("identity after a capped listing: %+v %v", id, err)
	}
	// Under the cap again: 0.
	removed := 0
	for _, id := range ids {
		if id == gone || removed == 2 {
			continue // already out of the list
		}
		if err := bob.CalendarList.Delete(id).Do(); err != nil {
			t.Fatal(err)
		}
		removed++
	}
	if res, err = v.e.Discover(v.ctx, sp.Key()); err != nil || res.CapLeftOut != 0 {
		t.Fatalf("under the cap: %+v %v", res, err)
	}
	if id, err := v.st.GetIdentity(v.ctx, sp.Key()); err != nil || id.CalendarsLeftOut != 0 {
		t.Fatalf("identity under the cap: %+v %v", id, err)
	}
}
