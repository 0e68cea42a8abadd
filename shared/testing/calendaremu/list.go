package calendaremu

import (
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// events.list and events.instances: full lists (stable creation order, or
// orderBy startTime/updated), incremental lists from the change log, paging
// with cursors that stay valid while the calendar changes.

type listQuery struct {
	maxResults       int
	showDeleted      bool
	showDeletedSet   bool
	singleEvents     bool
	timeMin, timeMax time.Time
	updatedMin       time.Time
	terms            []string
	orderBy          string
	iCalUID          string
	private, shared  map[string]string
	eventTypes       []string
	syncToken        string
	pageToken        string
	maxAttendees     int
	originalStart    time.Time
	role             string // the caller's access role (roles.go)
}

// forbiddenWithSync are the parameters Google rejects together with syncToken.
var forbiddenWithSync = []string{"iCalUID", "orderBy", "privateExtendedProperty", "q",
	"sharedExtendedProperty", "timeMin", "timeMax", "updatedMin"}

func parseBool(q map[string][]string, name string) (bool, bool, *apiError) {
	v, ok := q[name]
	if !ok || len(v) == 0 {
		return false, false, nil
	}
	switch v[0] {
	case "true":
		return true, true, nil
	case "false":
		return false, true, nil
	}
	return false, false, errInvalidParam(name, v[0])
}

func parseTime(q map[string][]string, name string) (time.Time, *apiError) {
	v := ""
	if vs := q[name]; len(vs) > 0 {
		v = vs[0]
	}
	if v == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil || t.Year() < 1 || t.Year() > 9999 {
		return time.Time{}, errBadRequest("Bad Request").at("parameter", name)
	}
	return t, nil
}

func parseListQuery(rq *request, instances bool) (*listQuery, *apiError) {
	q := rq.query
	lq := &listQuery{maxResults: 250}
	if v := q.Get("maxResults"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			if err != nil && len(v) > 0 && strings.Trim(v, "0123456789") == "" {
				n = 2500 // too large for int: clamps like any value over 2500
			} else {
				return nil, errInvalidParam("maxResults", v)
			}
		}
		lq.maxResults = min(n, 2500)
	}
	var err *apiError
	if lq.showDeleted, lq.showDeletedSet, err = parseBool(q, "showDeleted"); err != nil {
		return nil, err
	}
	if lq.singleEvents, _, err = parseBool(q, "singleEvents"); err != nil {
		return nil, err
	}
	for _, n := range []string{"alwaysIncludeEmail", "showHiddenInvitations"} {
		if _, _, err = parseBool(q, n); err != nil {
			return nil, err
		}
	}
	if lq.timeMin, err = parseTime(q, "timeMin"); err != nil {
		return nil, err
	}
	if lq.timeMax, err = parseTime(q, "timeMax"); err != nil {
		return nil, err
	}
	if lq.updatedMin, err = parseTime(q, "updatedMin"); err != nil {
		return nil, err
	}
	if !lq.timeMin.IsZero() && !lq.timeMax.IsZero() && !lq.timeMin.Before(lq.timeMax) {
		return nil, errTimeRangeEmpty("timeMax")
	}
	if v := q.Get("maxAttendees"); v != "" {
		n, aerr := strconv.Atoi(v)
		if aerr != nil || n < 1 {
			return nil, errInvalidParam("maxAttendees", v)
		}
		lq.maxAttendees = n
	}
	lq.pageToken = q.Get("pageToken")
	if instances {
		if lq.originalStart, err = parseTime(q, "originalStart"); err != nil {
			return nil, err
		}
		return lq, nil
	}
	lq.terms = strings.Fields(strings.ToLower(q.Get("q")))
	lq.orderBy = q.Get("orderBy")
	switch lq.orderBy {
	case "", "updated":
	case "startTime":
		if !lq.singleEvents {
			return nil, errBadRequest("The requested ordering is not available for the particular query.").at("parameter", "orderBy")
		}
	default:
		return nil, errInvalidParam("orderBy", lq.orderBy)
	}
	lq.iCalUID = q.Get("iCalUID")
	for _, kind := range []string{"privateExtendedProperty", "sharedExtendedProperty"} {
		m := map[string]string{}
		for _, v := range q[kind] {
			k, val, ok := strings.Cut(v, "=")
			if !ok || k == "" {
				return nil, errInvalidParam(kind, v)
			}
			m[k] = val
		}
		if kind == "privateExtendedProperty" {
			lq.private = m
		} else {
			lq.shared = m
		}
	}
	if lq.eventTypes, err = parseEventTypes(q["eventTypes"]); err != nil {
		return nil, err
	}
	lq.syncToken = q.Get("syncToken")
	if lq.syncToken != "" {
		for _, p := range forbiddenWithSync {
			if len(q[p]) > 0 {
				return nil, errInvalid("The parameter '"+p+"' cannot be used together with a sync token.").at("parameter", p)
			}
		}
		if lq.showDeletedSet && !lq.showDeleted {
			return nil, errInvalid("showDeleted=false cannot be used together with a sync token; deleted events are always included.").at("parameter", "showDeleted")
		}
	}
	return lq, nil
}

