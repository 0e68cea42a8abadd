package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/calsync/calsync/shared/messages"
	"github.com/calsync/calsync/shared/pubsubx"
	"github.com/calsync/calsync/shared/testing/testenv"
)

// runAsProgram makes the test binary the consumer program itself when the
// whole-program test starts it: a real process, real flags, a real SIGINT.
const runAsProgram = "CONSUMER_TEST_RUN_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(runAsProgram) == "1" {
		main()
		os.Exit(0)
	}
	testenv.Main(m)
}

// The program against the real Pub/Sub emulator: real change and lifecycle
// messages published on their topics (duplicates and poison among them),
// one consumer process per subscription, each line and the summary after
// Ctrl-C checked.
func TestProgramAgainstEmulator(t *testing.T) {
	host := testenv.PubSub(t)
	project := testenv.ProjectID(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	client, err := pubsubx.NewClient(ctx, project, host)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	for _, topic := range []string{"changes", "lifecycle"} {
		if err := pubsubx.EnsureTopic(ctx, client, topic); err != nil {
			t.Fatal(err)
		}
		if err := pubsubx.EnsureSubscription(ctx, client, topic, "consumer-"+topic, topic == "changes"); err != nil {
			t.Fatal(err)
		}
	}

	type msg struct {
		attrs map[string]string
		data  []byte
	}
	m := func(attrs map[string]string, data []byte) msg { return msg{attrs, data} }
	standup := m(change(calA, "ev1", `"1"`, messages.ChangeCreated, messages.OriginInitial, "Standup"))
	review := m(change(calA, "ev2", `"1"`, messages.ChangeCreated, messages.OriginIncremental, "Review"))
	poison := m(change(calA, "ev3", `"1"`, messages.ChangeCreated, messages.OriginIncremental, "x"))
	poison.data = []byte(strings.Replace(string(poison.data), `"tenant":"acme",`, "", 1))
	changes := []msg{
		standup, standup, // published twice: Pub/Sub's client retries publishes too
		m(change(calA, "ev4", `"1"`, messages.ChangeCreated, messages.OriginInitial, "1:1")),
		review, review,
		m(change(calB, "ev2", `"1"`, messages.ChangeCreated, messages.OriginIncremental, "Review")), // the same meeting on bob's calendar
		m(change(calA, "ev2", `"2"`, messages.ChangeDeleted, messages.OriginIncremental, "Review")),
		poison,
		{map[string]string{messages.AttrTenant: "acme"}, []byte("not json")},
	}
	reconnect := m(lifecycle(messages.LifecycleIdentityAuthProblem, t0, nil))
	// Without ordering, either answer to the request may come first: only
	// one is acted on.
	lifecycles := []msg{
		m(lifecycle(messages.LifecycleControlAccepted, t0, nil)),
		m(lifecycle(messages.LifecycleControlAccepted, t0.Add(time.Minute), func(l *messages.Lifecycle) { l.Control.Duplicate = true })),
		m(lifecycle(messages.LifecycleIdentityEnrolled, t0, nil)),
		m(lifecycle(messages.LifecycleInitialSyncComplete, t0, nil)),
		reconnect, reconnect,
		{map[string]string{messages.AttrType: "identity.enrolled"}, []byte(`{"schemaVersion":1,"type":"identity.enrolled"}`)},
	}
	publish := func(topic string, msgs []msg) {
		p := pubsubx.NewPublisher(client, topic, topic == "changes")
		defer p.Stop()
		for _, x := range msgs {
			if err := p.Publish(ctx, x.data, x.attrs, x.attrs[messages.AttrCalendarKey]); err != nil {
				t.Fatal(err)
			}
		}
	}
	publish("changes", changes)
	publish("lifecycle", lifecycles)

	changeRun := startProgram(t, host, project, "consumer-changes")
	lifecycleRun := startProgram(t, host, project, "consumer-lifecycle")
	gotChanges := changeRun.stop(t, len(changes))
	gotLifecycle := lifecycleRun.stop(t, len(lifecycles))

	checkLines(t, gotChanges, map[string]int{
		"initial import": 2, "new event": 2, "deleted": 1, "dup": 2, "poison": 2,
	}, []string{
		`change  created ev1 origin=initial tenant=acme externalId=user-42 summary="Standup": initial import`,
		`change  created ev2 origin=incremental tenant=acme externalId=user-42 summary="Review": new event`,
		`change  deleted ev2 origin=incremental tenant=acme externalId=user-42 summary="Review": deleted`, // lastKnown's summary
		`dup     created ev1 origin=initial tenant=acme externalId=user-42 summary="Standup" (already seen: nothing done)`,
	}, "summary: 9 messages, 5 applied (1 deleted, 2 initial import, 2 new event), 2 duplicates, 2 poison")
	checkLines(t, gotLifecycle, map[string]int{
		"request accepted": 1, "user connected": 1, "initial import complete (new-event automations on from here)": 1, "show a reconnect banner": 1, "dup": 2, "poison": 1,
	}, []string{
		"life    identity.auth_problem tenant=acme externalId=user-42 reason=auth_revoked: show a reconnect banner",
		"life    calendar.initial_sync_complete tenant=acme externalId=user-42 calendar=ann@acme.example events=3: initial import complete (new-event automations on from here)",
		"dup     identity.auth_problem tenant=acme externalId=user-42 reason=auth_revoked (already seen: nothing done)",
	}, "summary: 7 messages, 4 applied (1 initial import complete (new-event automations on from here), 1 request accepted, 1 show a reconnect banner, 1 user connected), 2 duplicates, 1 poison")

	// Poison messages are logged as structured JSON lines, and were acked:
	// nothing is left on the subscriptions.
	for _, run := range []*program{changeRun, lifecycleRun} {
		var poisonLogs int
		for _, line := range strings.Split(strings.TrimSpace(run.stderr.String()), "\n") {
			var entry struct{ Severity, Message, Event, MessageID string }
			if err := json.Unmarshal([]byte(line), &entry); err != nil {
				t.Errorf("stderr line is not JSON: %q", line)
				continue
			}
			if entry.Severity == "WARNING" && entry.Event == "poison_message" && entry.MessageID != "" {
				poisonLogs++
			}
		}
		if want := map[*program]int{changeRun: 2, lifecycleRun: 1}[run]; poisonLogs != want {
			t.Errorf("%s: %d poison_message log lines, want %d:\n%s", run.sub, poisonLogs, want, run.stderr.String())
		}
	}
	again := startProgram(t, host, project, "consumer-changes")
	time.Sleep(3 * time.Second) // what was not acked would be redelivered at once
	if got := again.stop(t, 0); len(got) != 1 {
		t.Errorf("a second run received messages the first acked: %q", got)
	}
}

// program is the consumer running as its own process.
type program struct {
	sub    string
	cmd    *exec.Cmd
	lines  chan string
	stderr *strings.Builder
}

func startProgram(t *testing.T, host, project, sub string) *program {
	t.Helper()
	cmd := exec.Command(os.Args[0], "--subscription", sub, "--project", project)
	cmd.Env = append(os.Environ(), runAsProgram+"=1", "PUBSUB_EMULATOR_HOST="+host)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p := &program{sub: sub, cmd: cmd, lines: make(chan string, 100), stderr: &strings.Builder{}}
	cmd.Stderr = p.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	go func() {
		defer close(p.lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			p.lines <- sc.Text()
		}
	}()
	return p
}

// stop waits for n lines, sends SIGINT (Ctrl-C), and returns every line
// the program printed, the summary last; it must exit 0.
func (p *program) stop(t *testing.T, n int) []string {
	t.Helper()
	var lines []string
	timeout := time.After(60 * time.Second)
	for len(lines) < n {
		select {
		case line, ok := <-p.lines:
			if !ok {
				t.Fatalf("%s: the program ended after %d lines: %q\nstderr: %s", p.sub, len(lines), lines, p.stderr)
			}
			lines = append(lines, line)
		case <-timeout:
			t.Fatalf("%s: %d of %d lines after 60s: %q\nstderr: %s", p.sub, len(lines), n, lines, p.stderr)
		}
	}
	if err := p.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	for line := range p.lines {
		lines = append(lines, line)
	}
	if err := p.cmd.Wait(); err != nil {
		t.Errorf("%s: exit after SIGINT: %v\nstderr: %s", p.sub, err, p.stderr)
	}
	return lines
}

// checkLines checks a run's output: the count of each action (or dup,
// poison) over the message lines, some lines exactly, and the summary last.
func checkLines(t *testing.T, lines []string, counts map[string]int, exact []string, summary string) {
	t.Helper()
	if len(lines) == 0 || lines[len(lines)-1] != summary {
		t.Errorf("last line is not the summary %q:\n%s", summary, strings.Join(lines, "\n"))
		return
	}
	got, total := map[string]int{}, 0
	for _, line := range lines[:len(lines)-1] {
		for action := range counts {
			if strings.HasPrefix(line, action+" ") || strings.HasSuffix(line, ": "+action) {
				got[action]++
			}
		}
	}
	for action, n := range counts {
		total += n
		if got[action] != n {
			t.Errorf("%d lines %q, want %d:\n%s", got[action], action, n, strings.Join(lines, "\n"))
		}
	}
	if len(lines)-1 != total {
		t.Errorf("%d message lines, want %d:\n%s", len(lines)-1, total, strings.Join(lines, "\n"))
	}
	for _, want := range exact {
		if !slices.Contains(lines, want) {
			t.Errorf("no line %q in:\n%s", want, strings.Join(lines, "\n"))
		}
	}
}

// Bad flags are usage errors (exit 2), before anything is pulled.
func TestUsageErrors(t *testing.T) {
	t.Setenv("PROJECT_ID", "")
	for _, args := range [][]string{
		{"--project", "p"},
		{"--subscription", "s"},
		{"--subscription", "s", "--project", "p", "--dedup-size", "0"},
	} {
		var out, errOut strings.Builder
		if err := realMain(context.Background(), args, &out, &errOut); !errors.Is(err, errUsage) {
			t.Errorf("%q: %v, want a usage error", args, err)
		}
	}
}

// A subscription that does not exist ends the program with an error (after
// the summary), not a silent wait.
func TestUnknownSubscriptionFails(t *testing.T) {
	testenv.PubSub(t) // sets PUBSUB_EMULATOR_HOST
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out, errOut strings.Builder
	err := realMain(ctx, []string{"--subscription", "nope", "--project", testenv.ProjectID(t)}, &out, &errOut)
	if err == nil || !strings.Contains(err.Error(), "pull nope") || ctx.Err() != nil {
		t.Errorf("realMain: %v (context: %v), want the pull's error at once", err, ctx.Err())
	}
	if !strings.HasPrefix(out.String(), "summary: 0 messages") {
		t.Errorf("output %q, want the summary", out.String())
	}
}
