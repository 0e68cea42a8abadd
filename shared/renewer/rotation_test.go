package renewer

import (
	"bytes"
	"context"
	"encoding/base64"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/api/calendar/v3"

	"github.com/calsync/calsync/functions/webhook"
	"github.com/calsync/calsync/shared/channels"
	"github.com/calsync/calsync/shared/channeltoken"
	"github.com/calsync/calsync/shared/config"
	"github.com/calsync/calsync/shared/logging"
	"github.com/calsync/calsync/shared/store"
	"github.com/calsync/calsync/shared/testing/calendaremu"
)

// rotationHook is the real Webhook handler (keys swapped in as a rollout
// would), behind a server that records every answer.
type rotationHook struct {
	mu      sync.Mutex
	h       *webhook.Handler
	answers map[int]int // status -> count
	logs    bytes.Buffer
	history []string // CHANNEL_TOKEN_KEY_HISTORY
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

// rollOut gives the Webhook a new key list.
func (r *rotationHook) rollOut(t *testing.T, list string) {
	keys, err := channeltoken.Parse(list)
	if err != nil {
		t.Fatal(err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.h = &webhook.Handler{ProjectID: "p", Verifier: keys, Publisher: discard{}, PublishTimeout: time.Second,
		Logger: logging.New(&r.logs, slog.LevelInfo), ExpiryGrace: time.Hour, UnknownKeyRetry: time.Hour, KeyHistory: r.history}
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

type discard struct{}

func (discard) Publish(context.Context, []byte, map[string]string, string) error { return nil }

// TestKeyRotation runs the documented procedure (shared/channeltoken/README.md)
// against the Calendar emulator and the real Webhook handler: add the new key
// for verification, sign with it, renew every channel the old key signed
// (RenewChannels does it in its next run), drop the old key. Every push
// Google sends on the way verifies: no notification is lost. Then the same
// slip the procedure prevents, dropping the old key while a channel still
// uses it, is answered 503 (Google retries), not 403.
func TestKeyRotation(t *testing.T) {
	e := newEnv(t, calendaremu.Options{})
	key := func(id, fill string) string {
		return id + ":" + base64.StdEncoding.EncodeToString([]byte(strings.Repeat(fill, 32)))
	}
	k1, k2 := key("k1", "1"), key("k2", "2")
	hook := &rotationHook{}
	hook.rollOut(t, k1)
	srv := httptest.NewServer(hook)
	defer srv.Close()
	renewWith := func(list string) Summary {
		t.Helper()
		r := e.renewer(func(c *config.RenewChannels) { c.ChannelTokenKeys = list; c.WebhookURL = srv.URL })
		sum, err := r.Run(e.ctx)
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
		e.register(store.Calendar{CalendarID: id, AuthMode: store.AuthADC}, time.Now())
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
	hook.history = []string{"k1", "k3"}
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
