package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/calsync/calsync/shared/logging"
	"github.com/calsync/calsync/shared/testing/calendaremu"
)

func TestRealMain(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	var logs strings.Builder
	done := make(chan error, 1)
	go func() {
		done <- realMain(ctx, []string{"--addr", "127.0.0.1:0", "--quota", "--quota-per-minute", "5", "--max-ttl", "1h"}, pw, logging.New(&syncWriter{b: &logs}, slog.LevelInfo))
		pw.Close()
	}()
	line, err := bufio.NewReader(pr).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	base, ok := strings.CutPrefix(strings.TrimSpace(line), "listening on ")
	if !ok || !strings.HasPrefix(base, "http://127.0.0.1:") {
		t.Fatalf("first line %q", line)
	}
	go io.Copy(io.Discard, pr)
	svc, err := calendaremu.NewService(ctx, base)
	if err != nil {
		t.Fatal(err)
	}
	c, err := svc.Calendars.Get("primary").Do()
	if err != nil || c.Id != calendaremu.DefaultUser {
		t.Fatalf("get primary: %v", err)
	}
	resp, err := http.Get(base + "/emulator/v1/stats")
	if err != nil {
		t.Fatal(err)
	}
	var st calendaremu.Stats
	_ = json.NewDecoder(resp.Body).Decode(&st)
	resp.Body.Close()
	if st.Requests["calendars.get"] != 1 {
		t.Fatalf("stats: %+v", st)
	}
	// --quota-per-minute 5: the 6th call in a minute is refused.
	for i := range 5 {
		_, err = svc.Calendars.Get("primary").Do()
		if i < 4 && err != nil {
			t.Fatal(err)
		}
	}
	if err == nil {
		t.Fatal("quota not enforced")
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("realMain did not stop")
	}
	if !strings.Contains(logs.String(), `"severity":"INFO"`) || !strings.Contains(logs.String(), "calendar api call") {
		t.Fatalf("logs: %s", logs.String())
	}
}

// syncWriter lets the server's goroutines log into one builder.
type syncWriter struct {
	mu sync.Mutex
	b  *strings.Builder
}

func (w *syncWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func TestBadFlag(t *testing.T) {
	err := realMain(context.Background(), []string{"--nope"}, io.Discard, slog.New(slog.DiscardHandler))
	if err == nil {
		t.Fatal("bad flag accepted")
	}
}
