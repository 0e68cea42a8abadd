package syncer_test

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/calsync/calsync/shared/logging"
	"github.com/calsync/calsync/shared/messages"
	"github.com/calsync/calsync/shared/store"
	"github.com/calsync/calsync/shared/syncer"
	"github.com/calsync/calsync/shared/testing/faultproxy"
	"github.com/calsync/calsync/shared/testing/syncertest"
	"github.com/calsync/calsync/shared/testing/testenv"
	"github.com/calsync/calsync/shared/testing/testlog"
)

// Contention (issue 21, item 7): many notifications for one calendar at once
// across several SyncWorker instances, each with its own Firestore client
// through a fault proxy. The emulator locks pessimistically, so concurrent
// admissions and round transactions on one calendar document answer ABORTED
// or "Transaction lock timeout"; the proxy adds UNAVAILABLE before the
// service. Pub/Sub is played by pushQueue: at least once, some messages
// twice at once, a failed delivery redelivered after a backoff, and
// dead-lettered after maxDeliveries as a subscription's dead-letter policy
// would.

const (
	contentionInstances   = 6
	maxDeliveries         = 10 // dead_letter_max_delivery_attempts (terraform/variables.tf)
	contentionPerInstance = 3  // concurrent requests per instance (gen2 concurrency)
)

// pushQueue plays a push subscription for the workers.
type pushQueue struct {
	mu       sync.Mutex
	queue    []pushed
	inflight int
	closed   bool // no more pushes from the test (requests still arrive)

	requests                                     int // published by the workers
	deliveries, redeliveries, acked, maxAttempts int
	worst                                        pushed // the message delivered most often
	dead                                         []messages.Notification
}

type pushed struct {
	n        messages.Notification
	attempts int
	errs     []string // the answers of its failed deliveries
	due      time.Time
}

func (q *pushQueue) push(n messages.Notification) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.queue = append(q.queue, pushed{n: n, due: time.Now()})
}

