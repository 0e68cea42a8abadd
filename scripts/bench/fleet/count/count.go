// Package count measures what a process of the fleet benchmark costs: the
// Firestore operations its client sends (RPCs, billed document reads, writes
// and deletes, counted at the gRPC layer), its Pub/Sub publish requests and
// bytes, its HTTP invocations and the time at least one was in flight (what
// Cloud Run's request-based billing bills), and its CPU time.
package count

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"cloud.google.com/go/firestore"
	"cloud.google.com/go/firestore/apiv1/firestorepb"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/calsync/calsync/shared/app"
	"github.com/calsync/calsync/shared/pubsubx"
)

// Counters of one process. Every field is cumulative since the last Reset.
type Counters struct {
	FirestoreRPCs   atomic.Int64
	DocReads        atomic.Int64
	DocWrites       atomic.Int64 // sets, updates, transforms (fences included)
	DocDeletes      atomic.Int64
	PublishRequests atomic.Int64
	PublishMessages atomic.Int64
	PublishBytes    atomic.Int64 // Pub/Sub's billed size of the messages
	PublishBilled   atomic.Int64 // bytes billed: at least 1,000 per request
	Invocations     atomic.Int64
	BusyNanos       atomic.Int64 // time with at least one request in flight
	inFlight        atomic.Int64
	busySince       atomic.Int64
	cpuBase         atomic.Int64 // process CPU nanos at the last Reset
	mu              sync.Mutex
	answers         map[int]int64
	extra           map[string]func() int64
	extraBase       map[string]int64
}

// New returns zeroed counters.
func New() *Counters {
	c := &Counters{answers: map[int]int64{}, extra: map[string]func() int64{}, extraBase: map[string]int64{}}
	c.cpuBase.Store(cpuNanos())
	return c
}

// Extra adds a named cumulative figure read from f (reset by difference).
func (c *Counters) Extra(name string, f func() int64) {
	c.mu.Lock()
	c.extra[name] = f
	c.extraBase[name] = f()
	c.mu.Unlock()
}

// Snapshot is the counters as JSON.
type Snapshot struct {
	FirestoreRPCs   int64            `json:"firestoreRpcs"`
	DocReads        int64            `json:"docReads"`
	DocWrites       int64            `json:"docWrites"`
	DocDeletes      int64            `json:"docDeletes"`
	PublishRequests int64            `json:"publishRequests"`
	PublishMessages int64            `json:"publishMessages"`
	PublishBytes    int64            `json:"publishBytes"`
	PublishBilled   int64            `json:"publishBilledBytes"`
	Invocations     int64            `json:"invocations"`
	BusySeconds     float64          `json:"busySeconds"`
	CPUSeconds      float64          `json:"cpuSeconds"`
	Answers         map[int]int64    `json:"answers"`
	Extra           map[string]int64 `json:"extra"`
}

// Snapshot reads the counters.
func (c *Counters) Snapshot() Snapshot {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := Snapshot{FirestoreRPCs: c.FirestoreRPCs.Load(), DocReads: c.DocReads.Load(), DocWrites: c.DocWrites.Load(),
		DocDeletes: c.DocDeletes.Load(), PublishRequests: c.PublishRequests.Load(), PublishMessages: c.PublishMessages.Load(),
		PublishBytes: c.PublishBytes.Load(), PublishBilled: c.PublishBilled.Load(), Invocations: c.Invocations.Load(),
		BusySeconds: time.Duration(c.BusyNanos.Load()).Seconds(), CPUSeconds: time.Duration(cpuNanos() - c.cpuBase.Load()).Seconds(),
		Answers: map[int]int64{}, Extra: map[string]int64{}}
	for k, v := range c.answers {
		s.Answers[k] = v
	}
	for k, f := range c.extra {
		s.Extra[k] = f() - c.extraBase[k]
	}
	return s
}

// Reset zeroes the counters.
func (c *Counters) Reset() {
	for _, a := range []*atomic.Int64{&c.FirestoreRPCs, &c.DocReads, &c.DocWrites, &c.DocDeletes, &c.PublishRequests,
		&c.PublishMessages, &c.PublishBytes, &c.PublishBilled, &c.Invocations, &c.BusyNanos} {
		a.Store(0)
	}
	c.cpuBase.Store(cpuNanos())
	c.mu.Lock()
	c.answers = map[int]int64{}
	for k, f := range c.extra {
		c.extraBase[k] = f()
	}
	c.mu.Unlock()
}

