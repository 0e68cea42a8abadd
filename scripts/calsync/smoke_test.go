package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	devstack "github.com/calsync/calsync/scripts/devstack/stack"
	"github.com/calsync/calsync/shared/testing/testenv"
)

// smoke on the whole local stack as deployed (function processes, Pub/Sub
// push, the Calendar emulator's push): with an operator's view of it (no
// key, no function environment) a calendar watched as the runbook says
// passes; with the SyncWorker down, the same check fails, saying where.
func TestSmokeOnTheLocalStack(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	st, err := devstack.Start(ctx, devstack.Options{
		ProjectID: testenv.ProjectID(t), FirestoreHost: testenv.Firestore(t), PubSubHost: testenv.PubSub(t),
		SyncWorkers: 1, RenewInterval: -1,
	})
	if err != nil {
		t.Fatalf("the local stack did not start: %v", err)
	}
	t.Cleanup(st.Stop)
	// What an operator has: where things are, no secret.
	state, _ := json.Marshal(map[string]string{
		"projectId": st.ProjectID, "calendarEndpoint": st.CalendarEndpoint, "firestoreEmulatorHost": st.FirestoreHost,
		"pubsubEmulatorHost": st.PubSubHost, "notificationsTopic": st.NotificationsTopic, "changesTopic": st.ChangesTopic,
	})
	file := filepath.Join(t.TempDir(), "operator.json")
	if err := os.WriteFile(file, state, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("CALSYNC_STATE_FILE", file)
	for _, v := range []string{"CHANNEL_TOKEN_KEYS", "PROJECT_ID", "CALENDAR_ENDPOINT", "CHANGES_TOPIC"} {
		t.Setenv(v, "")
		os.Unsetenv(v)
	}
	const cal = "default@calsync.test"

	if code, _, stderr := run("watch", "--calendar", cal); code != 0 {
		t.Fatalf("watch: exit %d: %s", code, stderr)
	}
	if r, err := st.RunRenew(ctx); err != nil || r.Status/100 != 2 { // the scheduler's run: the channel
		t.Fatalf("RenewChannels: %v %v", r, err)
	}
	code, stdout, stderr := run("smoke", "--calendar", cal, "--timeout", "90s")
	t.Logf("smoke:\n%s", stdout)
	if code != 0 || !strings.Contains(stdout, "PASS: push → mirror → feed works") {
		t.Fatalf("smoke on a working stack: exit %d\n%s\n%s\n%s", code, stdout, stderr, st.LogTail(20))
	}
	for _, line := range []string{"ok   push channel live", "ok   change feed: created", "ok   mirror holds the event", "ok   change feed: deleted", "ok   temporary subscription deleted"} {
		if !strings.Contains(stdout, line) {
			t.Errorf("smoke output lacks %q", line)
		}
	}

	if err := st.Kill(devstack.SyncWorker, 0); err != nil {
		t.Fatal(err)
	}
	code, stdout, _ = run("smoke", "--calendar", cal, "--timeout", "5s")
	if code != 1 || !strings.Contains(stdout, "FAIL change feed: created") || !strings.Contains(stdout, "FAIL: ") {
		t.Errorf("smoke with the SyncWorker down: exit %d, want 1 and the failed step named\n%s", code, stdout)
	}
	if code, _, _ := run("smoke", "--calendar", "nobody@calsync.test"); code != 1 {
		t.Errorf("smoke of a calendar never watched: exit %d, want 1", code)
	}
}
