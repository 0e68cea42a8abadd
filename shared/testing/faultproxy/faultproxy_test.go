package faultproxy

import (
	"context"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/firestore"
	"cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/calsync/calsync/shared/testing/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func startProxy(t *testing.T, upstream string, o Options) *Proxy {
	t.Helper()
	p, err := Start("127.0.0.1:0", upstream, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

// firestorePair is a client through the proxy and one straight to the
// emulator (what the service holds).
func firestorePair(t *testing.T, o Options) (*Proxy, *firestore.Client, *firestore.Client) {
	t.Helper()
	host := testenv.Firestore(t)
	project := testenv.ProjectID(t)
	p := startProxy(t, host, o)
	ctx := context.Background()
	via, err := FirestoreClient(ctx, project, p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { via.Close() })
	direct, err := firestore.NewClient(ctx, project)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { direct.Close() })
	return p, via, direct
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// Unary calls, a server stream (RunQuery), a transaction and a bidirectional
// stream (Listen) all pass through intact.
func TestFirestorePassThrough(t *testing.T) {
	p, via, direct := firestorePair(t, Options{})
	ctx := testCtx(t)
	ref := via.Doc("things/a")
	if _, err := ref.Set(ctx, map[string]any{"n": 1, "s": "é ☃"}); err != nil {
		t.Fatal(err)
	}
	snap, err := ref.Get(ctx)
	if err != nil || snap.Data()["s"] != "é ☃" {
		t.Fatalf("get: %v %v", snap.Data(), err)
	}
	docs, err := via.Collection("things").Where("n", "==", 1).Documents(ctx).GetAll()
	if err != nil || len(docs) != 1 {
		t.Fatalf("query: %d %v", len(docs), err)
	}
	if err := via.RunTransaction(ctx, func(ctx context.Context, tx *firestore.Transaction) error {
		s, err := tx.Get(ref)
		if err != nil {
			return err
		}
		n, _ := s.DataAt("n")
		return tx.Update(ref, []firestore.Update{{Path: "n", Value: n.(int64) + 1}})
	}); err != nil {
		t.Fatal(err)
	}
	// Listen: the first snapshot, then a change written straight to the emulator.
	it := via.Doc("things/a").Snapshots(ctx)
	defer it.Stop()
	first, err := it.Next()
	if err != nil || first.Data()["n"] != int64(2) {
		t.Fatalf("listen: %v %v", first.Data(), err)
	}
	if _, err := direct.Doc("things/a").Update(ctx, []firestore.Update{{Path: "n", Value: 3}}); err != nil {
		t.Fatal(err)
	}
	next, err := it.Next()
	if err != nil || next.Data()["n"] != int64(3) {
		t.Fatalf("listen after a change: %v %v", next.Data(), err)
	}
	c := p.Counts()
	for _, m := range []string{FirestoreCommit, "/google.firestore.v1.Firestore/RunQuery", "/google.firestore.v1.Firestore/Listen",
		"/google.firestore.v1.Firestore/BatchGetDocuments", "/google.firestore.v1.Firestore/BeginTransaction"} {
		if c.Calls[m] == 0 {
			t.Errorf("no call of %s went through: %v", m, c.Calls)
		}
	}
	if len(c.Faults) != 0 {
		t.Errorf("faults injected at rate 0: %v", c.Faults)
	}
}

// A Commit applied by Firestore whose answer is lost: the document is written
// whatever the client was told.
func TestFirestoreLostCommit(t *testing.T) {
	p, via, direct := firestorePair(t, Options{})
	ctx := testCtx(t)

	// UNAVAILABLE: the client retries by itself and meets its first attempt.
	p.FailNext(FirestoreCommit, 1, LostUnavailable)
	_, err := via.Doc("d/created").Create(ctx, map[string]any{"v": 1})
	if status.Code(err) != codes.AlreadyExists {
		t.Fatalf("Create after a lost answer: %v, want AlreadyExists (the retry met the first attempt)", err)
	}
	if s, err := direct.Doc("d/created").Get(ctx); err != nil || s.Data()["v"] != int64(1) {
		t.Fatalf("the document is not written: %v %v", s, err)
	}

	// A LastUpdateTime precondition fails the same way.
	snap, _ := direct.Doc("d/created").Get(ctx)
	p.FailNext(FirestoreCommit, 1, LostUnavailable)
	_, err = via.Doc("d/created").Update(ctx, []firestore.Update{{Path: "v", Value: 2}}, firestore.LastUpdateTime(snap.UpdateTime))
	if status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("Update after a lost answer: %v, want FailedPrecondition", err)
	}
	if s, _ := direct.Doc("d/created").Get(ctx); s.Data()["v"] != int64(2) {
		t.Fatalf("the update is not applied: %v", s.Data())
	}

	// DEADLINE_EXCEEDED: no retry; the client sees the error, the write is there.
	calls := p.Counts().Calls[FirestoreCommit]
	p.FailNext(FirestoreCommit, 1, LostDeadline)
	_, err = via.Doc("d/set").Set(ctx, map[string]any{"v": 3})
	if status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("Set after a lost answer: %v, want DeadlineExceeded", err)
	}
	if s, err := direct.Doc("d/set").Get(ctx); err != nil || s.Data()["v"] != int64(3) {
		t.Fatalf("the document is not written: %v %v", s, err)
	}
	c := p.Counts()
	if got := c.Calls[FirestoreCommit] - calls; got != 1 {
		t.Errorf("%d Commit calls for a DEADLINE_EXCEEDED, want 1 (no client retry)", got)
	}
	if c.Faults[LostUnavailable][FirestoreCommit] != 2 || c.Faults[LostDeadline][FirestoreCommit] != 1 {
		t.Errorf("counts: %v", c.Faults)
	}

	// Before the service: nothing applied, the client's retry writes it once.
	p.FailNext(FirestoreCommit, 1, Unavailable)
	if _, err := via.Doc("d/before").Create(ctx, map[string]any{"v": 4}); err != nil {
		t.Fatalf("Create after an UNAVAILABLE before the service: %v (the retry should succeed)", err)
	}
	if p.Counts().Faults[Unavailable][FirestoreCommit] != 1 {
		t.Errorf("counts: %v", p.Counts().Faults)
	}

	// Contention: ABORTED, nothing applied; a plain write is not retried
	// by the client (a transaction would be rerun).
	p.FailNext(FirestoreCommit, 1, Contention)
	if _, err := via.Doc("d/contended").Create(ctx, map[string]any{"v": 5}); status.Code(err) != codes.Aborted {
		t.Fatalf("Create refused for contention: %v, want ABORTED", err)
	}
	if s, err := direct.Doc("d/contended").Get(ctx); status.Code(err) != codes.NotFound {
		t.Fatalf("a contended write was applied: %v %v", s, err)
	}
	if p.Counts().Faults[Contention][FirestoreCommit] != 1 {
		t.Errorf("counts: %v", p.Counts().Faults)
	}
}

