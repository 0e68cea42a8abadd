package calclient

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

// A reader's busy blocks (private events) become tombstones that keep what
// places them (id, etag, series); everything else is left as Google sent
// it; a free/busy-only page is refused.
func TestHideBusyBlocks(t *testing.T) {
	page := func(role string) []byte {
		return []byte(`{"kind":"calendar#events","accessRole":"` + role + `","nextSyncToken":"tok","items":[
			{"kind":"calendar#event","id":"open","etag":"\"1\"","status":"confirmed","summary":"standup"},
			{"kind":"calendar#event","id":"doc","etag":"\"2\"","status":"confirmed","visibility":"private","start":{"dateTime":"2026-01-01T10:00:00Z"}},
			{"kind":"calendar#event","id":"occ","etag":"\"3\"","status":"confirmed","visibility":"confidential","recurringEventId":"ser",
			 "originalStartTime":{"dateTime":"2026-01-02T10:00:00Z"}}]}`)
	}
	for _, role := range []string{"owner", "writer", ""} {
		if out, err := hideBusyBlocks(page(role)); err != nil || string(out) != string(page(role)) {
			t.Fatalf("%q: changed: %s %v", role, out, err)
		}
	}
	out, err := hideBusyBlocks(page("reader"))
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		NextSyncToken string           `json:"nextSyncToken"`
		Items         []map[string]any `json:"items"`
	}
	if err := json.Unmarshal(out, &got); err != nil || got.NextSyncToken != "tok" || len(got.Items) != 3 {
		t.Fatalf("rewritten page: %s %v", out, err)
	}
	if it := got.Items[0]; it["summary"] != "standup" || it["status"] != "confirmed" {
		t.Errorf("a public event changed: %v", it)
	}
	if it := got.Items[1]; it["status"] != "cancelled" || it["id"] != "doc" || it["etag"] != `"2"` || it["start"] != nil || it["visibility"] != nil {
		t.Errorf("a private event's busy block: %v", it)
	}
	if it := got.Items[2]; it["status"] != "cancelled" || it["recurringEventId"] != "ser" || it["originalStartTime"] == nil {
		t.Errorf("a confidential occurrence's busy block: %v", it)
	}
	if _, err := hideBusyBlocks(page("freeBusyReader")); !errors.Is(err, ErrFreeBusyOnly) {
		t.Fatalf("free/busy page: %v", err)
	}
	if out, err := hideBusyBlocks([]byte("<html>")); err != nil || string(out) != "<html>" {
		t.Fatalf("not JSON: %s %v", out, err)
	}
}

// What the rewrite costs an owner's page of 2,500 events (untouched).
func BenchmarkHideBusyBlocksOwnerPage(b *testing.B) {
	var items []string
	for i := range 2500 {
		items = append(items, `{"kind":"calendar#event","id":"e`+string(rune('a'+i%26))+`","etag":"\"1\"","status":"confirmed","summary":"an event with a summary","description":"`+
			strings.Repeat("d", 300)+`","start":{"dateTime":"2026-01-01T10:00:00Z"},"end":{"dateTime":"2026-01-01T11:00:00Z"}}`)
	}
	page := []byte(`{"kind":"calendar#events","accessRole":"owner","items":[` + strings.Join(items, ",") + `]}`)
	b.SetBytes(int64(len(page)))
	for b.Loop() {
		if _, err := hideBusyBlocks(page); err != nil {
			b.Fatal(err)
		}
	}
}