func cpuNanos() int64 {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// Firestore returns a Firestore client on the emulator at host whose
// operations are counted.
func (c *Counters) Firestore(ctx context.Context, host, project string) (*firestore.Client, error) {
	conn, err := grpc.NewClient(host,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithPerRPCCredentials(owner{}),
		grpc.WithChainUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
			c.FirestoreRPCs.Add(1)
			if r, ok := req.(*firestorepb.CommitRequest); ok {
				c.commit(r.Writes)
			}
			return invoker(ctx, method, req, reply, cc, opts...)
		}),
		grpc.WithChainStreamInterceptor(func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
			c.FirestoreRPCs.Add(1)
			s, err := streamer(ctx, desc, cc, method, opts...)
			if err != nil {
				return s, err
			}
			return &stream{ClientStream: s, c: c}, nil
		}))
	if err != nil {
		return nil, err
	}
	return firestore.NewClient(ctx, project, option.WithGRPCConn(conn))
}

func (c *Counters) commit(ws []*firestorepb.Write) {
	for _, w := range ws {
		if w.GetDelete() != "" {
			c.DocDeletes.Add(1)
		} else {
			c.DocWrites.Add(1)
		}
	}
}

type stream struct {
	grpc.ClientStream
	c    *Counters
	docs int // documents a query's answer held so far
}

func (s *stream) SendMsg(m any) error {
	if r, ok := m.(*firestorepb.BatchWriteRequest); ok {
		s.c.commit(r.Writes)
	}
	return s.ClientStream.SendMsg(m)
}

func (s *stream) RecvMsg(m any) error {
	err := s.ClientStream.RecvMsg(m)
	switch r := m.(type) {
	case *firestorepb.BatchGetDocumentsResponse:
		if err == nil {
			s.c.DocReads.Add(1) // found or missing: billed either way
		}
	case *firestorepb.RunQueryResponse:
		if err == nil && r.Document != nil {
			s.c.DocReads.Add(1)
			s.docs++
		}
		// A query that returned nothing is billed one read.
		if err == io.EOF && s.docs == 0 {
			s.c.DocReads.Add(1)
		}
	}
	return err
}

type owner struct{}

func (owner) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer owner"}, nil
}
func (owner) RequireTransportSecurity() bool { return false }

// Publisher counts what goes through a pubsubx.Publisher: requests and
// Pub/Sub's billed bytes (data, attributes, 20 for the timestamp, about 16
// for the message id; at least 1,000 per request).
type Publisher struct {
	*pubsubx.Publisher
	C *Counters
}

// Wrap counts what goes through p (app.WithPublishers(c.Wrap)).
func (c *Counters) Wrap(p *pubsubx.Publisher) app.Publisher { return Publisher{Publisher: p, C: c} }

func size(data []byte, attrs map[string]string) int64 {
	n := int64(len(data)) + 36
	for k, v := range attrs {
		n += int64(len(k) + len(v))
	}
	return n
}

// PublishAll is pubsubx's (one request per call of up to 1,000 messages).
func (p Publisher) PublishAll(ctx context.Context, key string, msgs []pubsubx.Message) error {
	var bytes int64
	for _, m := range msgs {
		bytes += size(m.Data, m.Attributes)
	}
	if len(msgs) > 0 {
		p.C.PublishRequests.Add(1)
		p.C.PublishMessages.Add(int64(len(msgs)))
		p.C.PublishBytes.Add(bytes)
		p.C.PublishBilled.Add(max(bytes, 1000))
	}
	return p.Publisher.PublishAll(ctx, key, msgs)
}

// Publish is pubsubx's (one message; billed as its own request at most).
func (p Publisher) Publish(ctx context.Context, data []byte, attrs map[string]string, key string) error {
	n := size(data, attrs)
	p.C.PublishRequests.Add(1)
	p.C.PublishMessages.Add(1)
	p.C.PublishBytes.Add(n)
	p.C.PublishBilled.Add(max(n, 1000))
	return p.Publisher.Publish(ctx, data, attrs, key)
}

// Handler counts invocations, answers and busy time around h, and serves
// /stats (GET: Snapshot) and /reset (POST).
func (c *Counters) Handler(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/stats":
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(c.Snapshot())
			return
		case "/reset":
			c.Reset()
			w.WriteHeader(http.StatusNoContent)
			return
		}
		c.Invocations.Add(1)
		if c.inFlight.Add(1) == 1 {
			c.busySince.Store(time.Now().UnixNano())
		}
		rec := &status{ResponseWriter: w, code: 200}
		h.ServeHTTP(rec, r)
		if c.inFlight.Add(-1) == 0 {
			c.BusyNanos.Add(time.Now().UnixNano() - c.busySince.Load())
		}
		c.mu.Lock()
		c.answers[rec.code]++
		c.mu.Unlock()
	})
}

type status struct {
	http.ResponseWriter
	code int
}

func (s *status) WriteHeader(code int) {
	s.code = code
	s.ResponseWriter.WriteHeader(code)
}

func (s *status) Flush() {
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}
