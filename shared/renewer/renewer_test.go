package renewer

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/firestore"
	"google.golang.org/api/calendar/v3"

	"github.com/calsync/calsync/shared/config"
	"github.com/calsync/calsync/shared/credentials"
	"github.com/calsync/calsync/shared/messages"
	"github.com/calsync/calsync/shared/store"
	"github.com/calsync/calsync/shared/testing/calendaremu"
)

func TestRepairExpiredChannelAsksCatchUp(t *testing.T) {
	e := newEnv(t, calendaremu.Options{})
	cal := store.Calendar{CalendarID: calendaremu.DefaultUser, AuthMode: store.AuthADC}
	key := e.register(cal, time.Now())
	// A channel granted 1 s, then silence: it expires.
	short := e.renewer(func(c *config.RenewChannels) { c.ChannelTTL = time.Second })
	_ = short
	old, err := short.Channels.Watch(e.ctx, cal, "")
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond)

	r := e.renewer(nil)
	sum, err := r.Run(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Created != 1 || sum.Expired != 1 || sum.Reconciles != 1 || sum.Failed != 0 || sum.Renewed != 0 {
		t.Fatalf("summary %+v", sum)
	}
	got := e.received(10*time.Second, 1)
	if len(got) != 1 || got[0].CalendarKey != key || got[0].ResourceState != messages.StateReconcile || got[0].ReceivedAt.IsZero() {
		t.Fatalf("published %+v", got)
	}
	if rec, _ := e.st.GetChannel(e.ctx, old.ChannelID); rec.State != store.ChannelExpired || rec.ExpireAt.IsZero() {
		t.Errorf("old record %+v", rec)
	}
	if l := e.live()[calendaremu.DefaultUser]; len(l) != 1 || l[0] == old.ChannelID {
		t.Errorf("live channels %v", l)
	}
	// Nothing more to do.
	if sum, _ := r.Run(e.ctx); sum.Created+sum.Renewed+sum.Stopped+sum.Reconciles+sum.Failed != 0 {
		t.Errorf("second run %+v", sum)
	}
}

func TestOrphansStopped(t *testing.T) {
	e := newEnv(t, calendaremu.Options{})
	r := e.renewer(nil)
	gone := store.Calendar{CalendarID: e.newCalendar("gone"), AuthMode: store.AuthADC}
	unwatched := store.Calendar{CalendarID: e.newCalendar("unwatched"), AuthMode: store.AuthADC}
	kept := store.Calendar{CalendarID: calendaremu.DefaultUser, AuthMode: store.AuthADC}
	for _, c := range []store.Calendar{gone, unwatched, kept} {
		e.register(c, time.Now())
		if _, err := r.Channels.Watch(e.ctx, c, ""); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.st.CalendarRef(store.CalendarKey(gone.CalendarID)).Delete(e.ctx); err != nil {
		t.Fatal(err)
	}
	if err := e.st.SetStatus(e.ctx, store.CalendarKey(unwatched.CalendarID), store.StatusUnwatched, "", ""); err != nil {
		t.Fatal(err)
	}
	sum, err := r.Run(e.ctx)
	if err != nil || sum.Stopped != 2 || sum.Created != 0 || sum.Failed != 0 {
		t.Fatalf("summary %+v %v", sum, err)
	}
	live := e.live()
	if len(live) != 1 || len(live[kept.CalendarID]) != 1 {
		t.Errorf("live after orphans: %v", live)
	}
}

// Two runs at once (two processes: own factories, managers and clients'
// caches) leave exactly one live channel per calendar.
func TestOverlappingRuns(t *testing.T) {
	e := newEnv(t, calendaremu.Options{})
	setupR := e.renewer(func(c *config.RenewChannels) { c.ChannelTTL = 5 * time.Minute })
	_ = setupR
	var cals []store.Calendar
	for i := range 12 {
		c := store.Calendar{CalendarID: e.newCalendar("c"), AuthMode: store.AuthADC}
		e.register(c, time.Now())
		cals = append(cals, c)
		if i%3 != 0 { // 8 with a channel inside the renew window, 4 without
			if _, err := setupR.Channels.Watch(e.ctx, c, ""); err != nil {
				t.Fatal(err)
			}
		}
	}
	for round := range 3 {
		a := e.renewer(nil)
		b := e.renewer(nil)
		var wg sync.WaitGroup
		sums := make([]Summary, 2)
		for i, r := range []*Renewer{a, b} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				s, err := r.Run(e.ctx)
				if err != nil {
					t.Error(err)
				}
				sums[i] = s
			}()
		}
		wg.Wait()
		t.Logf("round %d: %+v / %+v", round, sums[0], sums[1])
		if round == 0 {
			if n := sums[0].Renewed + sums[1].Renewed; n != 8 {
				t.Errorf("renewed %d, want 8", n)
			}
			if n := sums[0].Created + sums[1].Created; n != 4 {
				t.Errorf("created %d, want 4", n)
			}
		}
		if sums[0].Failed+sums[1].Failed != 0 {
			t.Errorf("failures: %s", e.logs.String())
		}
		live := e.live()
		for _, c := range cals {
			if n := len(live[c.CalendarID]); n != 1 {
				t.Errorf("round %d: calendar %s has %d live channels", round, c.CalendarID, n)
			}
			chans, _ := e.st.ChannelsOfCalendar(e.ctx, store.CalendarKey(c.CalendarID))
			active := 0
			for _, ch := range chans {
				if ch.State == store.ChannelActive {
					active++
				}
			}
			if active != 1 {
				t.Errorf("round %d: calendar %s has %d active records", round, c.CalendarID, active)
			}
		}
		// Next round: everything inside the window again.
		e.cfg.RenewBefore = 2 * time.Hour
	}
}

