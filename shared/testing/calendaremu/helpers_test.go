package calendaremu

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"
	"google.golang.org/api/calendar/v3"
	"google.golang.org/api/googleapi"
	"google.golang.org/api/option"
)

// captured is one API response seen by the schema check.
type captured struct {
	method string
	status int
	body   []byte
}

var (
	capMu sync.Mutex
	caps  []captured
)

// startTest starts an emulator whose responses are recorded for the schema test.
func startTest(t *testing.T, opts Options) (*Server, string, *calendar.Service) {
	t.Helper()
	if opts.PushRetryBaseDelay == 0 {
		opts.PushRetryBaseDelay = 10 * time.Millisecond
	}
	srv := New(opts)
	srv.respHook = func(method string, status int, body []byte) {
		capMu.Lock()
		caps = append(caps, captured{method, status, append([]byte(nil), body...)})
		capMu.Unlock()
	}
	base, stop, err := srv.Listen(context.Background(), "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stop(); srv.Close() })
	svc, err := NewService(context.Background(), base)
	if err != nil {
		t.Fatal(err)
	}
	return srv, base, svc
}

func reasonOf(t *testing.T, err error) (int, string) {
	t.Helper()
	var ge *googleapi.Error
	if !errors.As(err, &ge) {
		t.Fatalf("want *googleapi.Error, got %T %v", err, err)
	}
	if len(ge.Errors) == 0 {
		t.Fatalf("googleapi.Error without Errors: %v", ge)
	}
	return ge.Code, ge.Errors[0].Reason
}

func wantErr(t *testing.T, err error, code int, reason string) {
	t.Helper()
	if err == nil {
		t.Fatalf("want %d %s, got success", code, reason)
	}
	c, r := reasonOf(t, err)
	if c != code || r != reason {
		t.Fatalf("want %d %s, got %d %s (%v)", code, reason, c, r, err)
	}
}

func timed(summary string, start time.Time, d time.Duration) *calendar.Event {
	return &calendar.Event{Summary: summary,
		Start: &calendar.EventDateTime{DateTime: start.Format(time.RFC3339)},
		End:   &calendar.EventDateTime{DateTime: start.Add(d).Format(time.RFC3339)}}
}

// listAll follows pages and returns the items and the final sync token.
func listAll(t *testing.T, call func(pageToken string) (*calendar.Events, error)) ([]*calendar.Event, string, int) {
	t.Helper()
	var all []*calendar.Event
	pt, pages := "", 0
	for {
		res, err := call(pt)
		if err != nil {
			t.Fatalf("list page %d: %v", pages, err)
		}
		pages++
		all = append(all, res.Items...)
		if res.NextPageToken == "" {
			if res.NextSyncToken == "" {
				t.Fatal("last page without nextSyncToken")
			}
			return all, res.NextSyncToken, pages
		}
		if res.NextSyncToken != "" {
			t.Fatal("nextSyncToken on a page that is not the last")
		}
		pt = res.NextPageToken
	}
}

// errItem is the first item of errors[] in a Google error body.
func errItem(t *testing.T, err error) map[string]any {
	t.Helper()
	var ge *googleapi.Error
	if !errors.As(err, &ge) {
		t.Fatalf("want *googleapi.Error, got %v", err)
	}
	var body struct {
		Error struct{ Errors []map[string]any } `json:"error"`
	}
	if json.Unmarshal([]byte(ge.Body), &body) != nil || len(body.Error.Errors) == 0 {
		t.Fatalf("error body without errors[]: %s", ge.Body)
	}
	return body.Error.Errors[0]
}

func errorsAs(err error, target any) bool { return errors.As(err, target) }

// consent runs the OAuth flow for user with the given scopes (no browser:
// the emulator's /authorize redirects at once) and returns the token reply
// and a client using it.
func consent(t *testing.T, base, user string, scopes ...string) (*oauth2.Token, *calendar.Service) {
	t.Helper()
	ctx := context.Background()
	tok, cfg, err := Consent(ctx, base, user, scopes...)
	if err != nil {
		t.Fatal(err)
	}
	svc, err := NewService(ctx, base, option.WithTokenSource(cfg.TokenSource(ctx, tok)))
	if err != nil {
		t.Fatal(err)
	}
	return tok, svc
}
