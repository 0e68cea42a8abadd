package syncworker

import (
	"bytes"
	"context"
	"encoding/base64"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/calsync/calsync/shared/logging"
	"github.com/calsync/calsync/shared/messages"
	"github.com/calsync/calsync/shared/testing/testlog"
)

// recordingSyncer keeps what reached the sync engine.
type recordingSyncer struct{ got []messages.Notification }

func (s *recordingSyncer) HandleNotification(_ context.Context, n messages.Notification) error {
	s.got = append(s.got, n)
	return nil
}

// FuzzPushRequest drives arbitrary bodies (and Ce-Id headers) through
// ServeHTTP: it never panics; a notification reaches the sync engine only if
// it is valid (answered 204, no log line); everything else is acknowledged
// (200) with exactly one ERROR invalid_message line of bounded size and a
// known reason.
func FuzzPushRequest(f *testing.F) {
	const key = "c0123456789abcdefghijklmnop"
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	valid := `{"calendarKey":"` + key + `","resourceState":"exists"}`
	for _, body := range []string{
		string(googlePush([]byte(valid), map[string]string{"calendarKey": key}, "1", 1)),
		`{"message":{"data":"` + b64(valid) + `","message_id":"2"},"subscription":"s"}`,
		`{"message":{"data":"` + base64.RawURLEncoding.EncodeToString([]byte(valid)) + `"}}`,
		`{"message":{"data":"` + b64(`{"calendarKey":"../../x","resourceState":"exists"}`) + `"}}`,
		`{"message":{"data":"` + b64(`{"calendarKey":"`+key+`","resourceState":"gone"}`) + `"}}`,
		`{"message":{"data":"` + b64("not json") + `"},"deliveryAttempt":"x"}`,
		`{"message":{"data":"!!!"}}`, `{"message":{}}`, `{"message":null}`, `{}`, `[]`, `null`, ``, `"`, "\x00\xff",
	} {
		f.Add([]byte(body), "")
	}
	f.Add([]byte(`{"message":{"data":"`+b64(valid)+`"},"subscription":"s"}`), "ce-1")

	reasons := map[string]bool{ReasonBodyTooLarge: true, ReasonNotPushRequest: true, ReasonEmptyData: true, ReasonBadBase64: true, ReasonUnknownSubscription: true,
		messages.ReasonNotJSON: true, messages.ReasonNoCalendarKey: true, messages.ReasonBadCalendarKey: true, messages.ReasonUnknownResourceState: true}
	f.Fuzz(func(t *testing.T, body []byte, ceID string) {
		var logs testlog.Buffer
		rec := &recordingSyncer{}
		w := &Worker{Syncer: rec, Logger: logging.New(&logs, slog.LevelInfo), ProjectID: "p", Subscriptions: []string{testSubscription}}
		r := httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(body))
		if ceID != "" {
			r.Header.Set("Ce-Id", ceID)
		}
		rw := httptest.NewRecorder()
		w.ServeHTTP(rw, r)
		lines := logs.Lines()
		if len(rec.got) > 0 {
			n := rec.got[0]
			if len(rec.got) != 1 || !messages.ValidCalendarKey(n.CalendarKey) || rw.Code != http.StatusNoContent || len(lines) != 0 {
				t.Fatalf("handled %+v: answered %d, %d log lines", rec.got, rw.Code, len(lines))
			}
			if _, err := messages.ParseNotification([]byte(`{"calendarKey":"` + n.CalendarKey + `","resourceState":"` + n.ResourceState + `"}`)); err != nil {
				t.Fatalf("an invalid notification reached the sync engine: %v", err)
			}
			return
		}
		if rw.Code != http.StatusOK || len(lines) != 1 || lines[0]["severity"] != "ERROR" || lines[0][logging.KeyEvent] != logging.EventInvalidMessage {
			t.Fatalf("not handled: answered %d, log:\n%s", rw.Code, logs.String())
		}
		if reason, _ := lines[0][logging.KeyReason].(string); !reasons[reason] {
			t.Fatalf("unknown reason %q", reason)
		}
		// Every quoted value is clipped to 128 bytes, so a line stays small
		// whatever the body (4 such values, at worst 6 bytes of JSON escape
		// per byte, plus the fixed fields).
		if n := len(strings.TrimSpace(logs.String())); n > 4096 {
			t.Fatalf("log line of %d bytes:\n%s", n, logs.String())
		}
	})
}
