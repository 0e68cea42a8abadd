package syncer_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"cloud.google.com/go/firestore/apiv1/firestorepb"
	"google.golang.org/api/calendar/v3"
	"google.golang.org/grpc"

	"github.com/calsync/calsync/shared/messages"
	"github.com/calsync/calsync/shared/store"
	"github.com/calsync/calsync/shared/syncer"
	"github.com/calsync/calsync/shared/testing/faultproxy"
	"github.com/calsync/calsync/shared/testing/testenv"
)

// opCounter counts what a Firestore client asks of the server.
type opCounter struct {
	rpcs, reads, writes atomic.Int64
}

func (c *opCounter) around(_ context.Context, _ string, req any, call func() error) error {
	c.rpcs.Add(1)
	if r, ok := req.(*firestorepb.CommitRequest); ok {
		c.writes.Add(int64(len(r.Writes)))
	}
	return call()
}

// stream counts the documents a read stream returns (billed reads).
func (c *opCounter) stream(_ string, s grpc.ClientStream) grpc.ClientStream {
	return countingStream{ClientStream: s, c: c}
}

type countingStream struct {
	grpc.ClientStream
	c *opCounter
}

func (s countingStream) RecvMsg(m any) error {
	err := s.ClientStream.RecvMsg(m)
	if err == nil {
		switch r := m.(type) {
		case *firestorepb.BatchGetDocumentsResponse:
			s.c.reads.Add(1) // found or missing: billed either way
		case *firestorepb.RunQueryResponse:
			if r.Document != nil {
				s.c.reads.Add(1)
			}
		}
	}
	return err
}

func (c *opCounter) reset() (rpcs, reads, writes int64) {
	return c.rpcs.Swap(0), c.reads.Swap(0), c.writes.Swap(0)
}

// BenchmarkFirestoreOps: what fencing and change diffs cost in Firestore
// operations. A 1,000-event calendar; 40 notifications each after 10 changed
// events, then 40 notifications with nothing changed; per notification and
// per changed event: RPCs, document reads and writes (each fenced batch
// carries one more: the fence), with fencing and diffs (calsync), without
// fencing (store.Unfenced), and without diffs (Options.NoDiffs; benchmarks
// only): the diffs read the documents GetAll reads anyway, so nodiffs reads
// exactly as many. faults1pct is calsync behind the fault proxy, 1% of calls
// refused before the service and 1% of commits applied with their answer
// lost (each attempt counted; notifications redelivered until acknowledged):
// what resolving unknown outcomes costs.
//
//	go test -run '^$' -bench FirestoreOps -benchtime 1x ./shared/syncer/
func BenchmarkFirestoreOps(b *testing.B) {
	const rounds, perRound = 40, 10
	for i := 0; i < b.N; i++ {
		for _, v := range []struct {
			name            string
			fenced, noDiffs bool
			faults          float64
		}{{"fenced", true, false, 0}, {"unfenced", false, false, 0}, {"nodiffs", true, true, 0}, {"faults1pct", true, false, 0.01}} {
			fenced := v.fenced
			e := newEnv(b)
			e.seed(1000)
			c := &opCounter{}
			host := testenv.Firestore(b)
			if v.faults > 0 {
				host = faultProxy(b, faultproxy.Options{Seed: 1, Rates: faultproxy.Rates{Before: v.faults, Lost: v.faults}}).Addr()
			}
			st := store.New(interceptedAt(b, e.ctx, host, e.project, c.around, c.stream))
			st.Unfenced = !fenced
			s := e.syncer(func(o *syncer.Options) {
				o.Store = st
				o.RerunInterval = time.Millisecond
				o.QuietPeriod = time.Microsecond
				o.NoDiffs = v.noDiffs
			})
			e.mustNotify(s, messages.StateSync)
			ids := e.eventIDs(rounds * perRound)
			c.reset()
			for r := range rounds {
				for _, id := range ids[r*perRound : (r+1)*perRound] {
					e.update(id, "changed")
				}
				e.deliver(s, messages.StateExists)
			}
			rpcs, reads, writes := c.reset()
			for range rounds {
				e.deliver(s, messages.StateReconcile)
			}
			idleRPCs, idleReads, idleWrites := c.reset()
			name := v.name
			b.ReportMetric(float64(rpcs)/rounds, name+"_rpcs/notification")
			b.ReportMetric(float64(reads)/rounds, name+"_docreads/notification")
			b.ReportMetric(float64(writes)/rounds, name+"_docwrites/notification")
			b.ReportMetric(float64(reads)/(rounds*perRound), name+"_docreads/change")
			b.ReportMetric(float64(writes)/(rounds*perRound), name+"_docwrites/change")
			b.ReportMetric(float64(idleRPCs)/rounds, name+"_idle_rpcs/notification")
			b.ReportMetric(float64(idleReads)/rounds, name+"_idle_docreads/notification")
			b.ReportMetric(float64(idleWrites)/rounds, name+"_idle_docwrites/notification")
		}
	}
	b.ReportMetric(0, "ns/op")
}

// eventIDs lists n event ids of the calendar.
func (e *env) eventIDs(n int) []string {
	var ids []string
	_ = e.svc.Events.List(e.calID).MaxResults(2500).Pages(e.ctx, func(p *calendar.Events) error {
		for _, ev := range p.Items {
			if len(ids) < n {
				ids = append(ids, ev.Id)
			}
		}
		return nil
	})
	return ids
}
