package calendaremu

import (
	"slices"
	"time"
)

// Event types (Google's guide "Event types"): every event has one, default
// unless set at creation, and it never changes. The rules calsync can meet:
//
//   - focusTime, outOfOffice and workingLocation exist on primary
//     calendars only; focusTime and outOfOffice are timed, not all-day.
//   - birthday: an all-day, one-day event recurring yearly
//     (RRULE:FREQ=YEARLY) on a primary calendar; the events of the
//     contacts' birthday calendar (KindBirthdays) are all of this type.
//   - fromGmail events are made by Gmail, never through the API
//     (InsertFromGmail stands in for Gmail).
//
// events.list's eventTypes keeps the listed types only (all without it).

var eventTypes = []string{"default", "birthday", "focusTime", "fromGmail", "outOfOffice", "workingLocation"}

// checkNewEventType applies the creation rules to a validated new event.
func checkNewEventType(ev *event, c *calData) *apiError {
	b := &ev.b
	if c.kind == KindBirthdays {
		if b.EventType != "default" && b.EventType != "birthday" {
			return errInvalid("Only birthday events can be created on this calendar.")
		}
		b.EventType = "birthday"
		return nil
	}
	switch b.EventType {
	case "fromGmail":
		return errInvalid("Events of type 'fromGmail' cannot be created through the API.")
	case "focusTime", "outOfOffice", "workingLocation":
		if !c.primary {
			return errInvalid("Events of type '" + b.EventType + "' can only be created on primary calendars.")
		}
		if ev.allDay && b.EventType != "workingLocation" {
			return errInvalid("Events of type '" + b.EventType + "' cannot be all-day events.")
		}
	case "birthday":
		oneDay := ev.allDay && ev.end.Sub(ev.start) <= 25*time.Hour
		if !c.primary || !oneDay || len(b.Recurrence) != 1 || b.Recurrence[0] != "RRULE:FREQ=YEARLY" {
			return errInvalid("Birthday events must be one-day all-day events recurring yearly (RRULE:FREQ=YEARLY) on a primary calendar.")
		}
	}
	return nil
}

// keepEventType applies "the type never changes" to an update or patch
// (a body without eventType keeps the event's).
func keepEventType(in *eventBody, cur *event) *apiError {
	if in.EventType == "" {
		in.EventType = cur.b.EventType
	}
	if in.EventType != cur.b.EventType {
		return errInvalid("The event type cannot be changed.").at("other", "eventType")
	}
	return nil
}

// parseEventTypes reads events.list's eventTypes (repeatable).
func parseEventTypes(vals []string) ([]string, *apiError) {
	for _, v := range vals {
		if !slices.Contains(eventTypes, v) {
			return nil, errInvalidParam("eventTypes", v)
		}
	}
	return vals, nil
}

// typeMatches applies events.list's eventTypes to one item.
func typeMatches(lq *listQuery, ev *event) bool {
	return len(lq.eventTypes) == 0 || slices.Contains(lq.eventTypes, ev.b.EventType)
}

// InsertFromGmail adds an event of type fromGmail to a calendar, as Gmail
// does from a reservation email (the API refuses to create them). It
// returns the event's id.
func (s *Server) InsertFromGmail(calendarID, summary string, start, end time.Time) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.calendars[calendarID]
	if c == nil {
		return "", errNotFound()
	}
	b := eventBody{ID: randomBase32(16), Summary: summary, EventType: "fromGmail",
		Start: &evDateTime{DateTime: start.Format(time.RFC3339)}, End: &evDateTime{DateTime: end.Format(time.RFC3339)}}
	ev := &event{}
	if err := normalize(ev, b, c, false); err != nil {
		return "", err
	}
	s.finishInsertLocked(c, ev, c.owner)
	return b.ID, nil
}
