package stack

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"cloud.google.com/go/pubsub/v2"

	"github.com/calsync/calsync/shared/pubsubx"
)

// BridgeOptions tune how notifications reach SyncWorker.
type BridgeOptions struct {
	// Concurrency is how many messages are delivered at once, like concurrent
	// function instances (default 8).
	Concurrency int
	// Timeout bounds one delivery, like the function's timeout (default 540s).
	Timeout time.Duration
	// RetryDelay is how long a failed message waits before it is nacked and so
	// redelivered: the push subscription's retry policy backs off from 10s;
	// locally shorter (default 1s).
	RetryDelay time.Duration
}

// BridgeFaults make the bridge misbehave the ways Pub/Sub and Cloud Run can.
type BridgeFaults struct {
	// NackProbability: the message is nacked without being delivered (redelivery).
	NackProbability float64 `json:"nackProbability,omitempty"`
	// DuplicateProbability: the message is delivered twice at once.
	DuplicateProbability float64 `json:"duplicateProbability,omitempty"`
	// KillProbability: the delivery's request is cancelled after a random time
	// below KillAfter (the instance died mid-sync); the message is redelivered.
	KillProbability float64       `json:"killProbability,omitempty"`
	KillAfter       time.Duration `json:"killAfter,omitempty"`
	// Seed seeds the choices (0: random).
	Seed uint64 `json:"seed,omitempty"`
}

// BridgeStats counts the bridge's work.
type BridgeStats struct {
	Received   int64 `json:"received"`   // messages pulled (redeliveries included)
	Delivered  int64 `json:"delivered"`  // POSTs to SyncWorker
	Acked      int64 `json:"acked"`      // 2xx answers
	Failed     int64 `json:"failed"`     // other answers and transport errors
	Nacked     int64 `json:"nacked"`     // nacks (failures and injected)
	Killed     int64 `json:"killed"`     // deliveries cancelled by fault injection
	Duplicated int64 `json:"duplicated"` // extra deliveries by fault injection
	InFlight   int64 `json:"inFlight"`   // messages being handled now
}

// Bridge pulls the notifications subscription and POSTs each message to
// SyncWorker in Pub/Sub's push format, as the push subscription of
// terraform/pubsub.tf does: acked on 2xx, nacked (after RetryDelay)
// otherwise, so it is redelivered. It stands in for a push subscription
// because it can inject faults; the Pub/Sub emulator's own push sends
// neither deliveryAttempt nor orderingKey.
type Bridge struct {
	s    *Stack
	opts BridgeOptions
	http *http.Client

	mu       sync.Mutex
	faults   BridgeFaults
	rng      *mrand.Rand
	flying   map[*pubsub.Message]*Flight
	attempts map[string]int // message id -> deliveries so far, until acked

	received, delivered, acked, failed, nacked, killed, duplicated, inFlight atomic.Int64
	lastActivity                                                             atomic.Int64 // unix nanos
	lastError                                                                atomic.Value // string
}

func newBridge(s *Stack, opts BridgeOptions) *Bridge {
	if opts.Concurrency <= 0 {
		opts.Concurrency = 8
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 540 * time.Second
	}
	if opts.RetryDelay <= 0 {
		opts.RetryDelay = time.Second
	}
	b := &Bridge{s: s, opts: opts, http: &http.Client{}, rng: mrand.New(mrand.NewPCG(mrand.Uint64(), 1))}
	b.lastActivity.Store(time.Now().UnixNano())
	return b
}

// SetFaults replaces the fault settings (the zero value turns them off).
func (b *Bridge) SetFaults(f BridgeFaults) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.faults = f
	if f.Seed != 0 {
		b.rng = mrand.New(mrand.NewPCG(f.Seed, f.Seed^0x5bd1e995))
	}
}

// Stats returns the counters.
func (b *Bridge) Stats() BridgeStats {
	return BridgeStats{Received: b.received.Load(), Delivered: b.delivered.Load(), Acked: b.acked.Load(),
		Failed: b.failed.Load(), Nacked: b.nacked.Load(), Killed: b.killed.Load(),
		Duplicated: b.duplicated.Load(), InFlight: b.inFlight.Load()}
}

// LastActivity is when a message was last received or finished.
func (b *Bridge) LastActivity() time.Time { return time.Unix(0, b.lastActivity.Load()) }

// LastError is the last failed delivery's status or error ("" if none).
func (b *Bridge) LastError() string {
	v, _ := b.lastError.Load().(string)
	return v
}

// Flight is a message being handled: where it is and since when.
type Flight struct {
	MessageID string    `json:"messageId"`
	Stage     string    `json:"stage"`
	Since     time.Time `json:"since"`
}

// InFlightDetails lists the messages being handled now.
func (b *Bridge) InFlightDetails() []Flight {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]Flight, 0, len(b.flying))
	for _, f := range b.flying {
		out = append(out, *f)
	}
	return out
}

func (b *Bridge) stage(m *pubsub.Message, stage string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if stage == "" {
		delete(b.flying, m)
		return
	}
	if b.flying == nil {
		b.flying = map[*pubsub.Message]*Flight{}
	}
	f := b.flying[m]
	if f == nil {
		f = &Flight{MessageID: m.ID}
		b.flying[m] = f
	}
	f.Stage, f.Since = stage, time.Now()
}

type decision struct{ nack, dup, kill bool }

