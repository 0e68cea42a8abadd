package syncer_test

import (
	"testing"
	"time"

	"github.com/calsync/calsync/shared/messages"
	"github.com/calsync/calsync/shared/syncer"
)

// BenchmarkIdleSync: an incremental sync of a 1,000-event calendar with
// nothing new: one events.list call and zero event writes per sync.
//
//	go test -run '^$' -bench IdleSync -benchtime 20x ./shared/syncer/
func BenchmarkIdleSync(b *testing.B) {
	e := newEnv(b)
	for i := 0; i < 1000; i++ {
		e.insert("e")
	}
	// No pacing: measure the sync itself.
	s := e.syncer(func(o *syncer.Options) { o.RerunInterval = time.Millisecond; o.QuietPeriod = time.Microsecond })
	e.mustNotify(s, messages.StateSync)
	lists, before := e.lists(), s.Stats()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		// Each notification arrives after the previous sync started: not covered.
		if err := s.HandleNotification(e.ctx, messages.Notification{CalendarKey: e.key, ResourceState: messages.StateReconcile, ReceivedAt: time.Now().UTC()}); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	after := s.Stats()
	b.ReportMetric(float64(e.lists()-lists)/float64(b.N), "lists/sync")
	b.ReportMetric(float64(after.EventWrites+after.EventDels-before.EventWrites-before.EventDels)/float64(b.N), "writes/sync")
	b.ReportMetric(float64(after.Changes-before.Changes)/float64(b.N), "changes/sync")
}
