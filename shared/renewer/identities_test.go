package renewer

import (
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/firestore"
	"github.com/calsync/calsync/shared/config"
	"github.com/calsync/calsync/shared/enroll"
	"github.com/calsync/calsync/shared/messages"
	"github.com/calsync/calsync/shared/store"
	"github.com/calsync/calsync/shared/testing/calendaremu"
)

// A run renews an identity's calendar-list channel like a calendar's (new
// channel first, old stopped), asks for a look at a quiet list, and diffs
// a domain's directory when its last diff is old: a user added is
// enrolled, a user suspended unenrolled, nothing else touched.
func TestRunRenewsListsAndDiffsDirectories(t *testing.T) {
	e := newEnv(t, calendaremu.Options{})
	if err := e.emu.CreateDomain("corp.test", "admin@corp.test"); err != nil {
		t.Fatal(err)
	}
	_ = e.emu.AddDomainUser("ann@corp.test", false)
	_ = e.emu.AddDomainUser("ben@corp.test", false)
	r := e.renewer(func(c *config.RenewChannels) {
		c.ChannelTTL = 20 * time.Minute // within RenewBefore + 10 min: renewed by the next run
		c.RenewBefore = 15 * time.Minute
		c.DirectorySyncInterval = time.Hour
	})
	res, err := r.Enroll.EnrollDomain(e.ctx, enroll.DomainSpec{Domain: "corp.test", Admin: "admin@corp.test"}, nil)
	if err != nil || res.Enrolled != 3 {
		t.Fatalf("enroll domain: %+v %v", res, err)
	}
	annList := "users/ann@corp.test/calendarList"
	first := e.live()[annList]
	if len(first) != 1 {
		t.Fatalf("ann's list channels: %v", e.live())
	}
	e.received(2*time.Second, 3) // the first syncs the enrollment asked for

	// Not due yet: the directory was diffed a moment ago; ann's channel
	// lives 20 min but is renewed within 15 min of its end: not yet.
	sum, err := r.Run(e.ctx)
	if err != nil || sum.Identities != 3 || sum.Directories != 0 || sum.Renewed != 0 || sum.ListReconciles != 0 {
		t.Fatalf("first run: %+v %v", sum, err)
	}
	// Six minutes later (a fake clock): every list channel is due.
	later := time.Now().Add(6 * time.Minute)
	r.Now = func() time.Time { return later }
	r.Channels.Now = r.Now
	sum, err = r.Run(e.ctx)
	if err != nil || sum.Renewed != 6 { // 3 lists + 3 primary calendars
		t.Fatalf("renewing run: %+v %v", sum, err)
	}
	if now := e.live()[annList]; len(now) != 1 || now[0] == first[0] {
		t.Fatalf("ann's list channel after renewal: %v (was %v)", now, first)
	}
	r.Now, r.Channels.Now = nil, nil

	// The directory changes; a run after the interval applies them.
	_ = e.emu.AddDomainUser("new@corp.test", false)
	_ = e.emu.SuspendUser("ben@corp.test", true)
	ref := e.st.DomainRef(store.DomainKey("corp.test"))
	if _, err := ref.Update(e.ctx, diffedAt(time.Now().Add(-2*time.Hour))); err != nil {
		t.Fatal(err)
	}
	sum, err = r.Run(e.ctx)
	if err != nil || sum.Directories != 1 {
		t.Fatalf("directory run: %+v %v", sum, err)
	}
	ids, _ := e.st.AllIdentities(e.ctx)
	status := map[string]string{}
	for _, id := range ids {
		status[id.Subject] = id.Status
	}
	if status["new@corp.test"] != store.StatusActive || status["ben@corp.test"] != store.StatusUnenrolled || status["ann@corp.test"] != store.StatusActive {
		t.Fatalf("identities after the diff: %v", status)
	}
	if len(e.live()["users/ben@corp.test/calendarList"]) != 0 || len(e.live()["ben@corp.test"]) != 0 {
		t.Fatalf("ben's channels live on: %v", e.live())
	}

	// A list quiet for RECONCILE_AFTER is looked at again.
	annKey := store.Grant{AuthMode: store.AuthDelegation, Subject: "ann@corp.test"}.IdentityKey()
	if _, err := e.st.IdentityRef(annKey).Update(e.ctx, []firestore.Update{{Path: "listedAt", Value: time.Now().Add(-7 * time.Hour)}}); err != nil {
		t.Fatal(err)
	}
	e.received(2*time.Second, 100) // drain
	sum, err = r.Run(e.ctx)
	if err != nil || sum.ListReconciles != 1 {
		t.Fatalf("quiet list: %+v %v", sum, err)
	}
	// Other requests (the diff's new calendars) may still arrive: read
	// until the reconcile comes or 10 s pass.
	found := false
	for deadline := time.Now().Add(10 * time.Second); !found && time.Now().Before(deadline); {
		for _, n := range e.received(time.Until(deadline), 1) {
			if n.Resource == messages.ResourceCalendarList && n.IdentityKey == annKey && n.ResourceState == messages.StateReconcile {
				found = true
			}
		}
	}
	if !found {
		t.Fatal("no calendarList reconcile request for the quiet list")
	}
}

