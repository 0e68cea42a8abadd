package calendaremu

import (
	"encoding/json"
	"errors"
	"io"
)

// calendars.insert/get/delete (calendarList: calendarlist.go). Every calendar
// has a single owner and may be shared (acl.go); other users get 404, as
// Google answers for calendars you cannot see.

type calendarBody struct {
	Kind        string `json:"kind,omitempty"`
	Etag        string `json:"etag,omitempty"`
	ID          string `json:"id,omitempty"`
	Summary     string `json:"summary,omitempty"`
	Description string `json:"description,omitempty"`
	Location    string `json:"location,omitempty"`
	TimeZone    string `json:"timeZone,omitempty"`
}

type eventReminder struct {
	Method  string `json:"method"`
	Minutes int32  `json:"minutes"`
}

func (c *calData) body() *calendarBody {
	return &calendarBody{Kind: "calendar#calendar", Etag: c.etag, ID: c.id, Summary: c.summary,
		Description: c.description, Location: c.location, TimeZone: c.timeZone}
}

func (s *Server) calendarsInsert(rq *request) (int, any, *apiError) {
	var in calendarBody
	if err := decodeBody(rq, &in); err != nil {
		return 0, nil, err
	}
	if in.Summary == "" {
		return 0, nil, errRequired("Missing title.")
	}
	if in.TimeZone != "" {
		if _, err := loadZone(in.TimeZone); err != nil {
			return 0, nil, errInvalid("Invalid time zone definition.")
		}
	} else {
		in.TimeZone = s.opts.TimeZone
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	id := "c_" + randomBase32(20) + "@group.calendar.google.com"
	c := newCalendar(id, rq.user, in.Summary, in.TimeZone, false, s.tick(), s.rng.Uint32())
	c.description, c.location = in.Description, in.Location
	s.calendars[id] = c
	return 200, c.body(), nil
}

func (s *Server) calendarsGet(rq *request) (int, any, *apiError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, err := s.calendarLocked(rq.user, rq.calID)
	if err != nil {
		return 0, nil, err
	}
	return 200, c.body(), nil
}

func (s *Server) calendarsDelete(rq *request) (int, any, *apiError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, err := s.calendarLocked(rq.user, rq.calID)
	if err != nil {
		return 0, nil, err
	}
	if c.primary {
		// Google: secondary calendars only; primary ones are cleared with calendars.clear.
		return 0, nil, errInvalid("Cannot delete the primary calendar.")
	}
	delete(s.calendars, c.id)
	for _, ch := range s.channels {
		if ch.cal == c {
			ch.stopLocked()
		}
	}
	return 204, nil, nil
}

const maxBody = 1 << 20

// decodeBody parses a JSON request body into v. Unknown fields are ignored;
// malformed JSON is 400 parseError, a wrong JSON type 400 invalid.
func decodeBody(rq *request, v any) *apiError {
	data, err := io.ReadAll(io.LimitReader(rq.r.Body, maxBody+1))
	if err != nil {
		return errParse()
	}
	if len(data) > maxBody {
		return newErr(413, "global", "uploadTooLarge", "Request Entity Too Large")
	}
	if len(data) == 0 {
		return errRequired("Required")
	}
	if err := json.Unmarshal(data, v); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return errInvalid("Invalid value at '" + te.Field + "'.")
		}
		return errParse()
	}
	return nil
}
