package stack

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// FrontFaults make a front misbehave the ways Pub/Sub push and Cloud Run do.
// The stack applies them to the SyncWorker front.
type FrontFaults struct {
	// DuplicateProbability: the request goes to two instances at once and the
	// caller gets the first answer (Pub/Sub delivering a message twice).
	DuplicateProbability float64 `json:"duplicateProbability,omitempty"`
	// DelayProbability: the request waits a random time up to Delay before it
	// is forwarded, so later messages overtake it.
	DelayProbability float64       `json:"delayProbability,omitempty"`
	Delay            time.Duration `json:"delay,omitempty"`
	// RejectProbability: answered 503 without forwarding (Pub/Sub redelivers).
	RejectProbability float64 `json:"rejectProbability,omitempty"`
	// Seed seeds the choices (0: random).
	Seed uint64 `json:"seed,omitempty"`
}

// FrontStats count a front's work.
type FrontStats struct {
	Requests     int64 `json:"requests"`     // requests received (shard skips included)
	ShardSkipped int64 `json:"shardSkipped"` // push requests of another shard, answered 204 unforwarded
	Forwarded    int64 `json:"forwarded"`    // requests sent to instances (duplicates included)
	OK           int64 `json:"ok"`           // 2xx answers to callers
	Failed       int64 `json:"failed"`       // non-2xx answers from instances
	Unavailable  int64 `json:"unavailable"`  // 503: no instance up, connection refused or broken (killed)
	TimedOut     int64 `json:"timedOut"`     // 504: the instance did not answer within the timeout
	Rejected     int64 `json:"rejected"`     // injected 503s
	Duplicated   int64 `json:"duplicated"`   // injected second deliveries
	Delayed      int64 `json:"delayed"`      // injected delays
	InFlight     int64 `json:"inFlight"`     // requests being handled now
}

// Delivery is one request a front handled or one copy it forwarded; the
// stack's ledgers read them.
type Delivery struct {
	Front     string
	At        time.Time     // when it reached the front
	Duration  time.Duration // until the instance answered (or the front gave up)
	Instance  int           // -1: not forwarded
	PID       int
	Status    int    // the instance's status, or the front's own 503/504
	Err       string // why the front answered itself
	Rejected  bool   // injected 503, never forwarded
	Duplicate bool   // the extra copy of a duplicated delivery
	Answered  bool   // this result is what the caller got
	Delayed   time.Duration
	Path      string
	Header    http.Header // the caller's request headers
	Body      []byte      // the caller's request body
}

// Front stands in for Cloud Run's load balancer before one function: it
// spreads requests over the function's live instances (at random), answers
// 503 when none is up or the chosen one refuses or drops the connection
// (killed), 504 after the function's timeout, and counts requests in flight
// per instance. Paused instances keep the requests they have and get no new
// ones.
type Front struct {
	Name    string
	URL     string // http://127.0.0.1:PORT
	fn      *Function
	timeout time.Duration
	client  *http.Client
	srv     *http.Server
	done    chan struct{}

	mu      sync.Mutex
	faults  FrontFaults
	rng     *mrand.Rand
	observe func(Delivery)
	reqSeq  uint64
	reqs    map[uint64]*FrontRequest

	requests, shardSkipped, forwarded, ok, failed, unavailable, timedOut, rejected, duplicated, delayed, inFlight atomic.Int64
	lastActivity                                                                                                  atomic.Int64
}

func newFront(fn *Function, timeout time.Duration) *Front {
	f := &Front{
		Name: fn.Name, fn: fn, timeout: timeout, done: make(chan struct{}),
		rng: mrand.New(mrand.NewPCG(mrand.Uint64(), 2)),
		client: &http.Client{Transport: &http.Transport{
			Proxy:               nil,
			DialContext:         (&net.Dialer{Timeout: 2 * time.Second}).DialContext,
			MaxIdleConnsPerHost: 64,
			DisableCompression:  true,
		},
			// A balancer passes a redirect on to the caller (the Connect
			// function's redirects are the browser's to follow).
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
	}
	f.lastActivity.Store(time.Now().UnixNano())
	return f
}

// listen serves the front on addr.
func (f *Front) listen(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("%s front: %w", f.Name, err)
	}
	f.URL = "http://" + ln.Addr().String()
	f.srv = &http.Server{Handler: f, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		defer close(f.done)
		_ = f.srv.Serve(ln)
	}()
	return nil
}

func (f *Front) close() {
	if f.srv == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := f.srv.Shutdown(ctx); err != nil {
		_ = f.srv.Close()
	}
	<-f.done
}

// SetFaults replaces the fault settings (the zero value turns them off).
func (f *Front) SetFaults(fl FrontFaults) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.faults = fl
	if fl.Seed != 0 {
		f.rng = mrand.New(mrand.NewPCG(fl.Seed, fl.Seed^0x9e3779b97f4a7c15))
	}
}

