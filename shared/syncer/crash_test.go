package syncer_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"cloud.google.com/go/firestore"
	"cloud.google.com/go/firestore/apiv1/firestorepb"

	"github.com/calsync/calsync/shared/messages"
	"github.com/calsync/calsync/shared/pubsubx"
	"github.com/calsync/calsync/shared/store"
	"github.com/calsync/calsync/shared/syncer"
)

// killAt makes a worker "die" at one point of its sync: from then on none
// of its Firestore calls or publishes gets through (its lease is neither
// renewed nor released, its writes never land), as when its instance is
// killed. The test keeps it dead to the end.
type killAt struct {
	g        gate
	armed    atomic.Bool // the kill point is near
	commits  atomic.Int32
	afterNth int32 // die after this many Firestore commits once armed (0: at the publish)
}

func (k *killAt) client(t *testing.T, e *env) *firestore.Client {
	t.Helper()
	t.Cleanup(k.g.open)
	return interceptedClient(t, e.ctx, e.project, func(ctx context.Context, method string, req any, call func() error) error {
		if err := k.g.wait(ctx); err != nil {
			return err
		}
		err := call()
		if k.afterNth > 0 && k.armed.Load() && writesEvents(req) && k.commits.Add(1) == k.afterNth {
			k.g.close()
		}
		return err
	})
}

func (k *killAt) PublishAll(ctx context.Context, key string, msgs []pubsubx.Message, next syncer.Publisher) error {
	if err := k.g.wait(ctx); err != nil {
		return err
	}
	err := next.PublishAll(ctx, key, msgs)
	if k.afterNth == 0 && k.armed.Load() {
		k.g.close() // published; the writes will never come
	}
	return err
}

// writesEvents: a commit that writes event documents (not a heartbeat).
func writesEvents(req any) bool {
	c, ok := req.(*firestorepb.CommitRequest)
	if !ok {
		return false
	}
	for _, w := range c.Writes {
		if u := w.GetUpdate(); u != nil && strings.Contains(u.Name, "/events/") {
			return true
		}
	}
	return false
}

type killingPublisher struct {
	k    *killAt
	next syncer.Publisher
}

func (p killingPublisher) PublishAll(ctx context.Context, key string, msgs []pubsubx.Message) error {
	return p.k.PublishAll(ctx, key, msgs, p.next)
}

// The two crash windows of a sync, with a worker dying in each:
//
//   - between publishing a page's changes and writing them: the changes are
//     announced, the mirror does not have them;
//   - between writing the pages and committing the sync token: the mirror
//     has them, the token is the old one.
//
// What recovers both: Pub/Sub redelivers the message the dead worker held.
// While the dead worker's lease lasts, a redelivery is answered "retry later"
// (it is the message whose session holds the lease); the first one after the
// lease ran out takes over and syncs from the last committed token. So the
// mirror and the feed are made good within LEASE_DURATION plus Pub/Sub's
// retry backoff. The first window re-announces what was announced (consumers
// deduplicate on eventId and etag); the second announces nothing again.
func TestCrashWindows(t *testing.T) {
	for _, tc := range []struct {
		name         string
		afterCommits int32 // 0: die right after the publish
		reannounced  bool
	}{
		{"killed between publish and write", 0, true},
		{"killed between write and token commit", 1, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			first := e.insert("before")
			e.mustNotify(e.syncer(nil), messages.StateSync)
			upd := e.update(first.Id, "changed")
			e.rec.Reset()

			k := &killAt{afterNth: tc.afterCommits}
			const lease = 2 * time.Second
			dying := e.syncer(func(o *syncer.Options) {
				o.Store = store.New(k.client(t, e))
				o.Publisher = killingPublisher{k: k, next: e.rec}
				o.LeaseDuration = lease
				o.Services = e.serviceWith(func(r *http.Request) {
					if strings.Contains(r.URL.Path, "/events") {
						k.armed.Store(true) // the round has listed: the windows are next
					}
				})
			})
			m := messages.Notification{CalendarKey: e.key, ResourceState: messages.StateExists, ReceivedAt: time.Now().UTC(), MessageID: "msg-1"}
			go func() { _ = dying.HandleNotification(e.ctx, m) }() // it never gets anywhere after the kill
			waitFor(t, func() bool { return k.g.isClosed() })
			killed := time.Now()
			if tc.afterCommits > 0 {
				if got, _ := e.st.GetEvents(e.ctx, e.key, []string{first.Id}); got[first.Id].Etag != upd.Etag {
					t.Fatalf("the write did not land before the kill: %+v", got)
				}
			} else if n := len(e.rec.Changes()); n != 1 {
				t.Fatalf("%d changes published before the kill, want 1", n)
			}

			// Pub/Sub redelivers the dead worker's message to another worker.
			other := e.syncer(nil)
			retries := 0
			for {
				err := other.HandleNotification(e.ctx, m)
				if err == nil {
					break
				}
				if !errors.Is(err, syncer.ErrRetryLater) {
					t.Fatalf("redelivery: %v", err)
				}
				retries++
				time.Sleep(200 * time.Millisecond)
			}
			recovered := time.Since(killed)
			t.Logf("recovered %s after the kill (the redelivery waited for the lease), %d redeliveries answered retry-later", recovered.Round(10*time.Millisecond), retries)
			if recovered < lease/2 || recovered > lease+3*time.Second {
				t.Errorf("recovery took %s after %d retries; want once the lease (%s) ran out, and soon after", recovered, retries, lease)
			}
			e.assertMirror()
			announced := 0
			for _, c := range e.rec.Changes() {
				if c.EventID == first.Id && c.Etag == upd.Etag {
					announced++
				}
			}
			if want := map[bool]int{true: 2, false: 1}[tc.reannounced]; announced != want {
				t.Errorf("the update was announced %d times, want %d", announced, want)
			}
			if c := e.calendar(); c.SyncToken == "" || c.LeaseOwner != "" || c.EventCount != 1 {
				t.Errorf("calendar after recovery: %+v", c)
			}
		})
	}
}
