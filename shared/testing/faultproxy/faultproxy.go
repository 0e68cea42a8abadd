// Package faultproxy is a gRPC pass-through between a client and the
// Firestore or Pub/Sub emulator that injects the faults Google Cloud
// produces in production: calls refused before the service, writes applied
// by the service whose answer is lost, and latency spikes. Every method is
// forwarded as raw bytes (grpc.UnknownServiceHandler), unary and streaming
// alike, so the proxy needs no knowledge of the APIs beyond which methods
// write.
package faultproxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// Kind is a kind of injected fault.
type Kind string

// Fault kinds.
const (
	// Unavailable: answered UNAVAILABLE without reaching the service.
	Unavailable Kind = "unavailable"
	// LostUnavailable: a write applied by the service, its answer replaced
	// by UNAVAILABLE (the client libraries retry it: the retry meets the
	// first attempt).
	LostUnavailable Kind = "lost_unavailable"
	// LostDeadline: a write applied by the service, its answer replaced by
	// DEADLINE_EXCEEDED (Firestore's client does not retry it).
	LostDeadline Kind = "lost_deadline"
	// Latency: the request waits 0.2-2 s before it is forwarded (a write
	// goes on even if its caller gives up meanwhile: see LateApplied).
	Latency Kind = "latency"
	// LateAnswer: a write applied at once, its answer 0.2-2 s late.
	LateAnswer Kind = "late_answer"
	// Contention: a Firestore Commit refused with ABORTED before the
	// service, as Firestore answers writes that wait too long for a
	// contended document's lock ("Too much contention"): nothing applied.
	Contention Kind = "contention"
	// LateApplied is not injected but seen: a write that reached the
	// service after its caller had given up on it.
	LateApplied Kind = "late_applied"
)

// Methods whose answer can be lost after the service applied them: the
// writes. A transaction ends with Commit too.
const (
	FirestoreCommit     = "/google.firestore.v1.Firestore/Commit"
	FirestoreBatchWrite = "/google.firestore.v1.Firestore/BatchWrite"
	PubSubPublish       = "/google.pubsub.v1.Publisher/Publish"
)

var writeMethods = []string{FirestoreCommit, FirestoreBatchWrite, PubSubPublish}

// IsWrite reports whether the answer of method can be lost (LostUnavailable,
// LostDeadline).
func IsWrite(method string) bool { return slices.Contains(writeMethods, method) }

// Rates are the shares (0 to 1) of calls that get each fault.
type Rates struct {
	Before float64 // every method: UNAVAILABLE before the service
	Lost   float64 // write methods: applied, answer lost (half UNAVAILABLE, half DEADLINE_EXCEEDED)
	// Contention: Firestore Commit only: ABORTED before the service.
	Contention float64
	Latency    float64 // every method: 0.2-2 s late (on top of any other fault); half of the writes' spikes delay the answer instead
}

// Options configure a Proxy.
type Options struct {
	Rates Rates
	Seed  uint64 // the fault RNG's seed: the same seed gives the same draws
	// MinLatency and MaxLatency bound a latency spike (default 0.2 s and 2 s).
	MinLatency, MaxLatency time.Duration
}

// Snapshot is what the proxy has seen: calls per method and the faults it
// injected, by kind and method.
type Snapshot struct {
	Calls  map[string]int          `json:"calls"`
	Faults map[Kind]map[string]int `json:"faults"`
}

// Total is the number of faults of kind k, over all methods.
func (s Snapshot) Total(k Kind) int {
	n := 0
	for _, c := range s.Faults[k] {
		n += c
	}
	return n
}

// Proxy forwards every gRPC call to one upstream and injects faults.
type Proxy struct {
	conn *grpc.ClientConn
	srv  *grpc.Server
	lis  net.Listener
	done chan struct{}

	minLat, maxLat time.Duration

	mu     sync.Mutex
	rng    *rand.Rand
	rates  Rates
	next   map[string][]Kind          // FailNext queues, by full method
	late   map[string][]time.Duration // LandAfterDeadline queues, by full method
	calls  map[string]int
	faults map[Kind]map[string]int
}