type listResponse struct {
	Kind             string          `json:"kind"`
	Etag             string          `json:"etag"`
	Summary          string          `json:"summary"`
	Description      string          `json:"description,omitempty"`
	Updated          string          `json:"updated"`
	TimeZone         string          `json:"timeZone"`
	AccessRole       string          `json:"accessRole"`
	DefaultReminders []eventReminder `json:"defaultReminders"`
	NextPageToken    string          `json:"nextPageToken,omitempty"`
	NextSyncToken    string          `json:"nextSyncToken,omitempty"`
	Items            []any           `json:"items"`
}

type item struct {
	ev  *event
	key itemKey
}

func (s *Server) eventsList(rq *request) (int, any, *apiError) {
	lq, err := parseListQuery(rq, false)
	if err != nil {
		return 0, nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c, err := s.calendarLocked(rq.user, rq.calID)
	if err != nil {
		return 0, nil, err
	}
	lq.role = s.roleLocked(c, rq.user)
	qh := queryHash(rq.query)
	pt := pageToken{cal: c.hash, epoch: c.epoch, qhash: qh, snap: c.seq, page: 1}
	if lq.pageToken != "" {
		t, ok := decodePageToken(lq.pageToken)
		if !ok || t.cal != c.hash || t.qhash != qh || t.mode == modeInstances {
			return 0, nil, errInvalid("Invalid page token value.").at("parameter", "pageToken")
		}
		if t.mode == modeSync && t.epoch != c.epoch {
			return 0, nil, errFullSync()
		}
		if s.pageTokenExpiredLocked(t) { // paging.go
			return 0, nil, errFullSync().at("parameter", "pageToken")
		}
		pt = t
	} else if lq.syncToken != "" {
		st, ok := decodeSyncToken(lq.syncToken)
		if !ok || st.cal != c.hash || st.epoch != c.epoch || st.seq > c.seq {
			return 0, nil, errFullSync()
		}
		pt.mode, pt.key = modeSync, itemKey{st.seq, math.MaxInt64, 0}
	} else {
		pt.mode, pt.key = modeFull, itemKey{0, math.MinInt64, math.MinInt64}
		if lq.orderBy != "" {
			pt.key = itemKey{math.MinInt64, 0, 0}
		}
	}
	var items []item
	var more bool
	lq.maxResults = s.pageLimitLocked(pt, lq.maxResults) // a short page, at times
	visible := c.visibleSeq(time.Now(), s.visibility)
	if pt.mode == modeSync {
		items, more = s.scanChanges(c, lq, pt.key, visible)
	} else if lq.orderBy == "" {
		items, more = s.scanOrder(c, lq, pt.key)
	} else {
		items, more = s.scanSorted(c, lq, pt.key)
	}
	out := &listResponse{Kind: "calendar#events", Etag: etagFor(c.updated), Summary: c.summary,
		Description: c.description, Updated: fmtUpdated(c.updated), TimeZone: c.timeZone, AccessRole: lq.role,
		DefaultReminders: []eventReminder{}, Items: make([]any, 0, len(items))}
	for _, it := range items {
		out.Items = append(out.Items, present(it.ev, false, lq.role, lq.maxAttendees))
	}
	if more {
		if len(items) > 0 { // an empty page resumes where it started
			pt.key = items[len(items)-1].key
		}
		pt.page, pt.issued = pt.page+1, time.Now().UnixMilli()
		out.NextPageToken = pt.encode()
	} else if pt.mode == modeSync {
		out.NextSyncToken = syncToken{cal: c.hash, epoch: c.epoch, seq: visible}.encode()
	} else {
		out.NextSyncToken = syncToken{cal: c.hash, epoch: pt.epoch, seq: pt.snap}.encode()
	}
	return 200, out, nil
}

// expand returns the list items one stored version stands for: itself, or in
// singleEvents mode the occurrences of a live series (minus stored exceptions).
func (s *Server) expand(c *calData, ev *event, lq *listQuery, emit func(*event, int64) bool) bool {
	if !lq.singleEvents || ev.rule == nil || ev.cancelled() {
		return emit(ev, 0)
	}
	for occ := range s.occurrencesOf(ev, lq.timeMin, lq.timeMax) {
		in := instanceOf(c, ev, occ)
		if c.events[in.b.ID] != nil {
			continue // the stored exception is listed on its own
		}
		if !emit(in, occ.Unix()) {
			return false
		}
	}
	return true
}

// listPage gathers one page of items and notes whether more would follow.
type listPage struct {
	items []item
	max   int
	more  bool
}

// add keeps x unless the page is full; false stops the scan.
func (p *listPage) add(x *event, key itemKey) bool {
	if len(p.items) == p.max {
		p.more = true
		return false
	}
	p.items = append(p.items, item{x, key})
	return true
}

// scanOrder lists in creation order, key (cno, occurrence, 0).
func (s *Server) scanOrder(c *calData, lq *listQuery, after itemKey) ([]item, bool) {
	pg := listPage{max: lq.maxResults}
	start := max(after[0]-1, 0)
	for i := start; i < int64(len(c.order)) && !pg.more; i++ {
		ev := c.order[i].cur
		s.expand(c, ev, lq, func(x *event, k int64) bool {
			key := itemKey{ev.cno, k, 0}
			if !after.less(key) || !s.matches(c, x, lq) {
				return true
			}
			return pg.add(x, key)
		})
	}
	return pg.items, pg.more
}

// scanChanges lists versions changed after the cursor and up to visible, in
// change order, key (seq, occurrence, 0).
func (s *Server) scanChanges(c *calData, lq *listQuery, after itemKey, visible int64) ([]item, bool) {
	pg := listPage{max: lq.maxResults}
	for i := c.changedSince(after[0] - 1); i < len(c.log) && !pg.more; i++ {
		e := c.log[i]
		if e.seq > visible {
			break // not listed yet (visibility delay)
		}
		if c.kind == KindBirthdays && e.s.cur.cancelled() {
			continue // Google does not report this calendar's deletions
		}
		ev := e.s.cur
		if ev.seq != e.seq {
			continue // superseded by a later version further down the log
		}
		s.expand(c, ev, lq, func(x *event, k int64) bool {
			key := itemKey{ev.seq, k, 0}
			if !after.less(key) || !typeMatches(lq, x) {
				return true
			}
			return pg.add(x, key)
		})
	}
	return pg.items, pg.more
}

// scanSorted serves orderBy=startTime|updated: gather, sort, page by key.
func (s *Server) scanSorted(c *calData, lq *listQuery, after itemKey) ([]item, bool) {
	var all []item
	for _, sl := range c.order {
		ev := sl.cur
		s.expand(c, ev, lq, func(x *event, k int64) bool {
			if !s.matches(c, x, lq) {
				return true
			}
			key := itemKey{x.start.Unix(), ev.cno, k}
			if lq.orderBy == "updated" {
				key[0] = x.updT.UnixMicro()
			}
			if after.less(key) {
				all = append(all, item{x, key})
			}
			return true
		})
	}
	slices.SortFunc(all, func(a, b item) int {
		if a.key.less(b.key) {
			return -1
		}
		if b.key.less(a.key) {
			return 1
		}
		return 0
	})
	if len(all) > lq.maxResults {
		return all[:lq.maxResults], true
	}
	return all, false
}

// matches applies the filters of a full list to one item.
func (s *Server) matches(c *calData, ev *event, lq *listQuery) bool {
	if !typeMatches(lq, ev) {
		return false
	}
	if c.kind == KindBirthdays && ev.cancelled() {
		return false // deleted events of this calendar are gone, tombstone and all
	}
	if !lq.updatedMin.IsZero() {
		if ev.updT.Before(lq.updatedMin) {
			return false
		}
	} else if ev.cancelled() && !lq.showDeleted {
		return false
	}
	if ev.cancelled() && lq.singleEvents && ev.rule != nil && !lq.showDeleted {
		return false
	}
	if lq.iCalUID != "" && ev.b.ICalUID != lq.iCalUID {
		return false
	}
	if !lq.timeMin.IsZero() || !lq.timeMax.IsZero() {
		if !s.inWindow(ev, lq.timeMin, lq.timeMax) {
			return false
		}
	}
	for k, v := range lq.private {
		if ev.b.ExtendedProperties == nil || ev.b.ExtendedProperties.Private[k] != v {
			return false
		}
		if _, ok := ev.b.ExtendedProperties.Private[k]; !ok {
			return false
		}
	}
	for k, v := range lq.shared {
		if ev.b.ExtendedProperties == nil || ev.b.ExtendedProperties.Shared[k] != v {
			return false
		}
		if _, ok := ev.b.ExtendedProperties.Shared[k]; !ok {
			return false
		}
	}
	if len(lq.terms) > 0 {
		text := ""
		if !detailsHidden(lq.role, ev) { // hidden details are not searched either
			text = searchText(ev)
		}
		for _, t := range lq.terms {
			if !strings.Contains(text, t) {
				return false
			}
		}
	}
	return true
}

// inWindow: end > timeMin and start < timeMax; a series master matches when one
// of its occurrences does.
func (s *Server) inWindow(ev *event, tmin, tmax time.Time) bool {
	if ev.rule == nil || ev.b.RecurringEventID != "" {
		return (tmin.IsZero() || ev.end.After(tmin) || (ev.end.Equal(ev.start) && !ev.start.Before(tmin))) &&
			(tmax.IsZero() || ev.start.Before(tmax))
	}
	dur := ev.end.Sub(ev.start)
	for occ := range s.occurrencesOf(ev, tmin, tmax) {
		st := occ
		if ev.allDay {
			y, m, d := occ.Date()
			st = time.Date(y, m, d, 0, 0, 0, 0, ev.start.Location())
		}
		if tmin.IsZero() || st.Add(dur).After(tmin) {
			return true
		}
	}
	return false
}

func searchText(ev *event) string {
	var sb strings.Builder
	b := &ev.b
	for _, p := range []string{b.Summary, b.Description, b.Location} {
		sb.WriteString(p)
		sb.WriteByte(' ')
	}
	for _, a := range b.Attendees {
		sb.WriteString(a.Email + " " + a.DisplayName + " ")
	}
	if b.Organizer != nil {
		sb.WriteString(b.Organizer.Email + " " + b.Organizer.DisplayName)
	}
	return strings.ToLower(sb.String())
}

// eventsInstances lists the occurrences of a series, exceptions substituted.
func (s *Server) eventsInstances(rq *request) (int, any, *apiError) {
	lq, err := parseListQuery(rq, true)
	if err != nil {
		return 0, nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c, err := s.calendarLocked(rq.user, rq.calID)
	if err != nil {
		return 0, nil, err
	}
	lq.role = s.roleLocked(c, rq.user)
	m := c.get(rq.evID)
	if m == nil {
		return 0, nil, errNotFound()
	}
	if m.cancelled() {
		return 0, nil, errDeleted()
	}
	qh := queryHash(rq.query)
	after := itemKey{math.MinInt64, 0, 0}
	if lq.pageToken != "" {
		t, ok := decodePageToken(lq.pageToken)
		if !ok || t.cal != c.hash || t.qhash != qh || t.mode != modeInstances {
			return 0, nil, errInvalid("Invalid page token value.").at("parameter", "pageToken")
		}
		if s.pageTokenExpiredLocked(t) {
			return 0, nil, errFullSync().at("parameter", "pageToken")
		}
		after = t.key
	}
	out := &listResponse{Kind: "calendar#events", Etag: etagFor(c.updated), Summary: c.summary,
		Description: c.description, Updated: fmtUpdated(c.updated), TimeZone: c.timeZone, AccessRole: lq.role,
		DefaultReminders: []eventReminder{}, Items: []any{}}
	var items []item
	more := false
	add := func(x *event, k int64) bool {
		key := itemKey{k, 0, 0}
		if !after.less(key) {
			return true
		}
		if x.cancelled() && !lq.showDeleted {
			return true
		}
		if (!lq.timeMin.IsZero() || !lq.timeMax.IsZero()) && !s.inWindow(x, lq.timeMin, lq.timeMax) {
			return true
		}
		if !lq.originalStart.IsZero() && !x.orig.Equal(lq.originalStart) {
			return true
		}
		if len(items) == lq.maxResults {
			more = true
			return false
		}
		items = append(items, item{x, key})
		return true
	}
	if m.rule == nil {
		add(m, m.start.Unix())
	} else {
		for occ := range s.occurrencesOf(m, lq.timeMin, lq.timeMax) {
			in := instanceOf(c, m, occ)
			if x := c.get(in.b.ID); x != nil {
				in = x
			}
			if !add(in, occ.Unix()) {
				break
			}
		}
	}
	for _, it := range items {
		out.Items = append(out.Items, present(it.ev, false, lq.role, lq.maxAttendees))
	}
	if more {
		out.NextPageToken = pageToken{mode: modeInstances, cal: c.hash, epoch: c.epoch, qhash: qh, key: items[len(items)-1].key,
			issued: time.Now().UnixMilli()}.encode()
	}
	return 200, out, nil
}
