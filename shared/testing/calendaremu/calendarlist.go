package calendaremu

import (
	"encoding/base64"
	"encoding/binary"
	"errors"
	"hash/fnv"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// calendarList: list, get, insert, delete and watch, each user's list kept
// as entries with a change sequence, so incremental lists (syncToken) and push
// notifications work like Google's:
//
//   - A user's list holds the calendars they own (primary first, and those
//     they create) unless they removed them, plus the calendars they inserted
//     and can see (shared with them: ACL, see acl.go; rooms of their domain
//     for admins, see directory.go).
//   - An entry changes (new sequence) when it is added, removed (kept as a
//     tombstone: deleted=true, returned by showDeleted and by incremental
//     lists), when the calendar is deleted or the user loses access, or when
//     the user's role changes. Each change sends "exists" on the list's live
//     push channels (calendarList.watch).
//
// Google documents: maxResults default 100, at most 250; minAccessRole
// (freeBusyReader < reader < writer < owner); showDeleted, showHidden;
// syncToken (deleted and hidden entries always come back; showDeleted=false,
// showHidden=false and minAccessRole are refused with it; an expired token is
// 410). insert needs an existing calendar the user can see; delete of an
// entry the list does not hold is 404.

type calList struct {
	user    string
	seq     int64
	hash    uint32 // binds tokens to this list
	epoch   uint32
	entries map[string]*listEntry
	// resource stands for the list in push channels: channels point at a
	// calData, and this one holds only the list's stable resource id.
	resource *calData
}

type listEntry struct {
	id       string
	seq      int64
	deleted  bool
	hidden   bool
	explicit bool // inserted with calendarList.insert (otherwise: owned)
	role     string
}

// Access roles in increasing order.
var roleRank = map[string]int{"freeBusyReader": 1, "reader": 2, "writer": 3, "owner": 4}

func (s *Server) listLocked(user string) *calList {
	l := s.ws.lists[user]
	if l == nil {
		h := fnv.New32a()
		_, _ = h.Write([]byte("calendarList/" + user))
		l = &calList{user: user, hash: h.Sum32(), epoch: s.rng.Uint32(), entries: map[string]*listEntry{}}
		l.resource = newCalendar("users/"+user+"/calendarList", user, "calendarList", "UTC", false, s.tick(), 0)
		s.ws.lists[user] = l
	}
	return l
}

// roleLocked is user's access role on c ("" when none).
func (s *Server) roleLocked(c *calData, user string) string {
	if c.owner == user {
		return "owner"
	}
	return s.ws.acl[c.id][user]
}

// syncListLocked brings user's list up to date with what the user owns and
// can see, and reports whether an entry changed.
func (s *Server) syncListLocked(user string) bool {
	l := s.listLocked(user)
	changed := false
	bump := func(e *listEntry) {
		l.seq++
		e.seq = l.seq
		changed = true
	}
	for id, c := range s.calendars {
		if c.owner != user {
			continue
		}
		if e := l.entries[id]; e == nil {
			e = &listEntry{id: id, role: "owner"}
			l.entries[id] = e
			bump(e)
		}
	}
	for id, e := range l.entries {
		if e.deleted {
			continue
		}
		c := s.calendars[id]
		role := ""
		if c != nil {
			role = s.roleLocked(c, user)
		}
		switch {
		case role == "":
			e.deleted = true
			bump(e)
		case role != e.role:
			e.role = role
			bump(e)
		}
	}
	return changed
}

// listsChangedLocked syncs the list of every user who might list calendar id
// (its owner, users it is shared with, lists holding it) and notifies the
// watchers of each list that changed.
func (s *Server) listsChangedLocked(id, owner string) {
	users := map[string]bool{}
	if owner != "" {
		users[owner] = true
	}
	for u := range s.ws.acl[id] {
		users[u] = true
	}
	for u, l := range s.ws.lists {
		if e := l.entries[id]; e != nil && !e.deleted {
			users[u] = true
		}
	}
	for u := range users {
		s.listChangedLocked(u)
	}
}

// listChangedLocked syncs user's list and notifies its watchers if it changed.
func (s *Server) listChangedLocked(user string) {
	if s.syncListLocked(user) {
		s.notifyLocked(s.listLocked(user).resource)
	}
}

type listEntryBody struct {
	Kind             string          `json:"kind"`
	Etag             string          `json:"etag"`
	ID               string          `json:"id"`
	Summary          string          `json:"summary,omitempty"`
	Description      string          `json:"description,omitempty"`
	Location         string          `json:"location,omitempty"`
	TimeZone         string          `json:"timeZone,omitempty"`
	SummaryOverride  string          `json:"summaryOverride,omitempty"`
	ColorID          string          `json:"colorId,omitempty"`
	BackgroundColor  string          `json:"backgroundColor,omitempty"`
	ForegroundColor  string          `json:"foregroundColor,omitempty"`
	Hidden           bool            `json:"hidden,omitempty"`
	Selected         bool            `json:"selected,omitempty"`
	AccessRole       string          `json:"accessRole,omitempty"`
	DefaultReminders []eventReminder `json:"defaultReminders,omitempty"`
	Primary          bool            `json:"primary,omitempty"`
	Deleted          bool            `json:"deleted,omitempty"`
}

type listBody struct {
	Kind          string          `json:"kind"`
	Etag          string          `json:"etag"`
	NextPageToken string          `json:"nextPageToken,omitempty"`
	NextSyncToken string          `json:"nextSyncToken,omitempty"`
	Items         []listEntryBody `json:"items"`
}

// entryEtag is a quoted number that changes with the entry.
func entryEtag(l *calList, e *listEntry) string {
	return `"` + strconv.FormatUint(uint64(l.hash)<<20|uint64(e.seq)&0xfffff, 10) + `"`
}

func (s *Server) entryBodyLocked(l *calList, e *listEntry) listEntryBody {
	b := listEntryBody{Kind: "calendar#calendarListEntry", Etag: entryEtag(l, e), ID: e.id}
	if e.deleted {
		b.Deleted = true
		return b
	}
	c := s.calendars[e.id]
	b.Summary, b.Description, b.Location, b.TimeZone = c.summary, c.description, c.location, c.timeZone
	b.ColorID, b.BackgroundColor, b.ForegroundColor = "14", "#9fe1e7", "#000000"
	b.Hidden, b.Selected, b.AccessRole, b.Primary = e.hidden, c.primary, e.role, c.primary && c.owner == l.user
	b.DefaultReminders = []eventReminder{}
	return b
}

// routeCalendarList maps users/me/calendarList[/...] to a method.
func (s *Server) routeCalendarList(httpMethod string, seg []string) (route, string, string, bool) {
	switch {
	case len(seg) == 3 && httpMethod == "GET":
		return route{"calendarList.list", s.calendarListList}, "", "", true
	case len(seg) == 3 && httpMethod == "POST":
		return route{"calendarList.insert", s.calendarListInsert}, "", "", true
	case len(seg) == 4 && seg[3] == "watch" && httpMethod == "POST":
		return route{"calendarList.watch", s.calendarListWatch}, "", "", true
	case len(seg) == 4 && httpMethod == "GET":
		return route{"calendarList.get", s.calendarListGet}, seg[3], "", true
	case len(seg) == 4 && httpMethod == "DELETE":
		return route{"calendarList.delete", s.calendarListDelete}, seg[3], "", true
	}
	return route{}, "", "", false
}

func (s *Server) calendarListList(rq *request) (int, any, *apiError) {
	q := rq.query
	maxResults := 100
	if v := q.Get("maxResults"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return 0, nil, errInvalidParam("maxResults", v)
		}
		maxResults = min(n, 250)
	}
	minRole := q.Get("minAccessRole")
	if minRole != "" && roleRank[minRole] == 0 && minRole != "writerWithoutPrivateAccess" {
		return 0, nil, errInvalidParam("minAccessRole", minRole)
	}
	showDeleted, _, aerr := parseBool(q, "showDeleted")
	if aerr != nil {
		return 0, nil, aerr
	}
	showHidden, _, aerr := parseBool(q, "showHidden")
	if aerr != nil {
		return 0, nil, aerr
	}
	syncToken := q.Get("syncToken")
	if syncToken != "" {
		switch {
		case minRole != "":
			return 0, nil, errInvalid("minAccessRole cannot be specified together with syncToken.").at("parameter", "minAccessRole")
		case q.Get("showDeleted") == "false":
			return 0, nil, errInvalid("showDeleted cannot be false with syncToken.").at("parameter", "showDeleted")
		case q.Get("showHidden") == "false":
			return 0, nil, errInvalid("showHidden cannot be false with syncToken.").at("parameter", "showHidden")
		}
		showDeleted, showHidden = true, true
	}
	if minRole == "writerWithoutPrivateAccess" {
		minRole = "writer" // the emulator has no private events
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.listChangedLocked(rq.user)
	l := s.listLocked(rq.user)
	var since int64
	if syncToken != "" {
		seq, ok := l.parseToken(syncToken)
		if !ok {
			return 0, nil, errFullSync()
		}
		since = seq
	}
	// A full list snapshot is taken at the first page: the page token keeps
	// its sequence, so later pages show the list as it was then (entries
	// changed since come back in the next incremental list).
	at, offset, page := l.seq, 0, 1
	if pt := q.Get("pageToken"); pt != "" {
		var ok bool
		if at, offset, page, ok = l.parsePage(pt); !ok {
			return 0, nil, errInvalidParam("pageToken", pt)
		}
	}
	// Short and empty pages, as events.list's (paging.go).
	maxResults = s.pageLimitLocked(pageToken{mode: modeList, page: int64(page)}, maxResults)
	var ids []string
	for id, e := range l.entries {
		switch {
		case e.seq > at || e.seq <= since:
		case e.deleted && !showDeleted:
		case e.hidden && !showHidden:
		case minRole != "" && !e.deleted && roleRank[e.role] < roleRank[minRole]:
		default:
			ids = append(ids, id)
		}
	}
	// Primary first, then by id: stable across pages.
	slices.SortFunc(ids, func(a, b string) int {
		pa, pb := a == rq.user, b == rq.user
		if pa != pb {
			if pa {
				return -1
			}
			return 1
		}
		return strings.Compare(a, b)
	})
	out := listBody{Kind: "calendar#calendarList", Etag: etagFor(s.lastTick), Items: []listEntryBody{}}
	if offset > len(ids) {
		offset = len(ids)
	}
	end := min(offset+maxResults, len(ids))
	for _, id := range ids[offset:end] {
		out.Items = append(out.Items, s.entryBodyLocked(l, l.entries[id]))
	}
	if end < len(ids) {
		out.NextPageToken = l.pageToken(at, end, page+1)
	} else {
		out.NextSyncToken = l.token(at)
	}
	return 200, &out, nil
}

// entryOfLocked is the caller's list entry of the request's calendar
// ("primary" is the caller's own), 404 when it is not in the list.
func (s *Server) entryOfLocked(rq *request) (*calList, string, *listEntry, *apiError) {
	l := s.listLocked(rq.user)
	id := rq.calID
	if id == "primary" {
		id = rq.user
	}
	e := l.entries[id]
	if e == nil || e.deleted {
		return nil, "", nil, errNotFound()
	}
	return l, id, e, nil
}

func (s *Server) calendarListGet(rq *request) (int, any, *apiError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.listChangedLocked(rq.user)
	l, _, e, aerr := s.entryOfLocked(rq)
	if aerr != nil {
		return 0, nil, aerr
	}
	b := s.entryBodyLocked(l, e)
	return 200, &b, nil
}

func (s *Server) calendarListInsert(rq *request) (int, any, *apiError) {
	var in listEntryBody
	if err := decodeBody(rq, &in); err != nil {
		return 0, nil, err
	}
	if in.ID == "" {
		return 0, nil, errRequired("Required").at("parameter", "id")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.calendars[in.ID]
	if c == nil || s.roleLocked(c, rq.user) == "" {
		return 0, nil, errNotFound()
	}
	s.syncListLocked(rq.user)
	l := s.listLocked(rq.user)
	e := l.entries[in.ID]
	if e == nil {
		e = &listEntry{id: in.ID}
		l.entries[in.ID] = e
	}
	e.deleted, e.explicit, e.hidden, e.role = false, true, in.Hidden, s.roleLocked(c, rq.user)
	l.seq++
	e.seq = l.seq
	s.notifyLocked(l.resource)
	b := s.entryBodyLocked(l, e)
	return 200, &b, nil
}

func (s *Server) calendarListDelete(rq *request) (int, any, *apiError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.syncListLocked(rq.user)
	l, id, e, aerr := s.entryOfLocked(rq)
	if aerr != nil {
		return 0, nil, aerr
	}
	if id == rq.user {
		// The primary calendar cannot leave its owner's list.
		return 0, nil, errForbidden()
	}
	e.deleted = true
	l.seq++
	e.seq = l.seq
	s.notifyLocked(l.resource)
	return 204, nil, nil
}

// calendarListWatch is calendarList.watch: a push channel on the user's
// list, with the validation and replies of events.watch.
func (s *Server) calendarListWatch(rq *request) (int, any, *apiError) {
	var in channelBody
	if err := decodeBody(rq, &in); err != nil {
		return 0, nil, err
	}
	ttl, aerr := checkWatch(&in, time.Now())
	if aerr != nil {
		return 0, nil, aerr
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if old := s.channels[in.ID]; old != nil && !old.stopped {
		return 0, nil, newErr(400, "global", "channelIdNotUnique", "Channel id not unique")
	}
	s.syncListLocked(rq.user)
	l := s.listLocked(rq.user)
	now := time.Now()
	ttl = min(ttl, s.opts.MaxTTL)
	ch := &channel{id: in.ID, token: in.Token, address: in.Address, user: rq.user, cal: l.resource,
		resourceURI: "https://www.googleapis.com/calendar/v3/users/me/calendarList?alt=json",
		expiry:      now.Add(ttl).Truncate(time.Millisecond), created: now,
		wake: make(chan struct{}, 1), halt: make(chan struct{})}
	s.channels[in.ID] = ch
	ch.msgNum = 1
	s.enqueueLocked(ch, "sync", 1)
	s.wg.Add(1)
	go s.deliverLoop(ch, ch.expiry)
	s.log.Info("calendarList channel created", "channel", ch.id, "user", rq.user, "address", ch.address, "expiration", ch.expiry)
	return 200, &channelBody{Kind: "api#channel", ID: ch.id, ResourceID: l.resource.resourceID, ResourceURI: ch.resourceURI,
		Token: ch.token, Expiration: strconv.FormatInt(ch.expiry.UnixMilli(), 10)}, nil
}

// checkWatch validates a watch request body as events.watch does and returns
// the requested lifetime (before MaxTTL).
func checkWatch(in *channelBody, now time.Time) (time.Duration, *apiError) {
	switch {
	case in.ID == "":
		return 0, errRequired("Required channel id.")
	case len(in.ID) > 64:
		return 0, errInvalid("Channel id must be at most 64 characters.")
	case in.Type != "web_hook" && in.Type != "webhook":
		return 0, errInvalid("Invalid channel type '" + in.Type + "'; only web_hook is supported.")
	case in.Address == "":
		return 0, errRequired("Required channel address.")
	case len(in.Token) > 256:
		return 0, errInvalid("Channel token must be at most 256 characters.")
	}
	if u, err := url.Parse(in.Address); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return 0, errInvalid("Invalid channel address '" + in.Address + "'.")
	}
	ttl := 604800 * time.Second
	if v, ok := in.Params["ttl"]; ok {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 1 {
			return 0, errInvalid("Invalid ttl value '" + v + "'.")
		}
		ttl = time.Duration(min(n, 1<<32)) * time.Second
	} else if in.Expiration != "" {
		ms, err := strconv.ParseInt(in.Expiration, 10, 64)
		if err != nil || ms > 1<<50 || ms < -(1<<50) {
			return 0, errInvalid("Invalid expiration value '" + in.Expiration + "'.")
		}
		ttl = time.UnixMilli(ms).Sub(now)
		if ttl <= 0 {
			return 0, errInvalid("Channel expiration is in the past.")
		}
	}
	return ttl, nil
}

// Tokens: base64url of version, list hash, epoch, sequence (and, for page
// tokens, the offset). A token of another list, an older epoch or a future
// sequence is dead.
func (l *calList) token(seq int64) string {
	b := make([]byte, 0, 17)
	b = append(b, 1)
	b = binary.BigEndian.AppendUint32(b, l.hash)
	b = binary.BigEndian.AppendUint32(b, l.epoch)
	b = binary.BigEndian.AppendUint64(b, uint64(seq))
	return base64.RawURLEncoding.EncodeToString(b)
}

func (l *calList) parseToken(tok string) (int64, bool) {
	b, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil || len(b) != 17 || b[0] != 1 || binary.BigEndian.Uint32(b[1:]) != l.hash ||
		binary.BigEndian.Uint32(b[5:]) != l.epoch {
		return 0, false
	}
	seq := int64(binary.BigEndian.Uint64(b[9:]))
	return seq, seq >= 0 && seq <= l.seq
}

// pageToken is the list snapshot's sync token, the offset of the page and
// its number (short pages are picked by number).
func (l *calList) pageToken(seq int64, offset, page int) string {
	return l.token(seq) + "." + strconv.Itoa(offset) + "." + strconv.Itoa(page)
}

func (l *calList) parsePage(tok string) (int64, int, int, bool) {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return 0, 0, 0, false
	}
	seq, ok := l.parseToken(parts[0])
	n, err1 := strconv.Atoi(parts[1])
	page, err2 := strconv.Atoi(parts[2])
	return seq, n, page, ok && err1 == nil && err2 == nil && n >= 0 && page > 1
}

// InvalidateListSyncTokens makes every calendarList sync token of user answer
// 410 fullSyncRequired.
func (s *Server) InvalidateListSyncTokens(user string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.ws.lists[user]
	if l == nil {
		return errors.New("calendaremu: no calendar list for " + user)
	}
	l.epoch++
	return nil
}

// calendarsInsertListed is calendars.insert; the new calendar joins its
// creator's list (as at Google), which notifies the list's watchers.
func (s *Server) calendarsInsertListed(rq *request) (int, any, *apiError) {
	code, body, aerr := s.calendarsInsert(rq)
	if aerr == nil {
		s.mu.Lock()
		s.listChangedLocked(rq.user)
		s.mu.Unlock()
	}
	return code, body, aerr
}

// calendarsDeleteListed is calendars.delete; the calendar leaves every list
// holding it, which notifies their watchers.
func (s *Server) calendarsDeleteListed(rq *request) (int, any, *apiError) {
	s.mu.Lock()
	c, aerr := s.calendarLocked(rq.user, rq.calID)
	if aerr == nil && c.owner != rq.user {
		// Shared with the caller, not theirs: only an owner deletes.
		aerr = newErr(403, "calendar", "requiredAccessLevel", "You need to have owner access to this calendar.")
	}
	s.mu.Unlock()
	if aerr != nil {
		return 0, nil, aerr
	}
	code, body, aerr := s.calendarsDelete(rq)
	if aerr == nil {
		id := rq.calID
		if id == "primary" {
			id = rq.user
		}
		s.mu.Lock()
		s.listsChangedLocked(id, rq.user)
		delete(s.ws.acl, id)
		s.mu.Unlock()
	}
	return code, body, aerr
}
