package syncer_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/calsync/calsync/shared/messages"
	"github.com/calsync/calsync/shared/pubsubx"
	"github.com/calsync/calsync/shared/syncer"
)

// killAfterPublish passes the change messages on, then ends the sync's
// context: the function was killed after publishing, before writing.
type killAfterPublish struct {
	next   syncer.Publisher
	cancel context.CancelFunc
}

func (k killAfterPublish) PublishAll(ctx context.Context, key string, msgs []pubsubx.Message) error {
	err := k.next.PublishAll(ctx, key, msgs)
	k.cancel()
	return err
}

// TestNoGhostAfterKillBetweenPublishAndWrite: a sync announces "created" and
// dies before writing; the event is deleted before the next sync. The next
// sync must announce "deleted" although the mirror never had the event, or
// consumers keep a ghost: whether it is incremental, or a full resync because
// the token died meanwhile (410). Found by the chaos test.
func TestNoGhostAfterKillBetweenPublishAndWrite(t *testing.T) {
	for _, tokenDies := range []bool{false, true} {
		t.Run(fmt.Sprintf("410=%v", tokenDies), func(t *testing.T) {
			e := newEnv(t)
			e.mustNotify(e.syncer(nil), messages.StateSync) // first full sync: token stored
			old := e.insert("deleted before the kill")
			e.mustNotify(e.syncer(nil), messages.StateExists)
			e.remove(old.Id)
			e.mustNotify(e.syncer(nil), messages.StateExists)
			e.rec.Reset()

			ev := e.insert("short-lived")
			ctx, cancel := context.WithCancel(e.ctx)
			killed := e.syncer(func(o *syncer.Options) {
				o.Publisher = killAfterPublish{next: e.rec, cancel: cancel}
				o.RetryBudget = 200 * time.Millisecond
			})
			err := killed.HandleNotification(ctx, messages.Notification{CalendarKey: e.key, ResourceState: messages.StateExists, ReceivedAt: time.Now().UTC()})
			if err == nil {
				t.Fatal("the killed sync reported success")
			}
			e.wantCounts(1, 0, 0) // "created" went out, the document did not

			e.remove(ev.Id)
			if tokenDies {
				if err := e.srv.InvalidateSyncTokens(e.calID); err != nil {
					t.Fatal(err)
				}
			}
			e.mustNotify(e.syncer(nil), messages.StateExists)
			// The ghost's deletion, and not that of the event deleted long before.
			e.wantCounts(1, 0, 1)
			if got := e.rec.Changes()[1]; got.EventID != ev.Id || got.Change != messages.ChangeDeleted {
				t.Fatalf("second change %+v, want the deletion of %s", got, ev.Id)
			}
			e.assertMirror() // also: replaying the feed gives the mirror (no ghost)
		})
	}
}