// Start listens on listen (host:port; port 0 picks a free one) and forwards
// to upstream (the emulator's host:port).
func Start(listen, upstream string, o Options) (*Proxy, error) {
	conn, err := grpc.NewClient(upstream, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(math.MaxInt32), grpc.MaxCallSendMsgSize(math.MaxInt32)))
	if err != nil {
		return nil, fmt.Errorf("faultproxy: upstream %s: %w", upstream, err)
	}
	lis, err := net.Listen("tcp", listen)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("faultproxy: listen: %w", err)
	}
	p := &Proxy{
		conn: conn, lis: lis, done: make(chan struct{}),
		minLat: o.MinLatency, maxLat: o.MaxLatency,
		rng:   rand.New(rand.NewPCG(o.Seed, o.Seed^0x9e3779b97f4a7c15)),
		rates: o.Rates, next: map[string][]Kind{}, late: map[string][]time.Duration{},
		calls: map[string]int{}, faults: map[Kind]map[string]int{},
	}
	if p.minLat <= 0 {
		p.minLat = 200 * time.Millisecond
	}
	if p.maxLat < p.minLat {
		p.maxLat = max(2*time.Second, p.minLat)
	}
	p.srv = grpc.NewServer(grpc.UnknownServiceHandler(p.handle), grpc.ForceServerCodec(rawCodec{}),
		grpc.MaxRecvMsgSize(math.MaxInt32)) // Firestore batches may exceed gRPC's 4 MB default
	go func() { defer close(p.done); _ = p.srv.Serve(lis) }()
	return p, nil
}

// Addr is the proxy's host:port: what FIRESTORE_EMULATOR_HOST or
// PUBSUB_EMULATOR_HOST should name.
func (p *Proxy) Addr() string { return p.lis.Addr().String() }

// Close stops the proxy at once (open streams end) and its upstream
// connection.
func (p *Proxy) Close() {
	p.srv.Stop()
	<-p.done
	p.conn.Close()
}

// SetRates changes the fault rates from now on.
func (p *Proxy) SetRates(r Rates) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.rates = r
}

