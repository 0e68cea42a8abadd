package webhook

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/calsync/calsync/shared/channeltoken"
	"github.com/calsync/calsync/shared/messages"
)

// A push on an identity's calendar-list channel (its token says
// r=calendarList) is published as a calendarList notification carrying the
// identity key, which the SyncWorker turns into a look at the list.
func TestCalendarListPushPublished(t *testing.T) {
	const identityKey = "i0123456789abcdefghijklmnop"
	pub := &recordingPublisher{}
	h := newTestHandler(t, pub, nil)
	tok, err := testKeys(t).MintFor(googleChannelID, channeltoken.ResourceCalendarList, identityKey, testExpiration)
	if err != nil {
		t.Fatal(err)
	}
	hd := googleHeaders(t, "exists", "4")
	hd.Set("X-Goog-Channel-Token", tok)
	hd.Set("X-Goog-Resource-URI", "https://www.googleapis.com/calendar/v3/users/me/calendarList?alt=json")
	if w := do(h, http.MethodPost, hd, ""); w.Code != http.StatusOK {
		t.Fatalf("status %d", w.Code)
	}
	if len(pub.msgs) != 1 {
		t.Fatalf("published %d", len(pub.msgs))
	}
	n, err := messages.ParseNotification(pub.msgs[0].data)
	if err != nil || n.Resource != messages.ResourceCalendarList || n.IdentityKey != identityKey || n.CalendarKey != "" || n.MessageNumber != 4 {
		t.Fatalf("published %s: %+v %v", pub.msgs[0].data, n, err)
	}
	if a := pub.msgs[0].attrs; a[messages.AttrIdentityKey] != identityKey || a[messages.AttrResource] != messages.ResourceCalendarList {
		t.Fatalf("attributes %v", a)
	}
	// The same token moved to an events push of another channel does not verify.
	hd.Set("X-Goog-Channel-ID", "other-channel")
	if w := do(h, http.MethodPost, hd, ""); w.Code != http.StatusForbidden {
		t.Fatalf("moved token: %d", w.Code)
	}
	var raw map[string]any
	_ = json.Unmarshal(pub.msgs[0].data, &raw)
	if _, ok := raw["calendarKey"]; ok {
		t.Fatalf("a list notification carries a calendar key: %s", pub.msgs[0].data)
	}
}
