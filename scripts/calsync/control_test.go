package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"github.com/google/uuid"

	"github.com/calsync/calsync/shared/messages"
	"github.com/calsync/calsync/shared/pubsubx"
	"github.com/calsync/calsync/shared/store"
	"github.com/calsync/calsync/shared/testing/syncertest"
	"github.com/calsync/calsync/shared/testing/testenv"
)

// controlBench is the Pub/Sub emulator with a deployment's control topics
// (the operator's "ctl", acme's "ctl-acme") and lifecycle topic, a pull
// subscription on each control topic to see what the CLI published, and a
// state file naming them as the devstack does.
type controlBench struct {
	ps   *pubsub.Client
	seen map[string]chan *pubsub.Message // control topic → its messages
	life *pubsubx.Publisher
}

func newControlBench(t *testing.T) *controlBench {
	t.Helper()
	ctx := context.Background()
	host, project := testenv.PubSub(t), testenv.ProjectID(t)
	ps, err := pubsubx.NewClient(ctx, project, host)
	if err != nil {
		t.Fatal(err)
	}
	b := &controlBench{ps: ps, seen: map[string]chan *pubsub.Message{}, life: pubsubx.NewPublisher(ps, "life", false)}
	rctx, cancel := context.WithCancel(ctx)
	var receivers sync.WaitGroup
	t.Cleanup(func() { cancel(); receivers.Wait(); b.life.Stop(); ps.Close() })
	for _, topic := range []string{"life", "ctl", "ctl-acme"} {
		if err := pubsubx.EnsureTopic(ctx, ps, topic); err != nil {
			t.Fatal(err)
		}
	}
	for _, topic := range []string{"ctl", "ctl-acme"} {
		if err := pubsubx.EnsureSubscription(ctx, ps, topic, topic+"-seen", false); err != nil {
			t.Fatal(err)
		}
		ch := make(chan *pubsub.Message, 10)
		b.seen[topic] = ch
		receivers.Add(1)
		go func() {
			defer receivers.Done()
			_ = ps.Subscriber(topic+"-seen").Receive(rctx, func(_ context.Context, m *pubsub.Message) { m.Ack(); ch <- m })
		}()
	}
	state, _ := json.Marshal(map[string]any{"projectId": project, "pubsubEmulatorHost": host,
		"controlTopic": "ctl", "lifecycleTopic": "life"})
	file := filepath.Join(t.TempDir(), "state.json")
	if err := os.WriteFile(file, state, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("CALSYNC_STATE_FILE", file)
	for _, v := range []string{"PROJECT_ID", "PUBSUB_EMULATOR_HOST", "CONTROL_TOPIC", "LIFECYCLE_TOPIC"} {
		t.Setenv(v, "")
		os.Unsetenv(v)
	}
	return b
}

// next is the next message published on a control topic, checked against
// the control schema and the SyncWorker's parser.
func (b *controlBench) next(t *testing.T, topic string) (messages.Control, *pubsub.Message) {
	t.Helper()
	select {
	case m := <-b.seen[topic]:
		if err := syncertest.ValidateControl(m.Data); err != nil {
			t.Fatal(err)
		}
		c, err := messages.ParseControl(m.Data)
		if err != nil {
			t.Fatalf("%s: %v", m.Data, err)
		}
		return c, m
	case <-time.After(20 * time.Second):
		t.Fatalf("nothing published on %s", topic)
	}
	return messages.Control{}, nil
}

// answer publishes a lifecycle message as the SyncWorker does.
func (b *controlBench) answer(t *testing.T, l messages.Lifecycle) {
	t.Helper()
	l.OccurredAt = time.Now()
	data, attrs, err := l.Encode()
	if err == nil {
		err = syncertest.ValidateLifecycle(data)
	}
	if err == nil {
		err = b.life.Publish(context.Background(), data, attrs, "")
	}
	if err != nil {
		t.Fatal(err)
	}
}

// control publishes a valid control message to the tenant's topic, named
// as Terraform names it, with a new requestId and issuedAt now, and prints
// the requestId; what the SyncWorker would refuse is refused here, and no
// message goes out.
func TestControlPublishes(t *testing.T) {
	b := newControlBench(t)
	code, stdout, stderr := run("control", "--tenant", "acme", "--action", "enroll", "--subject", "ann@acme.test", "--external-id", "acme-ann")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	c, m := b.next(t, "ctl-acme")
	if _, err := uuid.Parse(strings.TrimSpace(stdout)); err != nil || c.RequestID != strings.TrimSpace(stdout) {
		t.Fatalf("printed %q, published requestId %q", stdout, c.RequestID)
	}
	if c.Action != messages.ActionEnroll || c.Subject != "ann@acme.test" || c.ExternalID != "acme-ann" || time.Since(c.IssuedAt) > time.Minute ||
		time.Since(c.IssuedAt) < 0 || m.Attributes["action"] != "enroll" || m.Attributes["version"] != "1" {
		t.Fatalf("published %+v %v", c, m.Attributes)
	}

	// The operator's own tenant: CONTROL_TOPIC itself.
	if code, _, stderr := run("control", "--action", "resync", "--subject", "x@corp.test", "--full"); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if c, _ := b.next(t, "ctl"); c.Action != messages.ActionResync || !c.Full {
		t.Fatalf("published %+v", c)
	}

	for _, bad := range [][]string{
		{"--action", "purge", "--subject", "x@corp.test"},                                // unknown_action
		{"--action", "enroll"},                                                           // no identity
		{"--action", "enroll", "--subject", "x@corp.test", "--credential", "cred-1"},     // two identities
		{"--action", "enroll", "--subject", "x@corp.test", "--external-id", "a\x1bb"},    // bad external id
		{"--tenant", "Acme", "--action", "enroll", "--subject", "x@corp.test"},           // not a tenant name
		{"--action", "enroll", "--subject", "x@corp.test", "--wait", "--timeout", "-1s"}, // bad timeout
	} {
		if code, _, stderr := run(append([]string{"control"}, bad...)...); code != 2 {
			t.Errorf("%q: exit %d, want 2: %s", bad, code, stderr)
		}
	}
	if code, _, stderr := run("control", "--tenant", "initech", "--action", "resync", "--subject", "x@corp.test"); code != 1 || !strings.Contains(stderr, "ctl-initech") {
		t.Errorf("a tenant without a topic: exit %d, %s", code, stderr)
	}
	for topic, ch := range b.seen {
		select {
		case m := <-ch:
			t.Errorf("a refused command published on %s: %s", topic, m.Data)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// --wait prints the lifecycle topic's answer to its own requestId, and only
// that: answers to other requests, and another tenant's answer under the
// same requestId, are passed over. A rejection exits 1, no answer in time too.
func TestControlWaitsForItsAnswer(t *testing.T) {
	b := newControlBench(t)
	type result struct {
		code           int
		stdout, stderr string
	}
	start := func(args ...string) <-chan result {
		out := make(chan result, 1)
		go func() {
			code, stdout, stderr := run(append([]string{"control", "--tenant", "acme", "--wait", "--timeout", "20s"}, args...)...)
			out <- result{code, stdout, stderr}
		}()
		return out
	}

	done := start("--action", "enroll", "--subject", "bob@globex.test")
	c, _ := b.next(t, "ctl-acme")
	answer := messages.Lifecycle{Type: messages.LifecycleControlRejected, Attribution: messages.Attribution{Tenant: "acme"},
		Reason: messages.ReasonOutsideTenant, Detail: "acme may not enroll bob@globex.test",
		Control: &messages.ControlAnswer{RequestID: c.RequestID, Action: c.Action}}
	other := answer
	other.Control = &messages.ControlAnswer{RequestID: "someone-else", Action: c.Action}
	b.answer(t, other)
	foreign := answer
	foreign.Attribution.Tenant = "globex"
	foreign.Type = messages.LifecycleControlAccepted
	b.answer(t, foreign)
	b.answer(t, answer)
	r := <-done
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if r.code != 1 || len(lines) != 2 || lines[0] != c.RequestID || !strings.Contains(r.stderr, "rejected: outside_tenant") {
		t.Fatalf("exit %d\nstdout %s\nstderr %s", r.code, r.stdout, r.stderr)
	}
	var got messages.Lifecycle
	if err := json.Unmarshal([]byte(lines[1]), &got); err != nil || got.Type != messages.LifecycleControlRejected || got.Tenant != "acme" ||
		got.Control.RequestID != c.RequestID {
		t.Fatalf("printed answer %s: %v", lines[1], err)
	}

	done = start("--action", "unenroll", "--subject", "ann@acme.test")
	c, _ = b.next(t, "ctl-acme")
	b.answer(t, messages.Lifecycle{Type: messages.LifecycleControlAccepted, Attribution: messages.Attribution{Tenant: "acme", IdentityKey: store.Grant{AuthMode: store.AuthDelegation, Subject: "ann@acme.test"}.IdentityKey()},
		Control: &messages.ControlAnswer{RequestID: c.RequestID, Action: c.Action}})
	if r := <-done; r.code != 0 || !strings.Contains(r.stdout, `"type":"control.accepted"`) {
		t.Fatalf("accepted: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}

	code, _, stderr := run("control", "--tenant", "acme", "--wait", "--timeout", "1s", "--action", "resync", "--subject", "ann@acme.test")
	if code != 1 || !strings.Contains(stderr, "no answer on life") {
		t.Fatalf("no answer: exit %d: %s", code, stderr)
	}
}
