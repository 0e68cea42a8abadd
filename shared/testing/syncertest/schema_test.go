package syncertest

import (
	"strings"
	"testing"
)

// The schema check refuses what breaks the contract, so the syncer tests
// that run every change message through it can fail.
func TestValidateChange(t *testing.T) {
	valid := `{"schemaVersion":1,"origin":"incremental","calendarId":"a@x","calendarKey":"k","eventId":"e1","change":"updated",
		"etag":"\"2\"","sequence":0,"syncedAt":"2026-12-03T10:00:00Z","event":{"id":"e1"}}`
	if err := ValidateChange([]byte(valid)); err != nil {
		t.Fatalf("a valid message refused: %v", err)
	}
	for name, bad := range map[string]string{
		"no origin":        strings.Replace(valid, `"origin":"incremental",`, "", 1),
		"another origin":   strings.Replace(valid, `"incremental"`, `"later"`, 1),
		"version 2":        strings.Replace(valid, `"schemaVersion":1`, `"schemaVersion":2`, 1),
		"unknown change":   strings.Replace(valid, `"updated"`, `"moved"`, 1),
		"bad syncedAt":     strings.Replace(valid, `2026-12-03T10:00:00Z`, `yesterday`, 1),
		"event without id": strings.Replace(valid, `{"id":"e1"}`, `{}`, 1),
	} {
		if err := ValidateChange([]byte(bad)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
