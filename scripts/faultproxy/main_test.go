package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/calsync/calsync/shared/logging"
	"github.com/calsync/calsync/shared/testing/faultproxy"
	"github.com/calsync/calsync/shared/testing/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// The binary forwards to the emulator and writes what it counted on exit.
func TestRealMainCountsOnExit(t *testing.T) {
	host := testenv.Firestore(t)
	counts := filepath.Join(t.TempDir(), "counts.json")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- realMain(ctx, []string{"--upstream", host, "--lost", "1", "--seed", "3", "--counts-file", counts}, pw, logging.New(io.Discard, slog.LevelInfo))
		pw.Close()
	}()
	line, err := bufio.NewReader(pr).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	addr, ok := strings.CutPrefix(strings.TrimSpace(line), "listening on ")
	if !ok {
		t.Fatalf("first line %q", line)
	}
	go io.Copy(io.Discard, pr)
	wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
	defer wcancel()
	client, err := faultproxy.FirestoreClient(wctx, testenv.ProjectID(t), addr)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	// Every answer lost: the Create applies, then its retries fail.
	if _, err := client.Doc("c/d").Create(wctx, map[string]any{"x": 1}); err == nil {
		t.Fatal("a Create whose every answer is lost succeeded")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(counts)
	if err != nil {
		t.Fatal(err)
	}
	var c faultproxy.Snapshot
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	if c.Total(faultproxy.LostUnavailable)+c.Total(faultproxy.LostDeadline) == 0 || c.Calls[faultproxy.FirestoreCommit] == 0 {
		t.Fatalf("counts file: %s", b)
	}
}

func TestRealMainRefusesBadFlags(t *testing.T) {
	for _, args := range [][]string{{}, {"--upstream", "x:1", "--before", "1.5"}} {
		if err := realMain(context.Background(), args, io.Discard, logging.New(io.Discard, slog.LevelInfo)); err == nil {
			t.Errorf("%v accepted", args)
		}
	}
}
