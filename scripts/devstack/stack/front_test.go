package stack

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// backend is a fake instance: an HTTP server that counts what it gets.
type backend struct {
	srv   *httptest.Server
	hits  atomic.Int64
	block chan struct{} // if not nil, requests wait for it
	mu    sync.Mutex
	paths []string
}

func newBackend(t *testing.T, status int) *backend {
	b := &backend{}
	b.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.hits.Add(1)
		b.mu.Lock()
		b.paths = append(b.paths, r.URL.RequestURI())
		block := b.block
		b.mu.Unlock()
		if block != nil {
			select {
			case <-block:
			case <-r.Context().Done():
				return
			}
		}
		w.WriteHeader(status)
		_, _ = io.WriteString(w, "from "+r.Host)
	}))
	t.Cleanup(b.srv.Close)
	return b
}

func setState(in *Instance, state string) {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.state = state
}

// fakeFunction puts a front before fake instances (no processes).
func fakeFunction(t *testing.T, timeout time.Duration, backends ...*backend) *Function {
	t.Helper()
	fn := &Function{Name: "Fake"}
	for i, b := range backends {
		fn.Instances = append(fn.Instances, &Instance{Function: "Fake", Index: i, url: b.srv.URL, state: StateUp})
	}
	fn.Front = newFront(fn, timeout)
	if err := fn.Front.listen("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(fn.Front.close)
	return fn
}

func post(t *testing.T, url, body string) (int, string) {
	t.Helper()
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// The front spreads requests over the instances that are up, keeps the
// path and query, answers 503 when none is up or the chosen one refuses the
// connection, and 504 after its timeout.
func TestFrontSpreadsAndAnswersForMissingInstances(t *testing.T) {
	a, b := newBackend(t, 200), newBackend(t, 200)
	fn := fakeFunction(t, 300*time.Millisecond, a, b)
	for i := 0; i < 40; i++ {
		if code, _ := post(t, fn.Front.URL+"/projects/p/topics/t?x=1", "{}"); code != 200 {
			t.Fatalf("status %d", code)
		}
	}
	if a.hits.Load() < 5 || b.hits.Load() < 5 || a.hits.Load()+b.hits.Load() != 40 {
		t.Fatalf("not spread: %d and %d", a.hits.Load(), b.hits.Load())
	}
	if a.paths[0] != "/projects/p/topics/t?x=1" {
		t.Fatalf("path %q", a.paths[0])
	}

	// Down and paused instances get nothing new.
	setState(fn.Instances[0], StateDown)
	setState(fn.Instances[1], StatePaused)
	before := a.hits.Load() + b.hits.Load()
	if code, _ := post(t, fn.Front.URL, "{}"); code != http.StatusServiceUnavailable {
		t.Fatalf("no instance up: status %d, want 503", code)
	}
	if a.hits.Load()+b.hits.Load() != before {
		t.Fatal("a request reached an instance that is not up")
	}

	// Up but refusing connections (killed between the choice and the dial).
	dead := newBackend(t, 200)
	dead.srv.Close()
	refusing := fakeFunction(t, time.Minute, dead)
	if code, body := post(t, refusing.Front.URL, "{}"); code != http.StatusServiceUnavailable || !strings.Contains(body, "refused") {
		t.Fatalf("refused connection: %d %q, want 503", code, body)
	}

	// Slower than the timeout: 504, and the instance's request is cancelled.
	slow := newBackend(t, 200)
	slow.block = make(chan struct{})
	defer close(slow.block)
	slowFn := fakeFunction(t, 300*time.Millisecond, slow)
	if code, _ := post(t, slowFn.Front.URL, "{}"); code != http.StatusGatewayTimeout {
		t.Fatalf("slow instance: status %d, want 504", code)
	}
	if st := fn.Front.Stats(); st.Unavailable != 1 || st.OK != 40 || st.InFlight != 0 {
		t.Fatalf("stats %+v", st)
	}
	if st := refusing.Front.Stats(); st.Unavailable != 1 || st.Forwarded != 1 {
		t.Fatalf("stats %+v", st)
	}
	if st := slowFn.Front.Stats(); st.TimedOut != 1 || st.InFlight != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// The front counts each instance's requests in flight and how long the
// oldest has run.
func TestFrontCountsRequestsInFlight(t *testing.T) {
	a := newBackend(t, 204)
	a.block = make(chan struct{})
	fn := fakeFunction(t, time.Minute, a)
	done := make(chan int, 3)
	for i := 0; i < 3; i++ {
		go func() {
			resp, err := http.Post(fn.Front.URL, "application/json", strings.NewReader("{}"))
			if err != nil {
				done <- 0
				return
			}
			resp.Body.Close()
			done <- resp.StatusCode
		}()
	}
	deadline := time.Now().Add(10 * time.Second)
	for fn.Instances[0].Info().InFlight != 3 {
		if time.Now().After(deadline) {
			t.Fatalf("in flight %+v, want 3", fn.Instances[0].Info())
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond)
	if info := fn.Instances[0].Info(); info.OldestInFlight < 100*time.Millisecond {
		t.Fatalf("oldest in flight %s", info.OldestInFlight)
	}
	close(a.block)
	for i := 0; i < 3; i++ {
		if code := <-done; code != 204 {
			t.Fatalf("status %d", code)
		}
	}
	if info := fn.Instances[0].Info(); info.InFlight != 0 || info.Served != 3 || info.OldestInFlight != 0 {
		t.Fatalf("after: %+v", info)
	}
}

// Injected faults: a rejection never reaches an instance; a duplicate reaches
// two instances and the caller gets one answer; a delay holds the request.
func TestFrontFaults(t *testing.T) {
	a, b := newBackend(t, 200), newBackend(t, 200)
	fn := fakeFunction(t, time.Minute, a, b)
	var mu sync.Mutex
	var seen []Delivery
	fn.Front.setObserver(func(d Delivery) { mu.Lock(); seen = append(seen, d); mu.Unlock() })

	fn.Front.SetFaults(FrontFaults{RejectProbability: 1, Seed: 1})
	if code, _ := post(t, fn.Front.URL, "{}"); code != http.StatusServiceUnavailable {
		t.Fatalf("reject: %d", code)
	}
	if a.hits.Load()+b.hits.Load() != 0 {
		t.Fatal("a rejected request was forwarded")
	}

	fn.Front.SetFaults(FrontFaults{DuplicateProbability: 1, Seed: 2})
	if code, _ := post(t, fn.Front.URL, "{}"); code != 200 {
		t.Fatalf("duplicate: %d", code)
	}
	deadline := time.Now().Add(5 * time.Second)
	for a.hits.Load() != 1 || b.hits.Load() != 1 {
		if time.Now().After(deadline) {
			mu.Lock()
			t.Fatalf("duplicate reached %d and %d instances' copies, want 1 and 1; deliveries %+v", a.hits.Load(), b.hits.Load(), seen)
		}
		time.Sleep(10 * time.Millisecond)
	}

	fn.Front.SetFaults(FrontFaults{DelayProbability: 1, Delay: 400 * time.Millisecond, Seed: 3})
	start := time.Now()
	for i := 0; i < 5; i++ {
		post(t, fn.Front.URL, "{}")
	}
	if time.Since(start) < 100*time.Millisecond {
		t.Fatalf("5 delayed requests took only %s", time.Since(start))
	}
	fn.Front.SetFaults(FrontFaults{})
	st := fn.Front.Stats()
	if st.Rejected != 1 || st.Duplicated != 1 || st.Delayed != 5 || st.Forwarded != 7 {
		t.Fatalf("stats %+v", st)
	}
	deadline = time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		n := len(seen)
		mu.Unlock()
		if n == 8 { // 1 rejection, 2 copies, 5 delayed
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("observed %d deliveries, want 8", n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	var answered, dups int
	for _, d := range seen {
		if d.Answered {
			answered++
		}
		if d.Duplicate {
			dups++
		}
	}
	if answered != 7 || dups != 1 || !seen[0].Rejected || seen[0].Instance != -1 {
		t.Fatalf("deliveries %+v", seen)
	}
}

// With ?shard=i&shards=n, only the message's own shard is forwarded (without
// the shard parameters); the others are acknowledged unforwarded.
func TestFrontForwardsEachMessageUnderOneShard(t *testing.T) {
	a := newBackend(t, 200)
	fn := fakeFunction(t, time.Minute, a)
	for _, id := range []string{"1", "2", "17", "abc"} {
		body, _ := json.Marshal(map[string]any{"message": map[string]any{"messageId": id, "data": "e30="}, "subscription": "s"})
		before := a.hits.Load()
		for shard := 0; shard < 3; shard++ {
			code, _ := post(t, fn.Front.URL+"/projects/p/topics/t?shard="+strconv.Itoa(shard)+"&shards=3", string(body))
			if code/100 != 2 {
				t.Fatalf("shard %d: %d", shard, code)
			}
		}
		if got := a.hits.Load() - before; got != 1 {
			t.Fatalf("message %s forwarded %d times over 3 shards, want 1", id, got)
		}
	}
	for _, p := range a.paths {
		if p != "/projects/p/topics/t" {
			t.Fatalf("forwarded path %q keeps the shard parameters", p)
		}
	}
	if st := fn.Front.Stats(); st.ShardSkipped != 8 || st.Forwarded != 4 {
		t.Fatalf("stats %+v", st)
	}
}

// socketOwner finds the process that holds one end of a TCP connection.
func TestSocketOwner(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if sc := <-accepted; sc != nil {
		defer sc.Close()
	}
	pid, err := socketOwner(c.LocalAddr().String(), ln.Addr().String(), []int{1, os.Getpid()})
	if err != nil || pid != os.Getpid() {
		t.Fatalf("socketOwner = %d, %v; want %d", pid, err, os.Getpid())
	}
	if _, err := socketOwner("127.0.0.1:1", ln.Addr().String(), []int{os.Getpid()}); err == nil {
		t.Fatal("want an error for a connection that does not exist")
	}
}

// A redirect an instance answers reaches the caller as it is, not followed
// by the front (the Connect function sends the browser to Google's consent
// page and back to the product with 303s).
func TestFrontPassesRedirectsOn(t *testing.T) {
	target := newBackend(t, http.StatusOK)
	redirecting := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, target.srv.URL+"/consent?state=s", http.StatusSeeOther)
	}))
	t.Cleanup(redirecting.Close)
	fn := &Function{Name: "Fake", Instances: []*Instance{{Function: "Fake", url: redirecting.URL, state: StateUp}}}
	fn.Front = newFront(fn, 5*time.Second)
	if err := fn.Front.listen("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(fn.Front.close)
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Post(fn.Front.URL+"/start", "application/x-www-form-urlencoded", strings.NewReader("link=x"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != target.srv.URL+"/consent?state=s" || target.hits.Load() != 0 {
		t.Fatalf("through the front: %d Location %q, the target hit %d times; want the 303 itself, not followed", resp.StatusCode, resp.Header.Get("Location"), target.hits.Load())
	}
}
