package syncer_test

import (
	"context"
	"testing"
	"time"

	"github.com/calsync/calsync/shared/messages"
	"github.com/calsync/calsync/shared/syncer"
)

// killAfterPublish passes the change messages on, then ends the sync's
// context: the function was killed after publishing, before writing.
type killAfterPublish struct {
	next   syncer.Publisher
	cancel context.CancelFunc
}

func (k killAfterPublish) PublishAll(ctx context.Context, key string, msgs []syncer.Message) error {
	err := k.next.PublishAll(ctx, key, msgs)
	k.cancel()
	return err
}

// TestNoGhostAfterKillBetweenPublishAndWrite: a sync announces "created" and
// dies before writing; the event is deleted before the next sync. The next
// (incremental) sync must announce "deleted" although the mirror never had the
// event, or consumers keep a ghost. Found by the chaos test.
func TestNoGhostAfterKillBetweenPublishAndWrite(t *testing.T) {
	e := newEnv(t)
	e.mustNotify(e.syncer(nil), messages.StateSync) // first full sync: token stored

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
	e.mustNotify(e.syncer(nil), messages.StateExists)
	e.wantCounts(1, 0, 1)
	e.assertMirror() // also: replaying the feed gives the mirror (no ghost)
}
