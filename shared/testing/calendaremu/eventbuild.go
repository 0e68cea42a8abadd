package calendaremu

import (
	"slices"
	"strings"
	"time"
)

// Validation and normalization of event bodies, shared by insert, update and
// patch. Messages follow Google's where known.

var defaultReminders = &reminders{UseDefault: true}

// validEventID applies Google's rule for client ids: base32hex (a-v, 0-9), 5-1024 chars.
func validEventID(id string) bool {
	if len(id) < 5 || len(id) > 1024 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'v') {
			return false
		}
	}
	return true
}

// parseWhen parses an EventDateTime; which is "start" or "end".
func parseWhen(d *evDateTime, which string, calLoc *time.Location) (t time.Time, allDay bool, loc *time.Location, norm *evDateTime, err *apiError) {
	if d == nil || (d.Date == "" && d.DateTime == "") {
		return t, false, nil, nil, errRequired("Missing " + which + " time.")
	}
	if d.Date != "" && d.DateTime != "" {
		return t, false, nil, nil, errInvalid("Invalid " + which + " time.")
	}
	var zone *time.Location
	if d.TimeZone != "" {
		z, zerr := loadZone(d.TimeZone)
		if zerr != nil {
			return t, false, nil, nil, errInvalid("Invalid time zone definition for " + which + " time.")
		}
		zone = z
	}
	if d.Date != "" {
		day, perr := time.Parse("2006-01-02", d.Date)
		if perr != nil {
			return t, false, nil, nil, errInvalid("Invalid " + which + " time.")
		}
		y, m, dd := day.Date()
		return time.Date(y, m, dd, 0, 0, 0, 0, calLoc), true, time.UTC, &evDateTime{Date: d.Date, TimeZone: d.TimeZone}, nil
	}
	tt, perr := time.Parse(time.RFC3339Nano, d.DateTime)
	if perr != nil {
		if zone == nil {
			if _, lerr := time.Parse("2006-01-02T15:04:05", d.DateTime); lerr == nil {
				return t, false, nil, nil, errRequired("Missing time zone definition for " + which + " time.")
			}
			return t, false, nil, nil, errInvalid("Invalid " + which + " time.")
		}
		tt, perr = time.ParseInLocation("2006-01-02T15:04:05", d.DateTime, zone)
		if perr != nil {
			return t, false, nil, nil, errInvalid("Invalid " + which + " time.")
		}
	}
	if tt.Year() < 1 || tt.Year() > 9999 {
		return t, false, nil, nil, errInvalid("Invalid " + which + " time.")
	}
	tt = tt.Truncate(time.Second)
	loc = tt.Location()
	if zone != nil {
		loc = zone
		tt = tt.In(zone)
	}
	return tt, false, loc, &evDateTime{DateTime: tt.Format(time.RFC3339), TimeZone: d.TimeZone}, nil
}

// normalize validates b and fills the derived fields of ev from it.
func normalize(ev *event, b eventBody, c *calData, isException bool) *apiError {
	st, allDay, loc, ns, err := parseWhen(b.Start, "start", c.loc)
	if err != nil {
		return err.at("other", "start")
	}
	en, allDayE, _, ne, err := parseWhen(b.End, "end", c.loc)
	if err != nil {
		return err.at("other", "end")
	}
	if allDay != allDayE {
		return errInvalid("Start and end times must either both be date or both be dateTime.")
	}
	if en.Before(st) || (allDay && !en.After(st)) {
		return newErr(400, "calendar", "timeRangeEmpty", "The specified time range is empty.")
	}
	b.Start, b.End = ns, ne
	switch b.Status {
	case "":
		b.Status = "confirmed"
	case "confirmed", "tentative", "cancelled":
	default:
		return errInvalid("Invalid value for status: " + b.Status)
	}
	switch b.Transparency {
	case "", "opaque", "transparent":
	default:
		return errInvalid("Invalid value for transparency: " + b.Transparency)
	}
	switch b.Visibility {
	case "", "default", "public", "private", "confidential":
	default:
		return errInvalid("Invalid value for visibility: " + b.Visibility)
	}
	if b.EventType == "" {
		b.EventType = "default"
	} else if !slices.Contains(eventTypes, b.EventType) {
		return errInvalid("Invalid value for eventType: " + b.EventType)
	}
	for i := range b.Attendees {
		a := &b.Attendees[i]
		if strings.TrimSpace(a.Email) == "" {
			return errRequired("Missing attendee email.")
		}
		switch a.ResponseStatus {
		case "":
			a.ResponseStatus = "needsAction"
		case "needsAction", "declined", "tentative", "accepted":
		default:
			return errInvalid("Invalid attendee response status.")
		}
		if a.AdditionalGuests < 0 {
			return errInvalid("Invalid additional guests value.")
		}
	}
	if b.Reminders == nil {
		b.Reminders = defaultReminders // shared: stored versions are never mutated
	}
	if len(b.Reminders.Overrides) > 5 {
		return newErr(400, "calendar", "cannotUseMoreThanFiveOverrides", "Cannot specify more than 5 override reminders.")
	}
	for _, o := range b.Reminders.Overrides {
		if o.Method != "email" && o.Method != "popup" {
			return errRequired("Missing reminder method.")
		}
		if o.Minutes < 0 || o.Minutes > 40320 {
			return errInvalid("Invalid reminder minutes.")
		}
	}
	if b.Reminders.UseDefault && len(b.Reminders.Overrides) > 0 {
		return newErr(400, "calendar", "cannotUseDefaultRemindersAndSpecifyOverride", "Cannot specify both default reminders and overrides at the same time.")
	}
	if b.ExtendedProperties != nil && len(b.ExtendedProperties.Private) == 0 && len(b.ExtendedProperties.Shared) == 0 {
		b.ExtendedProperties = nil
	}
	ev.rule = nil
	if isException {
		b.Recurrence = nil
	}
	if len(b.Recurrence) > 0 {
		if !allDay && b.Start.TimeZone == "" {
			// Google needs a zone to expand a timed series.
			return errRequired("Missing time zone definition for start time.")
		}
		r, rerr := parseRecurrence(b.Recurrence, loc)
		if rerr != nil {
			return rerr
		}
		ev.rule = r
	}
	ev.start, ev.end, ev.allDay, ev.loc = st, en, allDay, loc
	ev.b = b
	return nil
}

// same reports whether the times of two versions are the same (sequence bumps when not).
func sameTiming(a, b *event) bool {
	return a.start.Equal(b.start) && a.end.Equal(b.end) && strings.Join(a.b.Recurrence, "\n") == strings.Join(b.b.Recurrence, "\n")
}
