package calendaremu

import (
	"errors"
	"strings"
)

// Calendar kinds Google treats differently, the ones that make a push-based
// sync fail without a word:
//
//   - KindHoliday (e.g. en.usa#holiday@group.v.calendar.google.com):
//     events.watch answers 400 pushNotSupportedForRequestedResource; it can
//     only be polled.
//   - KindBirthdays (addressbook#contacts@group.v.calendar.google.com):
//     deletions are not reported: a deleted event just disappears, from
//     incremental lists too, so only a full listing (and a sweep) sees it.
//
// The emulator lets the owner write to them (Google does not: their events
// come from Google's holiday data and the owner's contacts), so tests can
// change them.
const (
	KindDefault   = ""
	KindHoliday   = "holiday"
	KindBirthdays = "birthdays"
)

// BirthdaysCalendarID is the id Google gives every user's birthday calendar.
const BirthdaysCalendarID = "addressbook#contacts@group.v.calendar.google.com"

// CalendarSpec describes a calendar to create through AddCalendar.
type CalendarSpec struct {
	ID      string `json:"id"`
	Owner   string `json:"owner"`             // default: the default user
	Kind    string `json:"kind,omitempty"`    // KindDefault, KindHoliday or KindBirthdays
	Summary string `json:"summary,omitempty"` // default: the id
}

// AddCalendar creates a calendar with a given id and kind (calendars.insert
// makes ordinary calendars with generated ids).
func (s *Server) AddCalendar(spec CalendarSpec) error {
	switch spec.Kind {
	case KindDefault, KindHoliday, KindBirthdays:
	default:
		return errors.New("calendaremu: unknown calendar kind " + spec.Kind)
	}
	if spec.ID == "" || strings.ContainsAny(spec.ID, "/ ") {
		return errors.New("calendaremu: bad calendar id " + spec.ID)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if spec.Owner == "" {
		spec.Owner = s.opts.DefaultUser
	}
	if spec.Summary == "" {
		spec.Summary = spec.ID
	}
	if s.calendars[spec.ID] != nil {
		return errors.New("calendaremu: calendar exists: " + spec.ID)
	}
	s.ensureUserLocked(spec.Owner)
	c := newCalendar(spec.ID, spec.Owner, spec.Summary, s.opts.TimeZone, false, s.tick(), s.rng.Uint32())
	c.kind = spec.Kind
	s.calendars[spec.ID] = c
	return nil
}

func errPushNotSupported() *apiError {
	return newErr(400, "global", "pushNotSupportedForRequestedResource", "Push notifications are not supported by this resource.")
}