// next is a message due now, or false when nothing is left at all.
func (q *pushQueue) next(reqs *requestLog) (pushed, bool) {
	for {
		if n, ok := reqs.take(); ok { // a sync request or follow-up a worker published
			q.mu.Lock()
			q.requests++
			n.MessageID = fmt.Sprintf("r-%d", q.requests) // as Pub/Sub names every message
			q.mu.Unlock()
			q.push(n)
		}
		q.mu.Lock()
		now := time.Now()
		for i, p := range q.queue {
			if !p.due.After(now) {
				q.queue = append(q.queue[:i:i], q.queue[i+1:]...)
				q.inflight++
				q.deliveries++
				q.mu.Unlock()
				return p, true
			}
		}
		done := q.closed && len(q.queue) == 0 && q.inflight == 0 && reqs.count() == 0
		q.mu.Unlock()
		if done {
			return pushed{}, false
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// answer records a delivery's answer: an error is redelivered with
// Pub/Sub's backoff until maxDeliveries, then dead-lettered.
func (q *pushQueue) answer(p pushed, err error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.inflight--
	p.attempts++
	if err != nil {
		p.errs = append(p.errs, err.Error())
	}
	if p.attempts > q.maxAttempts {
		q.maxAttempts, q.worst = p.attempts, p
	}
	switch {
	case err == nil:
		q.acked++
	case p.attempts >= maxDeliveries:
		q.dead = append(q.dead, p.n)
	default:
		q.redeliveries++
		p.due = time.Now().Add(min(time.Duration(p.attempts)*100*time.Millisecond, time.Second))
		q.queue = append(q.queue, p)
	}
}

// grpcCodes counts what the workers' Firestore clients were answered.
type grpcCodes struct {
	mu           sync.Mutex
	byCode       map[codes.Code]int
	lockTimeouts int
}

func (c *grpcCodes) see(err error) {
	if err == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.byCode[status.Code(err)]++
	if strings.Contains(err.Error(), "lock timeout") {
		c.lockTimeouts++
	}
}

func (c *grpcCodes) get(code codes.Code) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.byCode[code]
}

// TestContentionConverges: 6 instances, 3 concurrent deliveries each, 80
// notifications in bursts of 20 (a fifth of them delivered twice at once)
// for one calendar that changes before each push, with UNAVAILABLE injected
// before Firestore. Contention makes the emulator answer ABORTED ("Transaction
// lock timeout"). Every notification ends acknowledged within maxDeliveries
// (none dead-lettered), and the mirror, the change feed and eventCount equal
// the calendar, the calendar neither dirty nor leased. Twice: with the
// engine's in-process retries, and with almost none, so that errors reach
// Pub/Sub and only redelivery and Firestore's records cover them.
func TestContentionConverges(t *testing.T) {
	for _, c := range []struct {
		name   string
		rate   float64 // UNAVAILABLE before Firestore
		budget time.Duration
	}{
		{"in-process retries", 0.1, 2 * time.Second},
		{"errors reach Pub/Sub", 0.2, time.Millisecond},
	} {
		t.Run(c.name, func(t *testing.T) { contention(t, c.rate, c.budget) })
	}
}

func contention(t *testing.T, rate float64, budget time.Duration) {
	e := newEnv(t)
	var ids []string
	for i := range 20 {
		ids = append(ids, e.insert(fmt.Sprintf("seed %d", i)).Id)
	}
	proxy, err := faultproxy.Start("127.0.0.1:0", testenv.Firestore(t), faultproxy.Options{
		Seed: 21, Rates: faultproxy.Rates{Before: rate}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(proxy.Close)

	seen := &grpcCodes{byCode: map[codes.Code]int{}}
	reqs := &requestLog{}
	var logs testlog.Buffer
	const instances = contentionInstances
	workers := make([]*syncer.Syncer, instances)
	for i := range workers {
		fs := interceptedAt(t, e.ctx, proxy.Addr(), e.project, func(_ context.Context, _ string, _ any, call func() error) error {
			err := call()
			seen.see(err)
			return err
		}, nil)
		workers[i] = e.syncer(func(o *syncer.Options) {
			o.Store = store.New(fs)
			o.Instance = fmt.Sprintf("w%d", i)
			o.Requests = reqs
			o.FollowUpDelay = 200 * time.Millisecond
			o.LeaseDuration = 5 * time.Second
			o.RetryBudget = budget
			o.Logger = logging.New(&logs, slog.LevelInfo)
		})
	}

	q := &pushQueue{}
	var wg sync.WaitGroup
	for i := range instances * contentionPerInstance {
		w := workers[i%instances]
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				p, ok := q.next(reqs)
				if !ok {
					return
				}
				// The push's ack deadline bounds the invocation.
				ctx, cancel := context.WithTimeout(e.ctx, 60*time.Second)
				err := w.HandleNotification(ctx, p.n)
				cancel()
				q.answer(p, err)
			}
		}()
	}

	// Google's side: the calendar changes, a push follows each change.
	rng := rand.New(rand.NewPCG(21, 7))
	const pushes = 80
	for i := range pushes {
		switch r := rng.IntN(4); {
		case i == 0:
		case r == 0 && len(ids) > 5:
			k := rng.IntN(len(ids))
			e.remove(ids[k])
			ids = append(ids[:k], ids[k+1:]...)
		case r == 1:
			ids = append(ids, e.insert(fmt.Sprintf("new %d", i)).Id)
		default:
			e.update(ids[rng.IntN(len(ids))], fmt.Sprintf("updated %d", i))
		}
		state := messages.StateExists
		if i == 0 {
			state = messages.StateSync
		}
		n := messages.Notification{CalendarKey: e.key, ChannelID: "ch-contention", ResourceState: state,
			MessageNumber: int64(i + 1), ReceivedAt: time.Now().UTC(), MessageID: fmt.Sprintf("m-%d", i+1)}
		q.push(n)
		if i%5 == 0 {
			q.push(n) // delivered twice at once
		}
		if i%20 == 19 { // bursts of 20 pushes at once
			time.Sleep(time.Duration(100+rng.IntN(300)) * time.Millisecond)
		}
	}
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	wg.Wait()

	counts := proxy.Counts()
	calls := 0
	for _, n := range counts.Calls {
		calls += n
	}
	t.Logf("Firestore calls %d by method %v; injected %v", calls, counts.Calls, counts.Faults)
	t.Logf("deliveries %d (requests %d, redeliveries %d, acked %d, most attempts of one message %d), dead-lettered %d; Firestore answered ABORTED %d, lock timeouts %d, UNAVAILABLE %d (injected %d), DEADLINE_EXCEEDED %d",
		q.deliveries, q.requests, q.redeliveries, q.acked, q.maxAttempts, len(q.dead),
		seen.get(codes.Aborted), seen.lockTimeouts, seen.get(codes.Unavailable), counts.Total(faultproxy.Unavailable), seen.get(codes.DeadlineExceeded))
	if q.maxAttempts > 1 {
		t.Logf("the message delivered most often, %s (%s), answered: %s", q.worst.n.MessageID, q.worst.n.ResourceState, strings.Join(q.worst.errs, "; "))
	}
	events := map[string]int{}
	for _, l := range logs.Lines() {
		if ev, ok := l[logging.KeyEvent].(string); ok && l["severity"] != "INFO" {
			events[ev]++
		}
	}
	t.Logf("warnings and errors logged, by event: %v", events)
	if len(q.dead) > 0 {
		t.Errorf("%d notifications dead-lettered after %d deliveries: %+v\n%s", len(q.dead), maxDeliveries, q.dead, logs.String())
	}
	if counts.Total(faultproxy.Unavailable) == 0 {
		t.Error("no UNAVAILABLE injected: the faults did not reach the workers")
	}
	if seen.get(codes.Aborted)+seen.lockTimeouts == 0 {
		t.Error("no ABORTED nor lock timeout: the workers did not contend")
	}
	e.assertMirror()
	mirror, err := syncertest.Mirror(e.ctx, e.st, e.key)
	if err != nil {
		t.Fatal(err)
	}
	c := e.calendar()
	if c.EventCount != int64(len(mirror)) || c.Dirty || c.LeaseOwner != "" || c.SyncToken == "" {
		t.Errorf("calendar after the storm: eventCount %d for %d documents, dirty %v, lease owner %q, token %q\n%+v\n%s",
			c.EventCount, len(mirror), c.Dirty, c.LeaseOwner, c.SyncToken, c, logs.String())
	}
}
