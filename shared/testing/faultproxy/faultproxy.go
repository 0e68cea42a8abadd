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
	// Latency: the call waits 0.2-2 s before it is forwarded.
	Latency Kind = "latency"
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
	Before  float64 // every method: UNAVAILABLE before the service
	Lost    float64 // write methods: applied, answer lost (half UNAVAILABLE, half DEADLINE_EXCEEDED)
	Latency float64 // every method: 0.2-2 s late (on top of any other fault)
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
	next   map[string][]Kind // FailNext queues, by full method
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
		rates: o.Rates, next: map[string][]Kind{},
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
// FirestoreCommit) get fault k, whatever the rates. Lost kinds apply to
// write methods only.
func (p *Proxy) FailNext(method string, n int, k Kind) {
	if (k == LostUnavailable || k == LostDeadline) && !IsWrite(method) {
		panic("faultproxy: " + string(k) + " on " + method + ", which is not a write")
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for range n {
		p.next[method] = append(p.next[method], k)
	}
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

// pick decides a call's fault: a queued FailNext first, else the rates.
// delay is non-zero for a latency spike.
func (p *Proxy) pick(method string) (k Kind, delay time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls[method]++
	if q := p.next[method]; len(q) > 0 {
		k, p.next[method] = q[0], q[1:]
		if k == Latency {
			k, delay = "", p.maxLat
		}
	} else {
		// Always the same draws per call, so a seed replays its faults
		// for the same sequence of calls.
		r, lat, half, span := p.rng.Float64(), p.rng.Float64(), p.rng.Float64(), p.rng.Float64()
		switch {
		case r < p.rates.Before:
			k = Unavailable
		case IsWrite(method) && r < p.rates.Before+p.rates.Lost:
			k = LostUnavailable
			if half < 0.5 {
				k = LostDeadline
			}
		}
		if lat < p.rates.Latency {
			delay = p.minLat + time.Duration(span*float64(p.maxLat-p.minLat))
		}
	}
	if delay > 0 {
		p.countLocked(Latency, method)
	}
	if k != "" && k != LostUnavailable && k != LostDeadline {
		p.countLocked(k, method) // lost answers are counted once the write applied
	}
	return k, delay
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
	k, delay := p.pick(method)
	if delay > 0 {
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-ss.Context().Done():
			t.Stop()
			return status.FromContextError(ss.Context().Err()).Err()
		}
	}
	if k == Unavailable {
		return status.Error(codes.Unavailable, "faultproxy: injected: unavailable before the service")
	}
	ctx, cancel := context.WithCancel(outgoing(ss.Context()))
	defer cancel()
	cs, err := p.conn.NewStream(ctx, streamAll, method, grpc.ForceCodec(rawCodec{}))
	if err != nil {
		return err
	}
	if k == LostUnavailable || k == LostDeadline {
		return p.loseAnswer(ss, cs, method, k)
	}
	return pump(ss, cs, cancel)
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

// loseAnswer forwards a unary write, lets the service finish it, and answers
// the caller with k's error instead of the result. A write the service
// refused keeps its own answer: nothing was applied, nothing is lost.
func (p *Proxy) loseAnswer(ss grpc.ServerStream, cs grpc.ClientStream, method string, k Kind) error {
	var req frame
	if err := ss.RecvMsg(&req); err != nil {
		return err
	}
	if err := cs.SendMsg(&req); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	_ = cs.CloseSend()
	var resp frame
	if err := cs.RecvMsg(&resp); err != nil {
		return err
	}
	if err := cs.RecvMsg(&frame{}); !errors.Is(err, io.EOF) {
		return err // not unary after all: report what the upstream said
	}
	p.count(k, method)
	if k == LostDeadline {
		return status.Error(codes.DeadlineExceeded, "faultproxy: injected: the write was applied, its answer lost")
	}
	return status.Error(codes.Unavailable, "faultproxy: injected: the write was applied, its answer lost")
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
