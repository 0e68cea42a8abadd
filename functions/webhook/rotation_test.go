package webhook

import (
	"context"
	"encoding/base64"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/firestore"
	"github.com/sethvargo/go-envconfig"
	"google.golang.org/api/calendar/v3"

	"github.com/calsync/calsync/shared/app"
	"github.com/calsync/calsync/shared/channels"
	"github.com/calsync/calsync/shared/config"
	"github.com/calsync/calsync/shared/lifecycle"
	"github.com/calsync/calsync/shared/logging"
	"github.com/calsync/calsync/shared/pubsubx"
	"github.com/calsync/calsync/shared/renewer"
	"github.com/calsync/calsync/shared/store"
	"github.com/calsync/calsync/shared/testing/calendaremu"
	"github.com/calsync/calsync/shared/testing/testenv"
	"github.com/calsync/calsync/shared/testing/testlog"
)

// rotationHook is the Webhook as deployed (shared/app; keys swapped in as
// a rollout would), behind a server that records every answer.
type rotationHook struct {
	mu      sync.Mutex
	h       *Handler
	closeH  func()
	answers map[int]int // status -> count
	logs    testlog.Buffer
	env     map[string]string
}

func (r *rotationHook) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	r.mu.Lock()
	h := r.h
	r.mu.Unlock()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	r.mu.Lock()
	r.answers[rec.Code]++
	r.mu.Unlock()
	w.WriteHeader(rec.Code)
}