// Stats returns the counters.
func (f *Front) Stats() FrontStats {
	return FrontStats{Requests: f.requests.Load(), ShardSkipped: f.shardSkipped.Load(), Forwarded: f.forwarded.Load(),
		OK: f.ok.Load(), Failed: f.failed.Load(), Unavailable: f.unavailable.Load(), TimedOut: f.timedOut.Load(),
		Rejected: f.rejected.Load(), Duplicated: f.duplicated.Load(), Delayed: f.delayed.Load(), InFlight: f.inFlight.Load()}
}

// FrontRequest is a request the front is handling: where it is and since when.
type FrontRequest struct {
	Path  string    `json:"path"`
	Stage string    `json:"stage"`
	Since time.Time `json:"since"` // when it reached the front
}

// InFlightRequests lists the requests the front is handling now, to say
// where one hangs.
func (f *Front) InFlightRequests() []FrontRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]FrontRequest, 0, len(f.reqs))
	for _, r := range f.reqs {
		out = append(out, *r)
	}
	return out
}

// track registers a request; stage moves it on; the returned done ends it.
func (f *Front) track(path string) (stage func(string), done func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.reqs == nil {
		f.reqs = map[uint64]*FrontRequest{}
	}
	f.reqSeq++
	id := f.reqSeq
	f.reqs[id] = &FrontRequest{Path: path, Stage: "reading the body", Since: time.Now()}
	return func(s string) {
			f.mu.Lock()
			defer f.mu.Unlock()
			if r := f.reqs[id]; r != nil {
				r.Stage = s
			}
		}, func() {
			f.mu.Lock()
			defer f.mu.Unlock()
			delete(f.reqs, id)
		}
}

// LastActivity is when a request last arrived or finished.
func (f *Front) LastActivity() time.Time { return time.Unix(0, f.lastActivity.Load()) }

func (f *Front) touch() { f.lastActivity.Store(time.Now().UnixNano()) }

type plan struct {
	reject, dup bool
	delay       time.Duration
}

func (f *Front) decide() plan {
	f.mu.Lock()
	defer f.mu.Unlock()
	fl := f.faults
	var p plan
	p.reject = fl.RejectProbability > 0 && f.rng.Float64() < fl.RejectProbability
	p.dup = fl.DuplicateProbability > 0 && f.rng.Float64() < fl.DuplicateProbability
	if fl.DelayProbability > 0 && fl.Delay > 0 && f.rng.Float64() < fl.DelayProbability {
		p.delay = time.Duration(f.rng.Int64N(int64(fl.Delay))) + time.Millisecond
	}
	return p
}

// pick chooses an up instance at random, not avoid if another is up.
func (f *Front) pick(avoid *Instance) *Instance {
	var up []*Instance
	for _, in := range f.fn.Instances {
		if in.State() == StateUp && in != avoid {
			up = append(up, in)
		}
	}
	if len(up) == 0 {
		if avoid != nil && avoid.State() == StateUp {
			return avoid
		}
		return nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return up[f.rng.IntN(len(up))]
}

// result is one forwarded copy's outcome.
type result struct {
	status int
	header http.Header
	body   []byte
	err    string
	in     *Instance
	pid    int
	dur    time.Duration
}

func (f *Front) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.requests.Add(1)
	f.inFlight.Add(1)
	f.touch()
	stage, done := f.track(r.URL.RequestURI())
	defer func() { done(); f.inFlight.Add(-1); f.touch() }()
	at := time.Now()
	body, err := io.ReadAll(io.LimitReader(r.Body, 32<<20))
	if err != nil {
		http.Error(w, "cannot read request", http.StatusBadRequest)
		return
	}
	// Push subscriptions sharded for the emulator's concurrency (see
	// PushOptions.Shards) name their shard in the query: a message belongs to
	// one shard; every other shard's copy is acknowledged here, unforwarded.
	q := r.URL.Query()
	if shard, shards, ok := shardOf(q); ok {
		if id := pushMessageID(body); id != "" && shardFor(id, shards) != shard {
			f.shardSkipped.Add(1)
			w.WriteHeader(http.StatusNoContent)
			return
		}
		q.Del("shard")
		q.Del("shards")
		r.URL.RawQuery = q.Encode()
	}
	d := Delivery{Front: f.Name, At: at, Instance: -1, Path: r.URL.RequestURI(), Header: r.Header.Clone(), Body: body}
	p := f.decide()
	if p.reject {
		f.rejected.Add(1)
		d.Rejected, d.Status, d.Err, d.Answered = true, http.StatusServiceUnavailable, "injected 503", true
		f.emit(d)
		http.Error(w, "injected: service unavailable", http.StatusServiceUnavailable)
		return
	}
	if p.delay > 0 {
		stage("delayed " + p.delay.String())
		f.delayed.Add(1)
		d.Delayed = p.delay
		select {
		case <-time.After(p.delay):
		case <-r.Context().Done():
			return
		}
	}
	// What the copies need of r, taken now: a copy may outlive this handler.
	out := outgoing{method: r.Method, uri: r.URL.RequestURI(), header: r.Header.Clone(), client: clientIP(r), body: body}
	first := f.pick(nil)
	if first != nil {
		stage("forwarded to " + first.Name())
	}
	results := make(chan result, 2)
	ctx, copies := r.Context(), 1
	if p.dup {
		// Both copies outlive the caller's answer (the first to finish), as
		// two real deliveries do.
		ctx, copies = context.WithoutCancel(ctx), 2
		f.duplicated.Add(1)
		second := f.pick(first)
		go func() { results <- f.forward(ctx, second, out) }()
	}
	go func() { results <- f.forward(ctx, first, out) }()
	res := <-results
	stage(fmt.Sprintf("answering %d", res.status))
	f.record(d, res, true, false)
	if copies == 2 {
		go func() { f.record(d, <-results, false, true) }()
	}
	if res.status/100 == 2 {
		f.ok.Add(1)
	}
	for k, vs := range res.header {
		if !hopByHop[http.CanonicalHeaderKey(k)] {
			w.Header()[k] = vs
		}
	}
	w.WriteHeader(res.status)
	_, _ = w.Write(res.body)
}