func (b *Bridge) decide() (decision, time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	f := b.faults
	var d decision
	d.nack = f.NackProbability > 0 && b.rng.Float64() < f.NackProbability
	d.dup = f.DuplicateProbability > 0 && b.rng.Float64() < f.DuplicateProbability
	d.kill = f.KillProbability > 0 && f.KillAfter > 0 && b.rng.Float64() < f.KillProbability
	var after time.Duration
	if d.kill {
		after = time.Duration(b.rng.Int64N(int64(f.KillAfter)))
	}
	return d, after
}

func (b *Bridge) run(ctx context.Context) {
	sub := b.s.PubSub.Subscriber(b.s.Subscription)
	sub.ReceiveSettings.MaxOutstandingMessages = b.opts.Concurrency
	sub.ReceiveSettings.NumGoroutines = 1
	for ctx.Err() == nil {
		err := sub.Receive(ctx, func(ctx context.Context, m *pubsub.Message) { b.handle(ctx, m) })
		if ctx.Err() != nil {
			return
		}
		b.s.log.Warn("bridge: receive ended; restarting", "error", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
}

func (b *Bridge) touch() { b.lastActivity.Store(time.Now().UnixNano()) }

func (b *Bridge) handle(ctx context.Context, m *pubsub.Message) {
	b.received.Add(1)
	b.inFlight.Add(1)
	b.touch()
	b.stage(m, "received")
	defer func() { b.stage(m, ""); b.inFlight.Add(-1); b.touch() }()

	attempt := b.attempt(m) // an injected nack counts, as Pub/Sub counts a failed delivery
	d, killAfter := b.decide()
	if d.nack {
		b.nack(ctx, m, "injected nack")
		return
	}
	body, err := b.push(m, attempt)
	if err != nil { // cannot happen with well-formed messages; never loop on it
		b.s.log.Error("bridge: cannot encode message; acked", "error", err)
		m.Ack()
		return
	}
	if d.dup {
		b.duplicated.Add(1)
		go func() { _, _ = b.post(context.WithoutCancel(ctx), m, body, 0) }()
	}
	var cut time.Duration
	if d.kill {
		cut = killAfter
	}
	b.stage(m, "posting to SyncWorker")
	status, err := b.post(ctx, m, body, cut)
	if err == nil && status >= 200 && status < 300 {
		b.stage(m, "acking")
		b.acked.Add(1)
		b.mu.Lock()
		delete(b.attempts, m.ID)
		b.mu.Unlock()
		m.Ack()
		return
	}
	b.failed.Add(1)
	reason := fmt.Sprintf("status %d", status)
	if err != nil {
		reason = err.Error()
	}
	b.lastError.Store(reason)
	b.nack(ctx, m, reason)
}

func (b *Bridge) nack(ctx context.Context, m *pubsub.Message, reason string) {
	b.s.log.Debug("bridge: nack", "messageId", m.ID, "reason", reason)
	b.stage(m, "waiting to nack: "+reason)
	select {
	case <-ctx.Done():
	case <-time.After(b.opts.RetryDelay):
	}
	b.nacked.Add(1)
	m.Nack()
}

// post delivers one push request; cut > 0 cancels the request after cut.
func (b *Bridge) post(ctx context.Context, m *pubsub.Message, body []byte, cut time.Duration) (int, error) {
	b.delivered.Add(1)
	timeout := b.opts.Timeout
	killed := false
	if cut > 0 {
		timeout = cut
		killed = true
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, b.s.SyncWorkerURL, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	h := req.Header
	h.Set("Content-Type", "application/json")
	h.Set("User-Agent", "APIs-Google; (+https://developers.google.com/webmasters/APIs-Google.html)")
	resp, err := b.http.Do(req)
	if err != nil {
		if killed && ctx.Err() != nil {
			b.killed.Add(1)
			return 0, fmt.Errorf("killed after %s (fault injection)", cut.Round(time.Millisecond))
		}
		return 0, err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	resp.Body.Close()
	return resp.StatusCode, nil
}

// attempt counts a delivery of m: Pub/Sub's own count when the
// subscription has a dead-letter policy, else the bridge's (as production,
// whose subscription has one, always sends deliveryAttempt).
func (b *Bridge) attempt(m *pubsub.Message) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.attempts == nil {
		b.attempts = map[string]int{}
	}
	b.attempts[m.ID]++
	if m.DeliveryAttempt != nil {
		return *m.DeliveryAttempt
	}
	return b.attempts[m.ID]
}

// push is the body of Pub/Sub's push request for m (both spellings of the
// id and time, as Google sends them).
func (b *Bridge) push(m *pubsub.Message, attempt int) ([]byte, error) {
	publish := m.PublishTime
	if publish.IsZero() {
		publish = time.Now()
	}
	attrs := m.Attributes
	if attrs == nil {
		attrs = map[string]string{}
	}
	msg := map[string]any{
		"data":         base64.StdEncoding.EncodeToString(m.Data),
		"attributes":   attrs,
		"messageId":    m.ID,
		"message_id":   m.ID,
		"publishTime":  publish.UTC().Format(time.RFC3339Nano),
		"publish_time": publish.UTC().Format(time.RFC3339Nano),
	}
	if m.OrderingKey != "" {
		msg["orderingKey"] = m.OrderingKey
	}
	return json.Marshal(map[string]any{
		"message":         msg,
		"subscription":    pubsubx.SubscriptionName(b.s.ProjectID, b.s.Subscription),
		"deliveryAttempt": attempt,
	})
}
