package syncer

import (
	"slices"
	"testing"

	"github.com/calsync/calsync/shared/store"
)

func TestDiffEventEdges(t *testing.T) {
	base := map[string]any{"id": "e1", "etag": `"1"`, "summary": "s", "sequence": int64(0),
		"attendees":         []any{map[string]any{"email": "a@x", "responseStatus": "needsAction"}},
		store.FieldSyncedAt: "ignored", store.FieldStartTime: "ignored"}
	same := map[string]any{"id": "e1", "etag": `"1"`, "summary": "s", "sequence": int64(0),
		"attendees": []any{map[string]any{"email": "a@x", "responseStatus": "needsAction"}}, store.FieldSyncedAt: "other"}
	if changed, prev := diffEvent(base, same); len(changed) != 0 || prev != nil {
		t.Fatalf("identical events: %v %+v", changed, prev)
	}
	// Numbers compare by value and type as stored (int64 stays int64).
	moved := map[string]any{"id": "e1", "etag": `"2"`, "summary": "s", "sequence": int64(1),
		"attendees": []any{map[string]any{"responseStatus": "accepted", "email": "a@x"}}}
	changed, prev := diffEvent(base, moved)
	if !slices.Equal(changed, []string{"attendees", "etag", "sequence"}) || prev == nil || prev.AttendeeResponses["a@x"] != "needsAction" {
		t.Fatalf("moved: %v %+v", changed, prev)
	}
	// A previous version stored in part: what it lacked counts as changed,
	// and the message says the comparison is incomplete.
	truncated := map[string]any{"id": "e1", "etag": `"1"`, "summary": "s", store.FieldTruncated: true}
	full := map[string]any{"id": "e1", "etag": `"2"`, "summary": "s", "description": "long", "attendees": []any{}}
	changed, prev = diffEvent(truncated, full)
	if !slices.Equal(changed, []string{"attendees", "description", "etag"}) || prev == nil || !prev.Incomplete {
		t.Fatalf("truncated previous: %v %+v", changed, prev)
	}
}