// FailNext makes the next n calls of method (its full name, such as
// FirestoreCommit) get fault k, whatever the rates (Latency and LateAnswer:
// MaxLatency). Lost kinds and LateAnswer apply to write methods only.
func (p *Proxy) FailNext(method string, n int, k Kind) {
	if k == LateApplied {
		panic("faultproxy: late_applied is seen, not injected: use Latency on a write")
	}
	if k == Contention && method != FirestoreCommit {
		panic("faultproxy: contention on " + method + ", which is not a Firestore Commit")
	}
	if (k == LostUnavailable || k == LostDeadline || k == LateAnswer) && !IsWrite(method) {
		panic("faultproxy: " + string(k) + " on " + method + ", which is not a write")
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for range n {
		p.next[method] = append(p.next[method], k)
	}
}

// LandAfterDeadline makes the next call of write method reach the service d
// after its caller's deadline (counted as Latency, then LateApplied): a
// write the caller gave up on that still lands, a known time later. The
// caller must set a deadline.
func (p *Proxy) LandAfterDeadline(method string, d time.Duration) {
	if !IsWrite(method) {
		panic("faultproxy: LandAfterDeadline on " + method + ", which is not a write")
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.late[method] = append(p.late[method], d)
}

// landLate pops a LandAfterDeadline of method, if one is queued.
func (p *Proxy) landLate(method string) (time.Duration, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	q := p.late[method]
	if len(q) == 0 {
		return 0, false
	}
	p.late[method] = q[1:]
	p.countLocked(Latency, method)
	return q[0], true
}

// Counts is a snapshot of the calls seen and the faults injected.
func (p *Proxy) Counts() Snapshot {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := Snapshot{Calls: map[string]int{}, Faults: map[Kind]map[string]int{}}
	for m, n := range p.calls {
		s.Calls[m] = n
	}
	for k, ms := range p.faults {
		s.Faults[k] = map[string]int{}
		for m, n := range ms {
			s.Faults[k][m] = n
		}
	}
	return s
}

// fault is what happens to one call.
type fault struct {
	kind   Kind          // Unavailable, Contention, LostUnavailable, LostDeadline or ""
	before time.Duration // the request is this late (Latency)
	after  time.Duration // writes: the answer is this late (LateAnswer)
}

// pick decides a call's fault: a queued FailNext first, else the rates.
func (p *Proxy) pick(method string) fault {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls[method]++
	var f fault
	if q := p.next[method]; len(q) > 0 {
		var k Kind
		k, p.next[method] = q[0], q[1:]
		switch k {
		case Latency:
			f.before = p.maxLat
		case LateAnswer:
			f.after = p.maxLat
		default:
			f.kind = k
		}
	} else {
		// Always the same draws per call, so a seed replays its faults
		// for the same sequence of calls.
		r, lat, half, span, side := p.rng.Float64(), p.rng.Float64(), p.rng.Float64(), p.rng.Float64(), p.rng.Float64()
		switch {
		case r < p.rates.Before:
			f.kind = Unavailable
		case IsWrite(method) && r < p.rates.Before+p.rates.Lost:
			f.kind = LostUnavailable
			if half < 0.5 {
				f.kind = LostDeadline
			}
		case method == FirestoreCommit && r < p.rates.Before+p.rates.Lost+p.rates.Contention:
			f.kind = Contention
		}
		if lat < p.rates.Latency {
			d := p.minLat + time.Duration(span*float64(p.maxLat-p.minLat))
			if IsWrite(method) && side < 0.5 && f.kind == "" {
				f.after = d
			} else {
				f.before = d
			}
		}
	}
	if f.before > 0 {
		p.countLocked(Latency, method)
	}
	if f.after > 0 {
		p.countLocked(LateAnswer, method)
	}
	if f.kind == Unavailable || f.kind == Contention {
		p.countLocked(f.kind, method) // lost answers are counted once the write applied
	}
	return f
}

func (p *Proxy) count(k Kind, method string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.countLocked(k, method)
}

func (p *Proxy) countLocked(k Kind, method string) {
	if p.faults[k] == nil {
		p.faults[k] = map[string]int{}
	}
	p.faults[k][method]++
}

// streamAll describes any call: the proxy does not know a method's shape and
// forwards messages both ways until either side ends.
var streamAll = &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}

func (p *Proxy) handle(_ any, ss grpc.ServerStream) error {
	method, ok := grpc.MethodFromServerStream(ss)
	if !ok {
		return status.Error(codes.Internal, "faultproxy: no method")
	}
	f := p.pick(method)
	if IsWrite(method) {
		return p.write(ss, method, f)
	}
	if err := sleep(ss.Context(), f.before); err != nil {
		return err
	}
	if f.kind == Unavailable {
		return errUnavailable
	}
	ctx, cancel := context.WithCancel(outgoing(ss.Context()))
	defer cancel()
	cs, err := p.conn.NewStream(ctx, streamAll, method, grpc.ForceCodec(rawCodec{}))
	if err != nil {
		return err
	}
	return pump(ss, cs, cancel)
}

var (
	errUnavailable = status.Error(codes.Unavailable, "faultproxy: injected: unavailable before the service")
	errContention  = status.Error(codes.Aborted, "faultproxy: injected: too much contention on these documents, nothing applied")
)

// sleep waits d unless ctx ends first.
func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	select {
	case <-time.After(d): // at most MaxLatency: the timer is not worth stopping
		return nil
	case <-ctx.Done():
		return status.FromContextError(ctx.Err()).Err()
	}
}

// writeTimeout bounds a write forwarded after its caller gave up.
const writeTimeout = 30 * time.Second