// A domain whose directory Google refuses: the run records the domain's
// status (one ERROR line, no renew_failure), tries it again at every run
// (not every DIRECTORY_SYNC_INTERVAL), and the first run that reads it
// clears the status.
func TestRefusedDomainTriedEveryRun(t *testing.T) {
	e, r, ref := enrolledDomain(t)
	if _, err := ref.Update(e.ctx, diffedAt(time.Now().Add(-2*time.Hour))); err != nil {
		t.Fatal(err)
	}
	_ = e.emu.DisableAPI(calendaremu.ServiceDirectory, true)
	for i := range 2 {
		sum, err := r.Run(e.ctx)
		if err != nil || sum.Directories != 1 {
			t.Fatalf("run %d: %+v %v", i, sum, err)
		}
		if d, _ := e.st.GetDomain(e.ctx, "corp.test"); d.Status != store.StatusAPIDisabled {
			t.Fatalf("run %d: domain %s", i, d.Status)
		}
	}
	logs := e.logs.String()
	if n := strings.Count(logs, `"event":"api_disabled"`); n != 1 || strings.Contains(logs, `"event":"renew_failure"`) {
		t.Fatalf("%d api_disabled lines (want 1, and no renew_failure): %s", n, logs)
	}
	_ = e.emu.DisableAPI(calendaremu.ServiceDirectory, false)
	if sum, err := r.Run(e.ctx); err != nil || sum.Directories != 1 {
		t.Fatalf("run after the fix: %+v %v", sum, err)
	}
	if d, _ := e.st.GetDomain(e.ctx, "corp.test"); d.Status != store.StatusActive {
		t.Fatalf("domain after the fix: %s", d.Status)
	}
	// Active and diffed a moment ago: not due.
	if sum, err := r.Run(e.ctx); err != nil || sum.Directories != 0 {
		t.Fatalf("run within the interval: %+v %v", sum, err)
	}
	if n := strings.Count(e.logs.String(), `"event":"domain_back"`); n != 1 {
		t.Fatalf("%d domain_back lines", n)
	}
}

// enrolledDomain is a renewer with corp.test enrolled (diffed hourly) and
// the domain's document.
func enrolledDomain(t *testing.T) (*env, *Renewer, *firestore.DocumentRef) {
	t.Helper()
	e := newEnv(t, calendaremu.Options{})
	if err := e.emu.CreateDomain("corp.test", "admin@corp.test"); err != nil {
		t.Fatal(err)
	}
	r := e.renewer(func(c *config.RenewChannels) { c.DirectorySyncInterval = time.Hour })
	if _, err := r.Enroll.EnrollDomain(e.ctx, enroll.DomainSpec{Domain: "corp.test", Admin: "admin@corp.test"}, nil); err != nil {
		t.Fatal(err)
	}
	return e, r, e.st.DomainRef(store.DomainKey("corp.test"))
}

// diffedAt backdates a domain's last diff, begun and finished at at.
func diffedAt(at time.Time) []firestore.Update {
	return []firestore.Update{{Path: "lastDirectorySyncAt", Value: at}, {Path: "directorySyncStartedAt", Value: at}}
}

// A diff begun and not finished (an operator's enrollment running, or a
// run that died) keeps the run from diffing the domain again for 15
// minutes: two diffs at once only race (the later reading wins). After
// that the run takes it up.
func TestDiffInProgressNotRaced(t *testing.T) {
	e, r, ref := enrolledDomain(t)
	ups := diffedAt(time.Now().Add(-2 * time.Hour))
	if _, err := ref.Update(e.ctx, append(ups[:1], firestore.Update{Path: "directorySyncStartedAt", Value: time.Now()})); err != nil {
		t.Fatal(err)
	}
	if sum, err := r.Run(e.ctx); err != nil || sum.Directories != 0 {
		t.Fatalf("a run during another diff: %+v %v; want no diff", sum, err)
	}
	if !strings.Contains(e.logs.String(), `"reason":"diff_in_progress"`) {
		t.Fatalf("the skipped diff is not logged: %s", e.logs.String())
	}
	later := time.Now().Add(16 * time.Minute)
	r.Now = func() time.Time { return later }
	r.Channels.Now = r.Now
	if sum, err := r.Run(e.ctx); err != nil || sum.Directories != 1 {
		t.Fatalf("a run 16 minutes after a diff began and never ended: %+v %v; want the diff", sum, err)
	}
}
