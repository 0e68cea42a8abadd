package syncertest

import (
	"strings"
	"testing"
)

// The schema check refuses what breaks the contract, so the syncer tests
// that run every change message through it can fail.
func TestValidateChange(t *testing.T) {
	valid := `{"schemaVersion":1,"origin":"incremental","tenant":"default","calendarId":"a@x","calendarKey":"k","eventId":"e1","change":"updated",
		"etag":"\"2\"","sequence":0,"syncedAt":"2026-12-03T10:00:00Z","event":{"id":"e1"}}`
	if err := ValidateChange([]byte(valid)); err != nil {
		t.Fatalf("a valid message refused: %v", err)
	}
	for name, bad := range map[string]string{
		"no origin":        strings.Replace(valid, `"origin":"incremental",`, "", 1),
		"no tenant":        strings.Replace(valid, `"tenant":"default",`, "", 1),
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

// ValidateLifecycle refuses a lifecycle message the published schema
// refuses: each type with the fields it needs.
func TestValidateLifecycle(t *testing.T) {
	valid := `{"schemaVersion":1,"type":"identity.auth_problem","tenant":"acme","identityKey":"i0123456789abcdefghijklmnop",` +
		`"reason":"auth_revoked","userAction":"reconnect","occurredAt":"2026-12-03T10:00:00Z"}`
	if err := ValidateLifecycle([]byte(valid)); err != nil {
		t.Fatalf("a valid message refused: %v", err)
	}
	// A type added within version 1 is valid: consumers ignore it.
	if err := ValidateLifecycle([]byte(strings.Replace(valid, `"type":"identity.auth_problem"`, `"type":"identity.renamed"`, 1))); err != nil {
		t.Fatalf("a new type refused: %v", err)
	}
	for name, bad := range map[string]string{
		"no tenant":        strings.Replace(valid, `"tenant":"acme",`, "", 1),
		"malformed type":   strings.Replace(valid, `identity.auth_problem`, `Renamed`, 1),
		"no userAction":    strings.Replace(valid, `,"userAction":"reconnect"`, "", 1),
		"no identityKey":   strings.Replace(valid, `"identityKey":"i0123456789abcdefghijklmnop",`, "", 1),
		"bad identityKey":  strings.Replace(valid, `i0123456789abcdefghijklmnop`, `../x`, 1),
		"control, no body": strings.Replace(valid, `identity.auth_problem`, `control.accepted`, 1),
		"initial, no count": `{"schemaVersion":1,"type":"calendar.initial_sync_complete","tenant":"acme","calendarKey":"c0123456789abcdefghijklmnop",` +
			`"calendarId":"a@x","occurredAt":"2026-12-03T10:00:00Z"}`,
	} {
		if err := ValidateLifecycle([]byte(bad)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// ValidateControl refuses a control message the published schema refuses.
func TestValidateControl(t *testing.T) {
	valid := `{"version":1,"action":"enroll","requestId":"r-1","issuedAt":"2026-12-03T10:00:00Z","subject":"ann@corp.test"}`
	if err := ValidateControl([]byte(valid)); err != nil {
		t.Fatalf("a valid message refused: %v", err)
	}
	for name, bad := range map[string]string{
		"no issuedAt":    strings.Replace(valid, `"issuedAt":"2026-12-03T10:00:00Z",`, "", 1),
		"no requestId":   strings.Replace(valid, `"requestId":"r-1",`, "", 1),
		"Action":         strings.Replace(valid, `"action"`, `"Action"`, 1),
		"full on enroll": strings.Replace(valid, `}`, `,"full":true}`, 1),
	} {
		if err := ValidateControl([]byte(bad)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
