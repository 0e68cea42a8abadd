package calclient

// What a reader cannot see in full is not mirrored. Google answers
// events.list with the caller's accessRole: a freeBusyReader sees every
// event as a busy block (times, no details), a reader sees private (and
// confidential) events that way. A busy block is not the event: mirrored,
// it would pass for the event with its details removed. So, under every
// client this package makes, a reader's busy block becomes a tombstone
// (status cancelled): the mirror drops what a better reader left of it
// (announced deleted), and a free/busy-only listing is refused with
// ErrFreeBusyOnly, which shared/lifecycle turns into the calendar's
// free_busy_only status.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// ErrFreeBusyOnly: events.list answered with accessRole freeBusyReader: the
// grant sees busy blocks only, nothing to mirror.
var ErrFreeBusyOnly = errors.New("calclient: the grant sees this calendar as free/busy only")

// IsFreeBusyOnly reports ErrFreeBusyOnly.
func IsFreeBusyOnly(err error) bool { return errors.Is(err, ErrFreeBusyOnly) }

// busyBlocks rewrites events.list answers (see the file comment).
type busyBlocks struct{ base http.RoundTripper }

func (t busyBlocks) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.base.RoundTrip(req)
	if err != nil || req.Method != http.MethodGet || resp.StatusCode != http.StatusOK || !strings.HasSuffix(req.URL.Path, "/events") {
		return resp, err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	out, err := hideBusyBlocks(body)
	if err != nil {
		return nil, err
	}
	resp.Body = io.NopCloser(bytes.NewReader(out))
	resp.ContentLength = int64(len(out))
	resp.Header.Del("Content-Length")
	return resp, nil
}

// hideBusyBlocks is the rewrite of one events.list page: unchanged unless
// its accessRole hides details.
func hideBusyBlocks(body []byte) ([]byte, error) {
	switch accessRoleOf(body) {
	case "freeBusyReader":
		return nil, ErrFreeBusyOnly
	case "reader":
	default:
		return body, nil
	}
	var page map[string]json.RawMessage
	if err := json.Unmarshal(body, &page); err != nil {
		return body, nil
	}
	var items []map[string]json.RawMessage
	if err := json.Unmarshal(page["items"], &items); err != nil {
		return body, nil
	}
	hidden := 0
	for i, it := range items {
		var vis string
		_ = json.Unmarshal(it["visibility"], &vis)
		if vis != "private" && vis != "confidential" {
			continue
		}
		// The tombstone Google gives a deleted event: id and status, and
		// what places an occurrence in its series.
		tomb := map[string]json.RawMessage{"kind": it["kind"], "id": it["id"], "etag": it["etag"], "status": json.RawMessage(`"cancelled"`)}
		for _, k := range []string{"recurringEventId", "originalStartTime"} {
			if v, ok := it[k]; ok {
				tomb[k] = v
			}
		}
		items[i] = tomb
		hidden++
	}
	if hidden == 0 {
		return body, nil
	}
	raw, err := json.Marshal(items)
	if err != nil {
		return nil, fmt.Errorf("calclient: rewrite busy blocks: %w", err)
	}
	page["items"] = raw
	return json.Marshal(page)
}

// accessRoleOf reads a page's top-level accessRole, stopping there: Google
// (and the emulator) put it before the items, so an owner's page is not
// scanned whole. "" when absent or not JSON.
func accessRoleOf(body []byte) string {
	dec := json.NewDecoder(bytes.NewReader(body))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return ""
	}
	for dec.More() {
		key, err := dec.Token()
		if err != nil {
			return ""
		}
		if key == "accessRole" {
			var role string
			if dec.Decode(&role) != nil {
				return ""
			}
			return role
		}
		var skip json.RawMessage
		if dec.Decode(&skip) != nil {
			return ""
		}
	}
	return ""
}