func (f *Front) record(d Delivery, res result, answered, duplicate bool) {
	if res.in != nil {
		d.Instance = res.in.Index
	}
	d.PID, d.Status, d.Err, d.Duration, d.Answered, d.Duplicate = res.pid, res.status, res.err, res.dur, answered, duplicate
	f.emit(d)
}

func (f *Front) emit(d Delivery) {
	f.mu.Lock()
	obs := f.observe
	f.mu.Unlock()
	if obs != nil {
		obs(d)
	}
}

// setObserver installs the function told of every delivery.
func (f *Front) setObserver(fn func(Delivery)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.observe = fn
}

var hopByHop = map[string]bool{"Connection": true, "Keep-Alive": true, "Proxy-Authenticate": true,
	"Proxy-Authorization": true, "Te": true, "Trailer": true, "Transfer-Encoding": true, "Upgrade": true, "Content-Length": true}

// outgoing is a request to forward.
type outgoing struct {
	method, uri, client string
	header              http.Header
	body                []byte
}

// forward sends one copy to in (nil: none is up) and returns its answer or
// the front's own 503/504.
func (f *Front) forward(ctx context.Context, in *Instance, r outgoing) result {
	if in == nil {
		f.unavailable.Add(1)
		return result{status: http.StatusServiceUnavailable, err: "no instance up", body: []byte("no instance available\n")}
	}
	f.forwarded.Add(1)
	end := in.begin()
	defer end()
	pid := in.PID()
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, r.method, in.URL()+r.uri, bytes.NewReader(r.body))
	if err != nil {
		return result{status: http.StatusInternalServerError, err: err.Error(), in: in, pid: pid}
	}
	for k, vs := range r.header {
		if !hopByHop[http.CanonicalHeaderKey(k)] {
			req.Header[k] = vs
		}
	}
	req.Header.Set("X-Forwarded-For", r.client)
	resp, err := f.client.Do(req)
	if err != nil {
		res := result{in: in, pid: pid, dur: time.Since(start), err: err.Error()}
		switch {
		case errors.Is(ctx.Err(), context.DeadlineExceeded):
			f.timedOut.Add(1)
			res.status, res.body = http.StatusGatewayTimeout, []byte("upstream request timeout\n")
		case errors.Is(err, syscall.ECONNREFUSED):
			f.unavailable.Add(1)
			res.status, res.body = http.StatusServiceUnavailable, []byte("instance refused the connection\n")
		default: // reset or EOF: the instance died mid-request
			f.unavailable.Add(1)
			res.status, res.body = http.StatusServiceUnavailable, []byte("instance dropped the connection\n")
		}
		return res
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 32<<20))
	res := result{status: resp.StatusCode, header: resp.Header, body: b, in: in, pid: pid, dur: time.Since(start)}
	if err != nil { // the answer broke off: the caller must retry
		f.unavailable.Add(1)
		res.status, res.err, res.body = http.StatusServiceUnavailable, "answer cut: "+err.Error(), nil
	}
	if res.status/100 != 2 && res.err == "" {
		f.failed.Add(1)
	}
	return res
}

func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// shardOf reads ?shard=i&shards=n.
func shardOf(q map[string][]string) (shard, shards int, ok bool) {
	s, n := first(q["shard"]), first(q["shards"])
	if s == "" || n == "" {
		return 0, 0, false
	}
	i, err1 := strconv.Atoi(s)
	k, err2 := strconv.Atoi(n)
	if err1 != nil || err2 != nil || k < 1 || i < 0 || i >= k {
		return 0, 0, false
	}
	return i, k, true
}

func first(v []string) string {
	if len(v) == 0 {
		return ""
	}
	return v[0]
}

// shardFor is the shard that owns a message: stable across redeliveries.
func shardFor(messageID string, shards int) int {
	h := fnv.New32a()
	_, _ = h.Write([]byte(messageID))
	return int(h.Sum32() % uint32(shards))
}
