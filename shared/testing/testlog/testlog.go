// Package testlog is a log sink for tests: many goroutines write JSON log
// lines into it, the test reads them back as text or parsed.
package testlog

import (
	"bytes"
	"encoding/json"
	"strings"
	"sync"
)

// Buffer is a concurrency-safe log sink.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (l *Buffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// String is everything written so far.
func (l *Buffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Lines parses every JSON line written so far (others are skipped).
func (l *Buffer) Lines() []map[string]any {
	var out []map[string]any
	for _, line := range strings.Split(l.String(), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) == nil {
			out = append(out, m)
		}
	}
	return out
}

// Count counts the lines with the given severity and event.
func (l *Buffer) Count(severity, event string) int {
	n := 0
	for _, m := range l.Lines() {
		if m["severity"] == severity && m["event"] == event {
			n++
		}
	}
	return n
}

// CountSeverity counts the lines with the given severity, whatever their event.
func (l *Buffer) CountSeverity(severity string) int {
	n := 0
	for _, m := range l.Lines() {
		if m["severity"] == severity {
			n++
		}
	}
	return n
}

// Reset forgets what was written.
func (l *Buffer) Reset() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.b.Reset()
}