// rollOut gives the Webhook a new key list: a new instance, built by
// app.Build from the environment as the function's New builds it.
func (r *rotationHook) rollOut(t *testing.T, list string) {
	t.Helper()
	r.env["CHANNEL_TOKEN_KEYS"] = list
	cfg, err := config.Load[config.Webhook](context.Background(), envconfig.MapLookuper(r.env))
	if err != nil {
		t.Fatal(err)
	}
	logger := logging.New(&r.logs, slog.LevelInfo)
	a, err := app.Build(context.Background(), cfg, app.WithLogger(logger))
	if err != nil {
		t.Fatal(err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closeH != nil {
		r.closeH()
	}
	r.h, r.closeH = NewHandler(cfg, a, logger), a.Close
	r.answers = map[int]int{}
}

func (r *rotationHook) got() map[int]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[int]int{}
	for k, v := range r.answers {
		out[k] = v
	}
	return out
}

// TestKeyRotation runs the documented procedure (shared/channeltoken/README.md)
// against the Calendar emulator and the real Webhook handler: add the new key
// for verification, sign with it, renew every channel the old key signed
// (RenewChannels does it in its next run), drop the old key. Every push
// Google sends on the way verifies: no notification is lost. Then the same
// slip the procedure prevents, dropping the old key while a channel still
// uses it, is answered 503 (Google retries), not 403.
func TestKeyRotation(t *testing.T) {
	e := newRotationEnv(t)
	key := func(id, fill string) string {
		return id + ":" + base64.StdEncoding.EncodeToString([]byte(strings.Repeat(fill, 32)))
	}
	k1, k2 := key("k1", "1"), key("k2", "2")
	hook := &rotationHook{env: map[string]string{"PROJECT_ID": e.project, "NOTIFICATIONS_TOPIC": "notifications"}}
	hook.rollOut(t, k1)
	defer func() { hook.closeH() }()
	srv := httptest.NewServer(hook)
	defer srv.Close()
	renewWith := func(list string) renewer.Summary {
		t.Helper()
		sum, err := e.renewer(list, srv.URL).Run(e.ctx)
		if err != nil || sum.Failed != 0 {
			t.Fatalf("run: %+v %v", sum, err)
		}
		return sum
	}
	usage := func() map[string]int {
		t.Helper()
		recs, err := e.st.ChannelsInStates(e.ctx, store.ChannelActive)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]int{}
		for _, u := range channels.UsageByKey(recs, time.Now()) {
			out[u.KeyID] = u.Live
		}
		return out
	}
	svc, _ := calendaremu.NewService(e.ctx, e.base)
	var cals []string
	for i := range 3 {
		id := e.newCalendar("rotation " + string(rune('a'+i)))
		cals = append(cals, id)
	}
	// change makes Google push on every calendar's live channels and waits
	// until they (and pending retries, extra of them) were delivered;
	// none may have failed for good.
	change := func(step string, extra int) {
		t.Helper()
		before := e.emu.Stats().Notifications
		for _, c := range cals {
			if _, err := svc.Events.Insert(c, &calendar.Event{Summary: step,
				Start: &calendar.EventDateTime{Date: "2026-06-01"}, End: &calendar.EventDateTime{Date: "2026-06-02"}}).Do(); err != nil {
				t.Fatal(err)
			}
		}
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			st := e.emu.Stats().Notifications
			if st.Failed != before.Failed {
				t.Fatalf("%s: a push failed for good (lost): %+v", step, st)
			}
			if st.Sent-before.Sent >= len(cals)+extra {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: pushes not delivered: %+v (before %+v)", step, st, before)
			}
		}
	}
	allOK := func(step string) {
		t.Helper()
		if got := hook.got(); len(got) != 1 || got[200] == 0 {
			t.Fatalf("%s: the Webhook answered %v, want only 200s\n%s", step, got, hook.logs.String())
		}
	}

	// Before: k1 signs and verifies.
	if sum := renewWith(k1); sum.Created != 3 {
		t.Fatalf("first run %+v", sum)
	}
	change("before", 0)
	allOK("before")
	if u := usage(); u["k1"] != 3 || len(u) != 1 {
		t.Fatalf("usage before: %v", u)
	}

	// Step 1: the Webhook also verifies k2; k1 still signs. Nothing renewed.
	hook.rollOut(t, k1+","+k2)
	if sum := renewWith(k1 + "," + k2); sum.Renewed != 0 || sum.Rekeyed != 0 {
		t.Fatalf("step 1 renewed channels: %+v", sum)
	}
	change("step 1", 0)
	allOK("step 1")

	// Steps 2 and 3: k2 signs; the next run renews every k1 channel at once,
	// though none is near expiry.
	hook.rollOut(t, k2+","+k1)
	if sum := renewWith(k2 + "," + k1); sum.Renewed != 3 || sum.Rekeyed != 3 || sum.Stopped != 0 {
		t.Fatalf("step 3: %+v, want 3 renewed, all rekeyed", sum)
	}
	if u := usage(); u["k2"] != 3 || len(u) != 1 {
		t.Fatalf("usage after step 3: %v, want only k2", u)
	}
	change("step 3", 0)
	allOK("step 3") // the renewal's first pushes (both channels overlap) and these

	// Step 4: k1 is dropped everywhere.
	hook.rollOut(t, k2)
	if sum := renewWith(k2); sum.Renewed != 0 {
		t.Fatalf("step 4 renewed: %+v", sum)
	}
	change("step 4", 0)
	allOK("step 4")
	if l := e.live(); len(l) != 3 {
		t.Fatalf("live channels after the rotation: %v", l)
	}

	// The slip: k3 signs new channels while the Webhook only has k2 (step 2
	// before step 1). k3 is in the deployment's key history (the operator
	// listed it, with the retired k1, in CHANNEL_TOKEN_KEY_HISTORY), so their
	// pushes are answered 503, Google retries them and they verify once the
	// Webhook gets k3, instead of a lost 403.
	hook.env["CHANNEL_TOKEN_KEY_HISTORY"] = "k1,k3"
	hook.rollOut(t, k2)
	k3 := key("k3", "3")
	if sum := renewWith(k3 + "," + k2); sum.Rekeyed != 3 {
		t.Fatalf("slip run: %+v", sum)
	}
	deadline := time.Now().Add(30 * time.Second)
	for hook.got()[503] < 3 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if got := hook.got(); got[503] < 3 || got[403] != 0 {
		t.Fatalf("pushes signed with a key the Webhook lacks: answers %v, want 503s and no 403", got)
	}
	if !strings.Contains(hook.logs.String(), `"event":"token_key_unknown"`) || !strings.Contains(hook.logs.String(), `"keyId":"k3"`) {
		t.Fatalf("no token_key_unknown line naming k3:\n%s", hook.logs.String())
	}
	hook.rollOut(t, k3+","+k2) // the fix: Google's retries now verify
	change("after the fix", 3) // the 3 retried "sync" pushes of the new channels, and 3 new ones
	allOK("after the fix")
}

