package calendaremu

import (
	"encoding/base64"
	"encoding/json"
	"strconv"
	"time"
)

// Wire types. Field names and JSON types follow the Calendar v3 discovery
// document (calendar-api.json); only the fields listed here are kept, anything
// else a client sends is ignored (see README).

type evDateTime struct {
	Date     string `json:"date,omitempty"`
	DateTime string `json:"dateTime,omitempty"`
	TimeZone string `json:"timeZone,omitempty"`
}

type person struct {
	ID          string `json:"id,omitempty"`
	Email       string `json:"email,omitempty"`
	DisplayName string `json:"displayName,omitempty"`
	Self        bool   `json:"self,omitempty"`
}

type attendee struct {
	ID               string `json:"id,omitempty"`
	Email            string `json:"email,omitempty"`
	DisplayName      string `json:"displayName,omitempty"`
	Organizer        bool   `json:"organizer,omitempty"`
	Self             bool   `json:"self,omitempty"`
	Resource         bool   `json:"resource,omitempty"`
	Optional         bool   `json:"optional,omitempty"`
	ResponseStatus   string `json:"responseStatus,omitempty"`
	Comment          string `json:"comment,omitempty"`
	AdditionalGuests int32  `json:"additionalGuests,omitempty"`
}

type extProps struct {
	Private map[string]string `json:"private,omitempty"`
	Shared  map[string]string `json:"shared,omitempty"`
}

type reminderOverride struct {
	Method  string `json:"method,omitempty"`
	Minutes int32  `json:"minutes"`
}

type reminders struct {
	UseDefault bool               `json:"useDefault"`
	Overrides  []reminderOverride `json:"overrides,omitempty"`
}

type evSource struct {
	Title string `json:"title,omitempty"`
	URL   string `json:"url,omitempty"`
}

// eventBody is an Event as JSON, used both to parse requests and to answer.
type eventBody struct {
	Kind                    string      `json:"kind,omitempty"`
	Etag                    string      `json:"etag,omitempty"`
	ID                      string      `json:"id,omitempty"`
	Status                  string      `json:"status,omitempty"`
	HTMLLink                string      `json:"htmlLink,omitempty"`
	Created                 string      `json:"created,omitempty"`
	Updated                 string      `json:"updated,omitempty"`
	Summary                 string      `json:"summary,omitempty"`
	Description             string      `json:"description,omitempty"`
	Location                string      `json:"location,omitempty"`
	ColorID                 string      `json:"colorId,omitempty"`
	Creator                 *person     `json:"creator,omitempty"`
	Organizer               *person     `json:"organizer,omitempty"`
	Start                   *evDateTime `json:"start,omitempty"`
	End                     *evDateTime `json:"end,omitempty"`
	EndTimeUnspecified      bool        `json:"endTimeUnspecified,omitempty"`
	Recurrence              []string    `json:"recurrence,omitempty"`
	RecurringEventID        string      `json:"recurringEventId,omitempty"`
	OriginalStartTime       *evDateTime `json:"originalStartTime,omitempty"`
	Transparency            string      `json:"transparency,omitempty"`
	Visibility              string      `json:"visibility,omitempty"`
	ICalUID                 string      `json:"iCalUID,omitempty"`
	Sequence                *int32      `json:"sequence,omitempty"`
	Attendees               []attendee  `json:"attendees,omitempty"`
	AttendeesOmitted        bool        `json:"attendeesOmitted,omitempty"`
	ExtendedProperties      *extProps   `json:"extendedProperties,omitempty"`
	HangoutLink             string      `json:"hangoutLink,omitempty"`
	AnyoneCanAddSelf        *bool       `json:"anyoneCanAddSelf,omitempty"`
	GuestsCanInviteOthers   *bool       `json:"guestsCanInviteOthers,omitempty"`
	GuestsCanModify         *bool       `json:"guestsCanModify,omitempty"`
	GuestsCanSeeOtherGuests *bool       `json:"guestsCanSeeOtherGuests,omitempty"`
	PrivateCopy             *bool       `json:"privateCopy,omitempty"`
	Locked                  *bool       `json:"locked,omitempty"`
	Reminders               *reminders  `json:"reminders,omitempty"`
	Source                  *evSource   `json:"source,omitempty"`
	EventType               string      `json:"eventType,omitempty"`
	// The typed events' properties, kept as sent (eventtypes.go).
	BirthdayProperties        json.RawMessage `json:"birthdayProperties,omitempty"`
	FocusTimeProperties       json.RawMessage `json:"focusTimeProperties,omitempty"`
	OutOfOfficeProperties     json.RawMessage `json:"outOfOfficeProperties,omitempty"`
	WorkingLocationProperties json.RawMessage `json:"workingLocationProperties,omitempty"`
}

// tombstone is what Google guarantees for a cancelled event in a list: the id
// and status (plus the series link for a cancelled occurrence). Consumers must
// not rely on more, so the emulator sends no more.
type tombstone struct {
	Kind              string      `json:"kind"`
	Etag              string      `json:"etag"`
	ID                string      `json:"id"`
	Status            string      `json:"status"`
	RecurringEventID  string      `json:"recurringEventId,omitempty"`
	OriginalStartTime *evDateTime `json:"originalStartTime,omitempty"`
}

// event is one stored version of an event. Versions are immutable once stored:
// a change stores a new version, so lists can marshal outside the lock.
type event struct {
	b      eventBody
	seq    int64     // calendar change sequence of this version
	cno    int64     // creation order within the calendar (1-based)
	start  time.Time // instant of start (all-day: midnight in the calendar zone)
	end    time.Time
	allDay bool
	rule   *rrule         // parsed recurrence of a series master
	orig   time.Time      // original start of an exception
	loc    *time.Location // zone of a timed event (recurrence expands in it)
	updT   time.Time      // time of this version (b.Updated, parsed)
}

func (e *event) cancelled() bool { return e.b.Status == "cancelled" }

// wire returns what lists and reads send for this version.
func (e *event) wire(full bool) any {
	if e.cancelled() && !full {
		return &tombstone{Kind: "calendar#event", Etag: e.b.Etag, ID: e.b.ID, Status: "cancelled",
			RecurringEventID: e.b.RecurringEventID, OriginalStartTime: e.b.OriginalStartTime}
	}
	b := e.b
	return &b
}

// withMaxAttendees trims the attendee list as Google does for maxAttendees.
func withMaxAttendees(v any, max int) any {
	b, ok := v.(*eventBody)
	if !ok || max <= 0 || len(b.Attendees) <= max {
		return v
	}
	c := *b
	c.Attendees = nil
	for _, a := range b.Attendees {
		if a.Self {
			c.Attendees = append(c.Attendees, a)
		}
	}
	c.AttendeesOmitted = true
	return &c
}

const updatedLayout = "2006-01-02T15:04:05.000Z"

func fmtUpdated(t time.Time) string { return t.UTC().Format(updatedLayout) }

// etagFor mimics Google's event etags: a quoted number of about 16 digits that
// grows with every change (the server clock never repeats a microsecond).
func etagFor(t time.Time) string {
	return `"` + strconv.FormatInt(t.UnixMicro()*2, 10) + `"`
}

func htmlLink(id, calID string) string {
	return "https://www.google.com/calendar/event?eid=" + base64.RawURLEncoding.EncodeToString([]byte(id+" "+calID))
}

func int32p(v int32) *int32 { return &v }
