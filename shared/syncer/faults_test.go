package syncer_test

import (
	"sync"
	"testing"

	"github.com/calsync/calsync/shared/messages"
	"github.com/calsync/calsync/shared/store"
	"github.com/calsync/calsync/shared/syncer"
	"github.com/calsync/calsync/shared/testing/faultproxy"
	"github.com/calsync/calsync/shared/testing/syncertest"
	"github.com/calsync/calsync/shared/testing/testenv"
)

// A worker whose Firestore calls go through the fault proxy: calls refused
// before the service, and a third of its commits applied with their answer
// lost (UNAVAILABLE, which the client retries, or DEADLINE_EXCEEDED). Each
// notification is redelivered until acknowledged, as Pub/Sub does. The
// mirror equals the calendar, the feed replays to the mirror, eventCount
// counts the documents and syncCount the rounds that completed.
func TestLostCommitAnswersKeepMirrorAndCounters(t *testing.T) {
	e := newEnv(t)
	p := faultProxy(t, faultproxy.Options{Seed: 21, Rates: faultproxy.Rates{Before: 0.1, Lost: 0.35}})
	fs, err := faultproxy.FirestoreClient(e.ctx, e.project, p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fs.Close() })
	var mu sync.Mutex
	rounds := 0
	s := e.syncer(func(o *syncer.Options) {
		o.Store = store.New(fs)
		o.OnSync = func(syncer.Report) { mu.Lock(); rounds++; mu.Unlock() }
	})
	deliver := func(state string) { t.Helper(); e.deliver(s, state) }
	var ids []string
	for i := range 12 {
		ids = append(ids, e.insert("v1").Id)
		if i%4 == 3 {
			deliver(messages.StateExists)
		}
	}
	deliver(messages.StateExists)
	for i, id := range ids {
		switch i % 3 {
		case 0:
			e.update(id, "v2")
		case 1:
			e.remove(id)
		}
		deliver(messages.StateExists)
	}
	deliver(messages.StateFullResync)
	e.assertMirror()
	mirror, err := syncertest.Mirror(e.ctx, e.st, e.key)
	if err != nil {
		t.Fatal(err)
	}
	c := e.calendar()
	mu.Lock()
	defer mu.Unlock()
	if c.EventCount != int64(len(mirror)) || c.SyncCount != int64(rounds) {
		t.Errorf("eventCount %d for %d documents, syncCount %d for %d completed rounds", c.EventCount, len(mirror), c.SyncCount, rounds)
	}
	f := p.Counts()
	t.Logf("faults: %d unavailable, %d lost_unavailable, %d lost_deadline; %d commits", f.Total(faultproxy.Unavailable),
		f.Total(faultproxy.LostUnavailable), f.Total(faultproxy.LostDeadline), f.Calls[faultproxy.FirestoreCommit])
	if f.Total(faultproxy.LostUnavailable) == 0 || f.Total(faultproxy.LostDeadline) == 0 {
		t.Errorf("the seed lost no answer of some kind: %v", f.Faults)
	}
}

// deliver hands a notification to s until it is acknowledged, as Pub/Sub
// redelivers one answered with an error.
func (e *env) deliver(s *syncer.Syncer, state string) {
	e.t.Helper()
	for attempt := 1; ; attempt++ {
		err := e.notify(s, state)
		if err == nil {
			return
		}
		if attempt == 40 {
			e.t.Fatalf("not acknowledged after %d deliveries: %v", attempt, err)
		}
	}
}

// faultProxy starts a fault proxy in front of the Firestore emulator.
func faultProxy(t testing.TB, o faultproxy.Options) *faultproxy.Proxy {
	t.Helper()
	p, err := faultproxy.Start("127.0.0.1:0", testenv.Firestore(t), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}