// write forwards a unary write. A write is in flight once sent: a late one
// reaches the service even if its caller gave up meanwhile (its DEADLINE
// EXCEEDED does not mean "not written"; counted as LateApplied). Then its
// answer may be lost or late.
func (p *Proxy) write(ss grpc.ServerStream, method string, f fault) error {
	var req frame
	if err := ss.RecvMsg(&req); err != nil {
		return err
	}
	if f.kind == Unavailable || f.kind == Contention {
		if err := sleep(ss.Context(), f.before); err != nil {
			return err
		}
		if f.kind == Contention {
			return errContention
		}
		return errUnavailable
	}
	caller := ss.Context()
	ctx, cancel := context.WithTimeout(context.WithoutCancel(outgoing(caller)), writeTimeout)
	defer cancel()
	if d, ok := p.landLate(method); ok {
		dl, has := caller.Deadline()
		if !has {
			return status.Error(codes.FailedPrecondition, "faultproxy: LandAfterDeadline on a call without a deadline")
		}
		f = fault{before: time.Until(dl) + d}
	}
	if f.before > 0 {
		time.Sleep(f.before)
	}
	gone := caller.Err() != nil
	cs, err := p.conn.NewStream(ctx, streamAll, method, grpc.ForceCodec(rawCodec{}))
	if err != nil {
		return err
	}
	if err := cs.SendMsg(&req); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	_ = cs.CloseSend()
	var resp frame
	if err := cs.RecvMsg(&resp); err != nil {
		return err // refused: nothing applied, nothing lost
	}
	if err := cs.RecvMsg(&frame{}); !errors.Is(err, io.EOF) {
		return err // not unary after all: report what the upstream said
	}
	if gone {
		p.count(LateApplied, method)
		return status.FromContextError(caller.Err()).Err()
	}
	switch f.kind {
	case LostDeadline:
		p.count(f.kind, method)
		return status.Error(codes.DeadlineExceeded, "faultproxy: injected: the write was applied, its answer lost")
	case LostUnavailable:
		p.count(f.kind, method)
		return status.Error(codes.Unavailable, "faultproxy: injected: the write was applied, its answer lost")
	}
	if err := sleep(caller, f.after); err != nil {
		return err
	}
	if md, err := cs.Header(); err == nil && len(md) > 0 {
		_ = ss.SendHeader(md)
	}
	ss.SetTrailer(cs.Trailer())
	return ss.SendMsg(&resp)
}

// outgoing carries the caller's metadata (authorization, routing headers) to
// the upstream, without the transport's own headers.
func outgoing(ctx context.Context) context.Context {
	md, _ := metadata.FromIncomingContext(ctx)
	md = md.Copy()
	for k := range md {
		if strings.HasPrefix(k, ":") || k == "content-type" || k == "user-agent" || k == "te" || strings.HasPrefix(k, "grpc-") {
			delete(md, k)
		}
	}
	return metadata.NewOutgoingContext(ctx, md)
}

// pump forwards messages both ways and ends with the upstream's status.
func pump(ss grpc.ServerStream, cs grpc.ClientStream, cancel context.CancelFunc) error {
	go func() {
		for {
			var f frame
			if err := ss.RecvMsg(&f); err != nil {
				if errors.Is(err, io.EOF) {
					_ = cs.CloseSend()
				} else {
					cancel() // the caller went away
				}
				return
			}
			if err := cs.SendMsg(&f); err != nil {
				return // the upstream ended; RecvMsg below reports how
			}
		}
	}()
	headerSent := false
	for {
		var f frame
		err := cs.RecvMsg(&f)
		if !headerSent {
			if md, herr := cs.Header(); herr == nil && len(md) > 0 {
				_ = ss.SendHeader(md)
			}
			headerSent = true
		}
		if err != nil {
			ss.SetTrailer(cs.Trailer())
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		if err := ss.SendMsg(&f); err != nil {
			return err
		}
	}
}

// frame is one message as bytes, never decoded.
type frame struct{ b []byte }

// rawCodec passes frames through. It is named "proto" so both sides agree
// with what the clients and the emulator speak.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) {
	f, ok := v.(*frame)
	if !ok {
		return nil, fmt.Errorf("faultproxy: cannot marshal %T", v)
	}
	return f.b, nil
}

func (rawCodec) Unmarshal(data []byte, v any) error {
	f, ok := v.(*frame)
	if !ok {
		return fmt.Errorf("faultproxy: cannot unmarshal into %T", v)
	}
	f.b = slices.Clone(data) // grpc may reuse data's buffer
	return nil
}

func (rawCodec) Name() string { return "proto" }
