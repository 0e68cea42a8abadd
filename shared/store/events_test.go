package store

import (
	"context"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"google.golang.org/api/calendar/v3"

	"github.com/calsync/calsync/shared/testing/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func oddEvent() *calendar.Event {
	return &calendar.Event{
		Id: "abc123", Etag: `"3576000000000001"`, Status: "confirmed", Summary: "ünïcødé 🗓 \u0000-free \"quoted\"",
		Description: strings.Repeat("long ✓ ", 200*1024/8),
		Sequence:    7,
		Start:       &calendar.EventDateTime{DateTime: "2026-03-29T01:30:00+01:00", TimeZone: "Europe/Paris"},
		End:         &calendar.EventDateTime{DateTime: "2026-03-29T03:30:00+02:00", TimeZone: "Europe/Paris"},
		Reminders:   &calendar.EventReminders{Overrides: []*calendar.EventReminder{{Method: "popup", Minutes: 10}}, ForceSendFields: []string{"UseDefault"}},
		ExtendedProperties: &calendar.EventExtendedProperties{
			Private: map[string]string{"a.b": "dot", "`x`": "backticks", " ": "space", "ünï": "unicode", "": "empty?", "__r__": "reserved", "~t": "tilde"},
			Shared:  map[string]string{"a.b.c": "1"},
		},
		Attendees: []*calendar.EventAttendee{{Email: "a@x", ResponseStatus: "accepted", AdditionalGuests: 2}},
	}
}

func TestEventDocRoundTrip(t *testing.T) {
	ctx := context.Background()
	s := testStore(t)
	l := holdLease(t, s, "odd@x")
	ckey := CalendarKey("odd@x")
	ev := oddEvent()
	allDay := &calendar.Event{Id: "allday1", Etag: `"2"`, Status: "confirmed",
		Start: &calendar.EventDateTime{Date: "2026-07-04"}, End: &calendar.EventDateTime{Date: "2026-07-05"}}
	ny, _ := time.LoadLocation("America/New_York")
	for _, tc := range []struct {
		ev        *calendar.Event
		loc       *time.Location
		wantStart time.Time
	}{
		{ev, nil, time.Date(2026, 3, 29, 0, 30, 0, 0, time.UTC)},
		{allDay, ny, time.Date(2026, 7, 4, 4, 0, 0, 0, time.UTC)},
		{allDay, nil, time.Date(2026, 7, 4, 0, 0, 0, 0, time.UTC)},
		// Replacements (an update of every field over the stored version):
		// the odd event by one with few fields (the others must go), then back.
		{&calendar.Event{Id: ev.Id, Etag: `"9"`, Status: "confirmed", Start: allDay.Start, End: allDay.End}, nil, time.Date(2026, 7, 4, 0, 0, 0, 0, time.UTC)},
		{ev, nil, time.Date(2026, 3, 29, 0, 30, 0, 0, time.UTC)},
	} {
		doc, err := EventDoc(tc.ev, tc.loc, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		stored, err := s.GetEvents(ctx, ckey, []string{tc.ev.Id})
		if err != nil {
			t.Fatal(err)
		}
		w := EventWrite{ID: tc.ev.Id, Doc: doc, Replaces: stored[tc.ev.Id]}
		if !w.Replaces.Exists {
			w.Delta = 1
		}
		if _, err := s.WriteEvents(ctx, ckey, l, []EventWrite{w}); err != nil {
			t.Fatal(err)
		}
		snap, err := s.Events(ckey).Doc(tc.ev.Id).Get(ctx)
		if err != nil {
			t.Fatal(err)
		}
		data := snap.Data()
		if got := data[FieldStartTime].(time.Time); !got.Equal(tc.wantStart) {
			t.Errorf("%s startTime = %v, want %v", tc.ev.Id, got, tc.wantStart)
		}
		if tc.ev.Sequence != 0 {
			if _, ok := data["sequence"].(int64); !ok {
				t.Errorf("sequence stored as %T, want int64", data["sequence"])
			}
		}
		back, err := EventJSON(data)
		if err != nil {
			t.Fatal(err)
		}
		orig, _ := json.Marshal(tc.ev)
		var a, b any
		_ = json.Unmarshal(orig, &a)
		_ = json.Unmarshal(back, &b)
		if !reflect.DeepEqual(a, b) {
			t.Errorf("%s: round trip differs:\n google %.300s\n mirror %.300s", tc.ev.Id, orig, back)
		}
	}
	// Over Firestore's limit: stored without description and attendees.
	huge := oddEvent()
	huge.Id = "huge1"
	huge.Description = strings.Repeat("x", 1100*1024)
	doc, err := EventDoc(huge, nil, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if doc[FieldTruncated] != true || doc["description"] != nil || doc["summary"] != huge.Summary {
		t.Fatalf("oversize doc: truncated=%v", doc[FieldTruncated])
	}
	if _, err := s.WriteEvents(ctx, ckey, l, []EventWrite{{ID: huge.Id, Doc: doc}}); err != nil {
		t.Fatal(err)
	}
	m, err := s.GetEvents(ctx, ckey, []string{"abc123", "nothere"})
	if err != nil {
		t.Fatal(err)
	}
	if !m["abc123"].Exists || m["abc123"].Etag != ev.Etag || m["nothere"].Exists {
		t.Fatalf("GetEvents: %+v", m)
	}
}
