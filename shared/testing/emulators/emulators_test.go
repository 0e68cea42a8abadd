package emulators

import (
	"context"
	"net/http"
	"syscall"
	"testing"
	"time"
)

// TestStartStopKillsGroup starts a real Pub/Sub emulator and checks that Stop
// leaves nothing behind: its process group is gone and the port is closed.
func TestStartStopKillsGroup(t *testing.T) {
	p, err := Start(context.Background(), PubSub, 0)
	if err != nil {
		t.Fatal(err)
	}
	pgid := p.cmd.Process.Pid
	resp, err := http.Get("http://" + p.Host + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	p.Stop()
	p.Stop() // idempotent
	deadline := time.Now().Add(10 * time.Second)
	for syscall.Kill(-pgid, 0) == nil {
		if time.Now().After(deadline) {
			t.Fatal("emulator process group still alive after Stop")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, err := http.Get("http://" + p.Host + "/"); err == nil {
		t.Fatal("emulator still answering after Stop")
	}
}

func TestMissingSDKFailsClearly(t *testing.T) {
	t.Setenv("CLOUDSDK_ROOT", t.TempDir())
	_, err := Start(context.Background(), PubSub, 0)
	if err == nil {
		t.Fatal("want an error without an SDK")
	}
}