// A Publish applied whose answer is lost: the client's retry publishes the
// message a second time, and the subscriber gets both.
func TestPublishLostAnswerPublishesTwice(t *testing.T) {
	host := testenv.PubSub(t)
	project := testenv.ProjectID(t)
	p := startProxy(t, host, Options{})
	ctx := testCtx(t)
	via, err := PubSubClient(ctx, project, p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer via.Close()
	topic, err := via.TopicAdminClient.CreateTopic(ctx, &pubsubpb.Topic{Name: "projects/" + project + "/topics/lost-answer"})
	if err != nil {
		t.Fatal(err)
	}
	sub, err := via.SubscriptionAdminClient.CreateSubscription(ctx, &pubsubpb.Subscription{
		Name: "projects/" + project + "/subscriptions/lost-answer", Topic: topic.Name, AckDeadlineSeconds: 60})
	if err != nil {
		t.Fatal(err)
	}
	pub := via.Publisher(topic.Name)
	defer pub.Stop()
	p.FailNext(PubSubPublish, 1, LostUnavailable)
	if _, err := pub.Publish(ctx, &pubsub.Message{Data: []byte("once")}).Get(ctx); err != nil {
		t.Fatalf("publish: %v (the client retries UNAVAILABLE)", err)
	}
	// Receive through the proxy too: StreamingPull passes through.
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var mu sync.Mutex
	ids := map[string]bool{}
	err = via.Subscriber(sub.Name).Receive(rctx, func(_ context.Context, m *pubsub.Message) {
		m.Ack()
		mu.Lock()
		defer mu.Unlock()
		if string(m.Data) == "once" {
			ids[m.ID] = true
		}
		if len(ids) == 2 {
			cancel()
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(ids) != 2 {
		t.Fatalf("received %d copies, want 2 (one per publish the service applied)", len(ids))
	}
	c := p.Counts()
	if c.Faults[LostUnavailable][PubSubPublish] != 1 || c.Calls[PubSubPublish] != 2 {
		t.Errorf("counts: %+v", c)
	}
	if c.Calls["/google.pubsub.v1.Subscriber/StreamingPull"] == 0 {
		t.Errorf("no StreamingPull went through: %v", c.Calls)
	}
}

// Rates: the same seed and the same calls give the same faults; latency
// spikes delay calls within their bounds.
func TestRatesSeededAndCounted(t *testing.T) {
	run := func(seed uint64) Snapshot {
		p, via, _ := firestorePair(t, Options{Seed: seed, Rates: Rates{Before: 0.2, Lost: 0.2, Contention: 0.2, Latency: 0.3},
			MinLatency: 10 * time.Millisecond, MaxLatency: 20 * time.Millisecond})
		ctx := testCtx(t)
		for i := range 30 {
			// Set retries UNAVAILABLE and its answer may be lost: only the
			// fault sequence matters here.
			_, _ = via.Doc("r/x").Set(ctx, map[string]any{"i": i})
		}
		return p.Counts()
	}
	a, b := run(42), run(42)
	for _, k := range []Kind{Unavailable, LostUnavailable, LostDeadline, Contention, Latency, LateAnswer} {
		if a.Total(k) != b.Total(k) {
			t.Errorf("%s: %d then %d with one seed", k, a.Total(k), b.Total(k))
		}
	}
	if a.Total(Unavailable) == 0 || a.Total(LostUnavailable)+a.Total(LostDeadline) == 0 || a.Total(Contention) == 0 || a.Total(Latency) == 0 || a.Total(LateAnswer) == 0 {
		t.Errorf("some kind never drawn at 20-30%%: %v", a.Faults)
	}

	p, via, _ := firestorePair(t, Options{MinLatency: 300 * time.Millisecond, MaxLatency: 400 * time.Millisecond})
	ctx := testCtx(t)
	p.SetRates(Rates{Latency: 1})
	start := time.Now()
	if _, err := via.Doc("r/y").Get(ctx); status.Code(err) != codes.NotFound {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 300*time.Millisecond {
		t.Errorf("a call at latency rate 1 took %v, want at least 300ms", d)
	}
	if p.Counts().Total(Latency) != 1 {
		t.Errorf("latency count: %v", p.Counts().Faults)
	}
}

// A write is in flight once sent: delayed before the service, it is applied
// even though its caller gave up (DEADLINE_EXCEEDED is not "not written").
// A late answer comes late, and the write was applied at once.
func TestLateWrites(t *testing.T) {
	p, via, direct := firestorePair(t, Options{MinLatency: 500 * time.Millisecond, MaxLatency: 800 * time.Millisecond})
	ctx := testCtx(t)
	p.FailNext(FirestoreCommit, 1, Latency)
	short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	if _, err := via.Doc("late/applied").Set(short, map[string]any{"v": 1}); status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("a write slower than its deadline: %v, want DeadlineExceeded", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := direct.Doc("late/applied").Get(ctx); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the late write never reached the service")
		}
		time.Sleep(50 * time.Millisecond)
	}
	waitCount := time.Now().Add(5 * time.Second)
	for p.Counts().Total(LateApplied) != 1 && time.Now().Before(waitCount) {
		time.Sleep(20 * time.Millisecond)
	}
	if c := p.Counts(); c.Total(LateApplied) != 1 || c.Total(Latency) != 1 {
		t.Errorf("counts: %v", c.Faults)
	}

	p.FailNext(FirestoreCommit, 1, LateAnswer)
	start := time.Now()
	it := direct.Doc("late/answer").Snapshots(ctx)
	defer it.Stop()
	if _, err := it.Next(); err != nil { // not there yet
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { _, err := via.Doc("late/answer").Set(ctx, map[string]any{"v": 2}); done <- err }()
	if snap, err := it.Next(); err != nil || !snap.Exists() {
		t.Fatalf("listen: %v %v", snap, err)
	}
	applied := time.Since(start)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if answered := time.Since(start); applied >= 500*time.Millisecond || answered < 800*time.Millisecond {
		t.Errorf("applied after %v, answered after %v; want applied at once, answered after 800ms", applied, answered)
	}
}
