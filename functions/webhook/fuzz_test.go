package webhook

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// FuzzParseNotification drives header parsing and token verification through
// the handler: it must never panic, and nothing is published unless the token
// carries a valid signature for that channel.
func FuzzParseNotification(f *testing.F) {
	k := testKeys(f)
	good, _ := k.Mint(googleChannelID, calKey, time.Now().Add(time.Hour))
	f.Add(googleChannelID, good, "1", "sync", "ret08u3rv24htgh289g", "https://x/y", "Tue, 19 Nov 2013 01:13:52 GMT")
	f.Add(" "+googleChannelID+" ", " "+good, "10", " exists", " r", "u", "")
	f.Add("c", "v=1&k=k1&c=cal&s=AAAA", "-1", "gone", "", "", "\x00")
	f.Add("", "", "", "", "", "", "")
	f.Add(googleChannelID, strings.Replace(good, calKey, otherCalKey, 1), "99999999999999999999", "not_exists", "r", "u", "e")
	f.Fuzz(func(t *testing.T, channel, token, number, state, resourceID, resourceURI, expiration string) {
		pub := &recordingPublisher{}
		h := newTestHandler(t, pub, nil)
		r := httptest.NewRequest(http.MethodPost, "/", nil)
		for name, v := range map[string]string{
			HeaderChannelID: channel, HeaderChannelToken: token, HeaderMessageNumber: number,
			HeaderResourceState: state, HeaderResourceID: resourceID, HeaderResourceURI: resourceURI,
			HeaderChannelExpiration: expiration,
		} {
			r.Header[name] = []string{v} // raw, as a hostile client could send
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if len(pub.msgs) == 0 {
			if w.Code == http.StatusOK {
				t.Fatalf("200 without a publish")
			}
			return
		}
		if _, err := k.Verify(strings.TrimSpace(channel), strings.TrimSpace(token)); err != nil {
			t.Fatalf("published a notification whose token does not verify: %v", err)
		}
		if w.Code != http.StatusOK {
			t.Fatalf("published but answered %d", w.Code)
		}
	})
}
