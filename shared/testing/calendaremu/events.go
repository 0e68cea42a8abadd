package calendaremu

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// events.insert/get/update/patch/delete. An instance id (<master>_<stamp>) with
// no stored exception resolves to a synthesized occurrence; writing or deleting
// it stores an exception (deleting: a cancelled one).

func (s *Server) eventsInsert(rq *request) (int, any, *apiError) {
	var in eventBody
	if err := decodeBody(rq, &in); err != nil {
		return 0, nil, err
	}
	if err := checkCommonParams(rq); err != nil {
		return 0, nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c, err := s.calendarLocked(rq.user, rq.calID)
	if err != nil {
		return 0, nil, err
	}
	if in.ID != "" {
		if !validEventID(in.ID) {
			return 0, nil, errInvalid("Invalid resource id value.")
		}
		if c.events[in.ID] != nil {
			return 0, nil, errDuplicate()
		}
	} else {
		in.ID = randomBase32(16)
	}
	in.RecurringEventID, in.OriginalStartTime = "", nil
	ev := &event{}
	if err := normalize(ev, in, c, false); err != nil {
		return 0, nil, err
	}
	if err := checkNewEventType(ev, c); err != nil { // eventtypes.go
		return 0, nil, err
	}
	s.finishInsertLocked(c, ev, rq.user)
	return 200, ev.wire(true), nil
}

// finishInsertLocked fills the fields Google sets on creation and stores ev.
func (s *Server) finishInsertLocked(c *calData, ev *event, user string) {
	now := s.tick()
	b := &ev.b
	b.Kind = "calendar#event"
	b.Created = fmtUpdated(now)
	if b.ICalUID == "" {
		b.ICalUID = b.ID + "@google.com"
	}
	b.Creator, b.Organizer = c.people(user)
	if b.Sequence == nil {
		b.Sequence = int32p(0)
	}
	s.storeLocked(c, ev, now)
}

// people returns the creator and organizer of events user creates in c,
// shared between events (stored versions are immutable) to keep 100k-event
// calendars small.
func (c *calData) people(user string) (*person, *person) {
	if p, ok := c.creators[user]; ok {
		return p[0], p[1]
	}
	creator := &person{Email: user, Self: true}
	organizer := &person{Email: c.id, Self: c.id == user}
	if !c.primary {
		organizer = &person{Email: c.id, DisplayName: c.summary, Self: true}
	}
	if c.creators == nil {
		c.creators = map[string][2]*person{}
	}
	c.creators[user] = [2]*person{creator, organizer}
	return creator, organizer
}

// storeLocked stamps a new version and records it; watchers get "exists".
func (s *Server) storeLocked(c *calData, ev *event, now time.Time) {
	b := &ev.b
	b.Kind = "calendar#event"
	b.Updated = fmtUpdated(now)
	b.Etag = etagFor(now)
	ev.updT = now
	b.HTMLLink = htmlLink(b.ID, c.id)
	b.AttendeesOmitted = false
	c.put(ev, now)
	s.notifyTypeLocked(c, b.EventType)
}

func checkCommonParams(rq *request) *apiError {
	if v := rq.query.Get("maxAttendees"); v != "" {
		if n, err := strconv.Atoi(v); err != nil || n < 1 {
			return errInvalidParam("maxAttendees", v)
		}
	}
	if v := rq.query.Get("sendUpdates"); v != "" && v != "all" && v != "externalOnly" && v != "none" {
		return errInvalidParam("sendUpdates", v)
	}
	return nil
}

func maxAttendees(rq *request) int {
	n, _ := strconv.Atoi(rq.query.Get("maxAttendees"))
	return n
}

// lookupLocked finds a stored event or synthesizes an instance of a series.
// stored reports whether ev is stored under that id.
func (s *Server) lookupLocked(c *calData, id string) (ev *event, stored bool) {
	if e := c.get(id); e != nil {
		return e, true
	}
	i := strings.LastIndexByte(id, '_')
	if i <= 0 {
		return nil, false
	}
	master := c.get(id[:i])
	if master == nil || master.rule == nil || master.cancelled() {
		return nil, false
	}
	t, allDay, ok := parseInstanceSuffix(id[i+1:])
	if !ok || allDay != master.allDay {
		return nil, false
	}
	for occ := range s.occurrencesOf(master, time.Time{}, t.Add(time.Second)) {
		if occ.Equal(t) {
			return instanceOf(c, master, occ), false
		}
	}
	return nil, false
}

// occurrencesOf expands a master's series up to `to` (zero: the horizon).
func (s *Server) occurrencesOf(m *event, from, to time.Time) func(func(time.Time) bool) {
	base := time.Now()
	if from.After(base) {
		base = from
	}
	horizon := base.AddDate(horizonYears, 0, 0)
	dt, loc := m.start, m.loc
	if m.allDay {
		y, mo, d := m.start.Date()
		dt, loc = time.Date(y, mo, d, 0, 0, 0, 0, time.UTC), time.UTC
	}
	return m.rule.occurrences(dt, m.allDay, loc, to, horizon)
}

// instanceOf synthesizes the occurrence of master starting at occ (an instant;
// for all-day series, UTC midnight of the date).
func instanceOf(c *calData, m *event, occ time.Time) *event {
	in := &event{seq: m.seq, cno: m.cno, allDay: m.allDay, loc: m.loc, updT: m.updT}
	in.b = m.b
	in.b.ID = m.b.ID + "_" + instanceSuffix(occ, m.allDay)
	in.b.Recurrence = nil
	in.b.RecurringEventID = m.b.ID
	in.b.HTMLLink = htmlLink(in.b.ID, c.id)
	if m.allDay {
		days := int(m.end.Sub(m.start).Hours()/24 + 0.5)
		y, mo, d := occ.Date()
		in.start = time.Date(y, mo, d, 0, 0, 0, 0, c.loc)
		in.end = time.Date(y, mo, d+days, 0, 0, 0, 0, c.loc)
		in.b.Start = &evDateTime{Date: occ.Format("2006-01-02"), TimeZone: m.b.Start.TimeZone}
		in.b.End = &evDateTime{Date: occ.AddDate(0, 0, days).Format("2006-01-02"), TimeZone: m.b.End.TimeZone}
		in.b.OriginalStartTime = &evDateTime{Date: in.b.Start.Date}
	} else {
		in.start = occ.In(m.loc)
		in.end = in.start.Add(m.end.Sub(m.start))
		in.b.Start = &evDateTime{DateTime: in.start.Format(time.RFC3339), TimeZone: m.b.Start.TimeZone}
		endLoc := m.end.Location()
		in.b.End = &evDateTime{DateTime: in.end.In(endLoc).Format(time.RFC3339), TimeZone: m.b.End.TimeZone}
		in.b.OriginalStartTime = &evDateTime{DateTime: in.b.Start.DateTime, TimeZone: m.b.Start.TimeZone}
	}
	in.orig = in.start
	return in
}

func (s *Server) eventsGet(rq *request) (int, any, *apiError) {
	if err := checkCommonParams(rq); err != nil {
		return 0, nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c, err := s.calendarLocked(rq.user, rq.calID)
	if err != nil {
		return 0, nil, err
	}
	ev, _ := s.lookupLocked(c, rq.evID)
	if ev == nil {
		return 0, nil, errNotFound()
	}
	if inm := rq.r.Header.Get("If-None-Match"); inm != "" && inm == ev.b.Etag {
		return http.StatusNotModified, nil, nil
	}
	return 200, present(ev, true, s.roleLocked(c, rq.user), maxAttendees(rq)), nil
}

func (s *Server) eventsUpdate(rq *request) (int, any, *apiError) {
	var in eventBody
	if err := decodeBody(rq, &in); err != nil {
		return 0, nil, err
	}
	return s.write(rq, func(cur *event) (eventBody, *apiError) { return in, nil })
}

func (s *Server) eventsPatch(rq *request) (int, any, *apiError) {
	var patch map[string]json.RawMessage
	if err := decodeBody(rq, &patch); err != nil {
		return 0, nil, err
	}
	return s.write(rq, func(cur *event) (eventBody, *apiError) {
		// Patch semantics: given fields replace, null clears, nested objects merge
		// (extendedProperties maps too); arrays and start/end are replaced whole.
		curJSON, _ := json.Marshal(cur.b)
		var base map[string]any
		_ = json.Unmarshal(curJSON, &base)
		for k, raw := range patch {
			var v any
			if err := json.Unmarshal(raw, &v); err != nil {
				return eventBody{}, errParse()
			}
			switch k {
			case "start", "end", "originalStartTime", "recurrence", "attendees":
				if v == nil {
					delete(base, k)
				} else {
					base[k] = v
				}
			default:
				base[k] = mergePatch(base[k], v)
				if base[k] == nil {
					delete(base, k)
				}
			}
		}
		merged, _ := json.Marshal(base)
		var out eventBody
		if err := json.Unmarshal(merged, &out); err != nil {
			return eventBody{}, errInvalid("Invalid value in patch.")
		}
		return out, nil
	})
}

// mergePatch is RFC 7386 JSON merge patch.
func mergePatch(cur, patch any) any {
	pm, ok := patch.(map[string]any)
	if !ok {
		return patch
	}
	cm, ok := cur.(map[string]any)
	if !ok {
		cm = map[string]any{}
	}
	for k, v := range pm {
		if v == nil {
			delete(cm, k)
			continue
		}
		cm[k] = mergePatch(cm[k], v)
	}
	return cm
}

// write runs update/patch: it resolves the target (creating an exception for
// an instance id), builds the new body with mk and stores a new version.
func (s *Server) write(rq *request, mk func(cur *event) (eventBody, *apiError)) (int, any, *apiError) {
	if err := checkCommonParams(rq); err != nil {
		return 0, nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c, err := s.calendarLocked(rq.user, rq.calID)
	if err != nil {
		return 0, nil, err
	}
	cur, _ := s.lookupLocked(c, rq.evID)
	if cur == nil {
		return 0, nil, errNotFound()
	}
	if err := checkIfMatch(rq, cur); err != nil {
		return 0, nil, err
	}
	in, err := mk(cur)
	if err != nil {
		return 0, nil, err
	}
	isException := cur.b.RecurringEventID != ""
	// Fields the client cannot change.
	in.ID, in.ICalUID, in.Created, in.Creator, in.Organizer = cur.b.ID, cur.b.ICalUID, cur.b.Created, cur.b.Creator, cur.b.Organizer
	in.RecurringEventID, in.OriginalStartTime = cur.b.RecurringEventID, cur.b.OriginalStartTime
	if err := keepEventType(&in, cur); err != nil {
		return 0, nil, err
	}
	ev := &event{orig: cur.orig}
	if err := normalize(ev, in, c, isException); err != nil {
		return 0, nil, err
	}
	seq := int32(0)
	if cur.b.Sequence != nil {
		seq = *cur.b.Sequence
	}
	if in.Sequence != nil && *in.Sequence > seq {
		seq = *in.Sequence
	} else if !sameTiming(cur, ev) {
		seq++
	}
	ev.b.Sequence = int32p(seq)
	if ev.b.Status == "cancelled" && !cur.cancelled() {
		return s.deleteLocked(c, cur)
	}
	s.storeLocked(c, ev, s.tick())
	return 200, present(ev, true, s.roleLocked(c, rq.user), maxAttendees(rq)), nil
}

func (s *Server) eventsDelete(rq *request) (int, any, *apiError) {
	if err := checkCommonParams(rq); err != nil {
		return 0, nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c, err := s.calendarLocked(rq.user, rq.calID)
	if err != nil {
		return 0, nil, err
	}
	cur, _ := s.lookupLocked(c, rq.evID)
	if cur == nil {
		return 0, nil, errNotFound()
	}
	if cur.cancelled() {
		return 0, nil, errDeleted()
	}
	if err := checkIfMatch(rq, cur); err != nil {
		return 0, nil, err
	}
	return s.deleteLocked(c, cur)
}

// checkIfMatch implements conditional writes: a stale If-Match etag is 412.
func checkIfMatch(rq *request, cur *event) *apiError {
	if im := rq.r.Header.Get("If-Match"); im != "" && im != "*" && im != cur.b.Etag {
		return newErr(412, "global", "conditionNotMet", "Precondition Failed").at("header", "If-Match")
	}
	return nil
}

// deleteLocked stores a cancelled version. Deleting a series master also
// cancels its exceptions (each comes back cancelled in incremental lists).
func (s *Server) deleteLocked(c *calData, cur *event) (int, any, *apiError) {
	now := s.tick()
	ev := *cur
	ev.b.Status = "cancelled"
	s.storeLocked(c, &ev, now)
	if cur.rule != nil {
		for _, sl := range c.exceptions[cur.b.ID] {
			if !sl.cur.cancelled() {
				x := *sl.cur
				x.b.Status = "cancelled"
				s.storeLocked(c, &x, s.tick())
			}
		}
	}
	return 204, nil, nil
}