func TestRevokedGrant(t *testing.T) {
	e := newEnv(t, calendaremu.Options{})
	setup := e.renewer(func(c *config.RenewChannels) { c.ChannelTTL = 5 * time.Minute })
	if err := e.emu.CreateUser("carol@x.test", "1//carol"); err != nil {
		t.Fatal(err)
	}
	credID, err := setup.Access.Credentials.Put(e.ctx, "carol@x.test", "1//carol")
	if err != nil {
		t.Fatal(err)
	}
	cal := store.Calendar{CalendarID: "carol@x.test", AuthMode: store.AuthOAuth, CredentialID: credID}
	key := e.register(cal, time.Now())
	ch, err := setup.Channels.Watch(e.ctx, cal, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := e.emu.RevokeGrant("carol@x.test"); err != nil {
		t.Fatal(err)
	}
	r := e.renewer(nil)
	sum, err := r.Run(e.ctx)
	if err != nil || sum.Failed != 1 || sum.Renewed != 0 {
		t.Fatalf("summary %+v %v", sum, err)
	}
	got, _ := e.st.GetCalendar(e.ctx, key)
	if got.Status != store.StatusAuthRevoked || !strings.Contains(got.StatusReason, "invalid_grant") {
		t.Errorf("calendar %s %q", got.Status, got.StatusReason)
	}
	if cr, _ := e.st.GetCredential(e.ctx, credID); cr.Status != store.StatusAuthRevoked {
		t.Errorf("credential %s", cr.Status)
	}
	if rec, _ := e.st.GetChannel(e.ctx, ch.ChannelID); rec.State != store.ChannelStopped {
		t.Errorf("channel record %s", rec.State)
	}
	logs := e.logs.String()
	// One dead grant, one ERROR line: the transition's, not also a
	// renew_failure for the same answer.
	if n, errs := strings.Count(logs, `"event":"auth_revoked"`), strings.Count(logs, `"level":"ERROR"`); n != 1 || errs != 1 {
		t.Errorf("%d auth_revoked of %d ERROR lines: %s", n, errs, logs)
	}
	if strings.Contains(logs, "1//carol") {
		t.Error("refresh token logged")
	}
	// Revoked calendars are left alone afterwards: no channel, no failure.
	if sum, _ := r.Run(e.ctx); sum.Failed != 0 || sum.Created != 0 {
		t.Errorf("second run %+v", sum)
	}
	// A calendar registered later with the dead credential: marked too, once.
	k2 := e.register(store.Calendar{CalendarID: "carol-second", AuthMode: store.AuthOAuth, CredentialID: credID}, time.Now())
	if sum, _ := r.Run(e.ctx); sum.Failed != 1 || sum.Created != 0 {
		t.Errorf("third run %+v", sum)
	}
	if got, _ := e.st.GetCalendar(e.ctx, k2); got.Status != store.StatusAuthRevoked {
		t.Errorf("second calendar %s", got.Status)
	}
	if sum, _ := r.Run(e.ctx); sum.Failed != 0 {
		t.Errorf("fourth run %+v", sum)
	}
}

// A calendar whose events.watch keeps answering 404 becomes not_found once
// the streak persists (one 404 is not enough: TestOne404OnWatch).
func TestCalendarGoneMarkedNotFound(t *testing.T) {
	e := newEnv(t, calendaremu.Options{})
	r := e.renewer(func(c *config.RenewChannels) { c.NotFoundAttempts, c.NotFoundAfter = 2, 100*time.Millisecond })
	key := e.register(store.Calendar{CalendarID: "deleted@x.test", AuthMode: store.AuthADC}, time.Now())
	if sum, err := r.Run(e.ctx); err != nil || sum.Failed != 1 || sum.Created != 0 || sum.NotFound404 != 1 || sum.Reconciles != 1 {
		t.Fatalf("summary %+v %v", sum, err)
	}
	if got, _ := e.st.GetCalendar(e.ctx, key); got.Status != store.StatusActive || got.NotFoundCount != 1 {
		t.Fatalf("after one 404: %s, streak %d", got.Status, got.NotFoundCount)
	}
	time.Sleep(150 * time.Millisecond)
	if sum, _ := r.Run(e.ctx); sum.NotFound404 != 1 {
		t.Fatalf("second run %+v", sum)
	}
	if got, _ := e.st.GetCalendar(e.ctx, key); got.Status != store.StatusNotFound {
		t.Errorf("after a persistent 404: status %s", got.Status)
	}
	if sum, _ := r.Run(e.ctx); sum.Failed != 0 || sum.Calendars != 0 {
		t.Errorf("third run %+v", sum)
	}
}

func TestReconcileStaleAndDirty(t *testing.T) {
	e := newEnv(t, calendaremu.Options{})
	r := e.renewer(nil)
	now := time.Now()
	stale := store.Calendar{CalendarID: e.newCalendar("stale"), AuthMode: store.AuthADC}
	dirty := store.Calendar{CalendarID: e.newCalendar("dirty"), AuthMode: store.AuthADC}
	leased := store.Calendar{CalendarID: e.newCalendar("leased"), AuthMode: store.AuthADC}
	fresh := store.Calendar{CalendarID: calendaremu.DefaultUser, AuthMode: store.AuthADC}
	e.register(stale, now.Add(-7*time.Hour))
	kd := e.register(dirty, now)
	kl := e.register(leased, now)
	e.register(fresh, now)
	for k, until := range map[string]time.Time{kd: now.Add(-time.Minute), kl: now.Add(time.Minute)} {
		e.st.CalendarRef(k).Update(e.ctx, []firestore.Update{{Path: "dirty", Value: true}, {Path: "leaseUntil", Value: until}})
	}
	for _, c := range []store.Calendar{stale, dirty, leased, fresh} {
		if _, err := r.Channels.Watch(e.ctx, c, ""); err != nil {
			t.Fatal(err)
		}
	}
	sum, err := r.Run(e.ctx)
	if err != nil || sum.Reconciles != 2 || sum.Created != 0 {
		t.Fatalf("summary %+v %v", sum, err)
	}
	got := e.received(10*time.Second, 2)
	keys := map[string]bool{}
	for _, n := range got {
		keys[n.CalendarKey] = true
	}
	if len(got) != 2 || !keys[store.CalendarKey(stale.CalendarID)] || !keys[kd] {
		t.Errorf("reconciles for %v", keys)
	}
}

func TestRunSummaryAndExpiringSoon(t *testing.T) {
	e := newEnv(t, calendaremu.Options{})
	setup := e.renewer(func(c *config.RenewChannels) { c.ChannelTTL = time.Hour })
	cal := store.Calendar{CalendarID: calendaremu.DefaultUser, AuthMode: store.AuthADC}
	e.register(cal, time.Now())
	if _, err := setup.Channels.Watch(e.ctx, cal, ""); err != nil {
		t.Fatal(err)
	}
	r := e.renewer(func(c *config.RenewChannels) { c.RenewBefore = 2 * time.Hour })
	e.emu.FailNext("events.watch", 1, 400, "invalid")
	sum, err := r.Run(e.ctx)
	if err != nil || sum.Failed != 1 || sum.ExpiringSoon != 1 || sum.Renewed != 0 {
		t.Errorf("summary %+v %v", sum, err)
	}
	logs := e.logs.String()
	for _, want := range []string{`"event":"renew_run"`, `"expiringSoon":1`, `"failed":1`, `"renewed":0`, `"created":0`, `"stopped":0`, `"reconciles":0`, `"event":"renew_failure"`, `"level":"ERROR"`} {
		if !strings.Contains(logs, want) {
			t.Errorf("logs lack %s: %s", want, logs)
		}
	}
	// The next run succeeds and renews.
	if sum, err := r.Run(e.ctx); err != nil || sum.Renewed != 1 || sum.Failed != 0 {
		t.Errorf("second run %+v %v", sum, err)
	}
}

// Google may grant less than asked: the emulator grants 3 s for a 1 h ask.
// Runs every ~second with a 2 s window renew each channel before it expires
// (the old one is stopped, never expired), and every change made along the
// way reaches the webhook through a live channel.
func TestRenewBeforeExpiryWithShortGrants(t *testing.T) {
	e := newEnv(t, calendaremu.Options{MaxTTL: 3 * time.Second})
	var mu sync.Mutex
	exists := map[string]int{}
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Goog-Resource-State") == "exists" {
			mu.Lock()
			exists[r.Header.Get("X-Goog-Channel-ID")]++
			mu.Unlock()
		}
	}))
	defer hook.Close()
	r := e.renewer(func(c *config.RenewChannels) { c.WebhookURL = hook.URL; c.RenewBefore = 2 * time.Second })
	cal := store.Calendar{CalendarID: calendaremu.DefaultUser, AuthMode: store.AuthADC}
	e.register(cal, time.Now())
	first, err := r.Channels.Watch(e.ctx, cal, "")
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Until(first.Expiration); d > 3*time.Second {
		t.Fatalf("granted %s, want the emulator's 3 s cap", d)
	}
	svc, _ := calendaremu.NewService(e.ctx, e.base)
	changes, renewed := 0, 0
	for range 4 {
		time.Sleep(1100 * time.Millisecond)
		if _, err := svc.Events.Insert(cal.CalendarID, &calendar.Event{Summary: "tick",
			Start: &calendar.EventDateTime{Date: "2032-01-01"}, End: &calendar.EventDateTime{Date: "2032-01-02"}}).Do(); err != nil {
			t.Fatal(err)
		}
		changes++
		sum, err := r.Run(e.ctx)
		if err != nil || sum.Failed != 0 || sum.Created != 0 {
			t.Fatalf("run: %+v %v", sum, err)
		}
		renewed += sum.Renewed
	}
	if renewed < 2 {
		t.Errorf("renewed %d times in 4.4 s of 3 s grants", renewed)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		n := 0
		for _, c := range exists {
			n += c
		}
		mu.Unlock()
		if n >= changes {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d changes notified", n, changes)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Every replaced channel was stopped before its expiry, none lapsed.
	chans := e.emu.Channels()
	for i, c := range chans {
		if i < len(chans)-1 && !c.Stopped {
			t.Errorf("channel %d (%s) was not stopped (expired: %v)", i, c.ID, c.Expired)
		}
	}
	if last := chans[len(chans)-1]; last.Stopped || last.Expired {
		t.Errorf("the newest channel is not live: %+v", last)
	}
}

// While CREDENTIAL_KEYS is still set, every run seals the legacy AES-GCM
// credentials to the current key (resealed in the summary): the migration
// needs no key outside the functions. Calendars using them keep working.
func TestRunMigratesLegacyCredentials(t *testing.T) {
	e := newEnv(t, calendaremu.Options{})
	aes, err := credentials.ParseCipher(credKeys)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.emu.CreateUser("dave@x.test", "1//dave"); err != nil {
		t.Fatal(err)
	}
	id := credentials.NewID()
	keyID, ct, _ := aes.Seal(id, []byte("1//dave"))
	if err := e.st.CreateCredential(e.ctx, id, store.Credential{Subject: "dave@x.test", KeyID: keyID, Ciphertext: ct, Status: store.CredentialActive}); err != nil {
		t.Fatal(err)
	}
	e.register(store.Calendar{CalendarID: "dave@x.test", AuthMode: store.AuthOAuth, CredentialID: id}, time.Now())
	r := e.renewer(func(c *config.RenewChannels) { c.CredentialKeys = credKeys })
	sum, err := r.Run(e.ctx)
	if err != nil || sum.Resealed != 1 || sum.Created != 1 || sum.Failed != 0 {
		t.Fatalf("run: %+v %v", sum, err)
	}
	if c, _ := e.st.GetCredential(e.ctx, id); c.KeyID != "" || c.SealedKeyID != "h1" {
		t.Fatalf("credential after the run: keyId %q sealedKeyId %q", c.KeyID, c.SealedKeyID)
	}
	// CREDENTIAL_KEYS can go: the calendar is renewed with the sealed token.
	r = e.renewer(func(c *config.RenewChannels) { c.RenewBefore = 2 * time.Hour })
	if sum, err := r.Run(e.ctx); err != nil || sum.Renewed != 1 || sum.Resealed != 0 || sum.Failed != 0 {
		t.Fatalf("run without CREDENTIAL_KEYS: %+v %v", sum, err)
	}
}

// An API not enabled in the project (403 accessNotConfigured /
// SERVICE_DISABLED) on a watch: the calendar becomes api_disabled with one
// ERROR line that says what to do, not a renew_failure retried every run.
func TestAPIDisabledOnRenew(t *testing.T) {
	e := newEnv(t, calendaremu.Options{})
	key := e.register(store.Calendar{CalendarID: calendaremu.DefaultUser, AuthMode: store.AuthADC}, time.Now())
	if err := e.emu.DisableAPI(calendaremu.ServiceCalendar, true); err != nil {
		t.Fatal(err)
	}
	r := e.renewer(nil)
	if _, err := r.Run(e.ctx); err != nil {
		t.Fatal(err)
	}
	if got, _ := e.st.GetCalendar(e.ctx, key); got.Status != store.StatusAPIDisabled {
		t.Fatalf("calendar %s %q, want %s", got.Status, got.StatusReason, store.StatusAPIDisabled)
	}
	logs := e.logs.String()
	if n := strings.Count(logs, `"event":"api_disabled"`); n != 1 || !strings.Contains(logs, "enable it") || strings.Contains(logs, `"event":"renew_failure"`) {
		t.Errorf("%d api_disabled lines: %s", n, logs)
	}
	if sum, _ := r.Run(e.ctx); sum.Failed != 0 || sum.Created != 0 {
		t.Errorf("second run %+v", sum)
	}
}