// rotationEnv is what RenewChannels needs: the Firestore and Pub/Sub
// emulators and the Calendar emulator.
type rotationEnv struct {
	t       *testing.T
	ctx     context.Context
	project string
	fs      *firestore.Client
	st      *store.Store
	emu     *calendaremu.Server
	base    string
}

func newRotationEnv(t *testing.T) *rotationEnv {
	testenv.Firestore(t)
	host := testenv.PubSub(t)
	e := &rotationEnv{t: t, ctx: context.Background(), project: testenv.ProjectID(t)}
	fs, err := firestore.NewClient(e.ctx, e.project)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fs.Close() })
	ps, err := pubsubx.NewClient(e.ctx, e.project, host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ps.Close() })
	if err := pubsubx.EnsureTopic(e.ctx, ps, "notifications"); err != nil {
		t.Fatal(err)
	}
	e.fs, e.st = fs, store.New(fs)
	e.emu, e.base = calendaremu.Start(t, calendaremu.Options{})
	return e
}

// renewer is RenewChannels as deployed (app.Build from its environment,
// production defaults), signing with the key list keys; channels of an hour.
func (e *rotationEnv) renewer(keys, webhookURL string) *renewer.Renewer {
	e.t.Helper()
	cfg, err := config.Load[config.RenewChannels](e.ctx, envconfig.MapLookuper(map[string]string{
		"PROJECT_ID": e.project, "CHANNEL_TOKEN_KEYS": keys, "WEBHOOK_URL": webhookURL, "NOTIFICATIONS_TOPIC": "notifications",
		"CALENDAR_ENDPOINT": e.base, "CREDENTIAL_PRIVATE_KEYS": "h1:" + base64.StdEncoding.EncodeToString([]byte(strings.Repeat("h", 32))),
		"CHANNEL_TTL": "1h", "RENEW_BEFORE": "10m",
	}))
	if err != nil {
		e.t.Fatal(err)
	}
	a, err := app.Build(e.ctx, cfg, app.WithFirestore(e.fs), app.WithLogger(logging.New(&testlog.Buffer{}, slog.LevelInfo)))
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(a.Close)
	return a.Renewer
}

// newCalendar makes a calendar on the emulator and registers it (adc).
func (e *rotationEnv) newCalendar(name string) string {
	e.t.Helper()
	svc, _ := calendaremu.NewService(e.ctx, e.base)
	c, err := svc.Calendars.Insert(&calendar.Calendar{Summary: name}).Do()
	if err != nil {
		e.t.Fatal(err)
	}
	key, err := lifecycle.Register(e.ctx, e.st, store.Calendar{CalendarID: c.Id, AuthMode: store.AuthADC})
	if err != nil {
		e.t.Fatal(err)
	}
	// Synced just now: the runs have no reconcile to ask for.
	if _, err := e.st.CalendarRef(key).Update(e.ctx, []firestore.Update{{Path: "lastSyncedAt", Value: time.Now()}}); err != nil {
		e.t.Fatal(err)
	}
	return c.Id
}

// live is the emulator's live channels per calendar.
func (e *rotationEnv) live() map[string][]string {
	out := map[string][]string{}
	for _, c := range e.emu.Channels() {
		if !c.Stopped && !c.Expired {
			out[c.Calendar] = append(out[c.Calendar], c.ID)
		}
	}
	return out
}
