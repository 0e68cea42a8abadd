package calendaremu

import (
	"errors"
	"strings"
)

// Calendar kinds Google treats differently, the ones that make a push-based
// sync fail without a word:
//
//   - KindHoliday (e.g. en.usa#holiday@group.v.calendar.google.com),
//     KindBirthdays and KindWeekNumbers (e.g.
//     e_2_en#weeknum@group.v.calendar.google.com): events.watch answers 400
//     pushNotSupportedForRequestedResource; they can only be polled.
//   - KindBirthdays (addressbook#contacts@group.v.calendar.google.com):
//     deletions are not reported either: a deleted event just disappears,
//     from incremental lists too, so only a full listing (and a sweep) sees
//     it. Its events are of type birthday (eventtypes.go).
//
// The emulator lets the owner write to them (Google does not: their events
// come from Google's holiday data and the owner's contacts), so tests can
// change them.
const (
	KindDefault     = ""
	KindHoliday     = "holiday"
	KindBirthdays   = "birthdays"
	KindWeekNumbers = "weekNumbers"
)

// pushRefused reports the kinds events.watch refuses.
func pushRefused(kind string) bool {
	return kind == KindHoliday || kind == KindBirthdays || kind == KindWeekNumbers
}

// BirthdaysCalendarID is the id Google gives every user's birthday calendar.
const BirthdaysCalendarID = "addressbook#contacts@group.v.calendar.google.com"

// CalendarSpec describes a calendar to create through AddCalendar.
type CalendarSpec struct {
	ID      string `json:"id"`
	Owner   string `json:"owner"`             // default: the default user
	Kind    string `json:"kind,omitempty"`    // KindDefault, KindHoliday, KindBirthdays or KindWeekNumbers
	Summary string `json:"summary,omitempty"` // default: the id
}

// AddCalendar creates a calendar with a given id and kind (calendars.insert
// makes ordinary calendars with generated ids).
func (s *Server) AddCalendar(spec CalendarSpec) error {
	switch spec.Kind {
	case KindDefault, KindHoliday, KindBirthdays, KindWeekNumbers:
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
