package calendaremu

import (
	"hash/fnv"
	"sort"
	"sync"
	"time"
	_ "time/tzdata" // time zones must resolve on machines without zoneinfo
)

// calendar holds one calendar's events and the indexes that keep listing cheap:
// order (creation order, for stable full-list pages) and log (change order, for
// incremental lists: everything with seq > token seq).
type calData struct {
	id          string
	owner       string
	summary     string
	description string
	location    string
	timeZone    string
	loc         *time.Location
	primary     bool
	created     time.Time
	etag        string
	resourceID  string // stable per calendar across channels, like Google's
	kind        string // KindDefault, KindHoliday, KindBirthdays (kinds.go)
	hash        uint32 // binds tokens to this calendar
	epoch       uint32 // tokens of an older epoch are dead (410)
	seq         int64  // last change sequence
	updated     time.Time

	events     map[string]*slot
	order      []*slot
	log        []logEntry
	exceptions map[string][]*slot // master id -> its exceptions
	creators   map[string][2]*person
}

type slot struct{ cur *event }

type logEntry struct {
	seq int64
	s   *slot
	at  time.Time // when the change was made (visibility delay)
}

func newCalendar(id, owner, summary, tz string, primary bool, now time.Time, epoch uint32) *calData {
	h := fnv.New32a()
	_, _ = h.Write([]byte(id))
	loc, err := loadZone(tz)
	if err != nil {
		tz, loc = "UTC", time.UTC
	}
	return &calData{
		id: id, owner: owner, summary: summary, timeZone: tz, loc: loc, primary: primary,
		created: now, updated: now, etag: etagFor(now), hash: h.Sum32(), epoch: epoch,
		resourceID: randomBase32(14)[:14] + "-" + randomBase32(4),
		events:     map[string]*slot{}, exceptions: map[string][]*slot{},
	}
}

// put stores a new version of an event and records the change.
func (c *calData) put(ev *event, now time.Time) {
	c.seq++
	ev.seq = c.seq
	c.updated = now
	s := c.events[ev.b.ID]
	if s == nil {
		s = &slot{}
		c.events[ev.b.ID] = s
		c.order = append(c.order, s)
		ev.cno = int64(len(c.order))
		if ev.b.RecurringEventID != "" {
			c.exceptions[ev.b.RecurringEventID] = append(c.exceptions[ev.b.RecurringEventID], s)
		}
	} else {
		ev.cno = s.cur.cno
	}
	s.cur = ev
	c.log = append(c.log, logEntry{seq: ev.seq, s: s, at: now})
	// Compact when stale entries dominate, so incremental lists stay proportional
	// to the number of changes.
	if len(c.log) > 1024 && len(c.log) > 2*len(c.events) {
		live := c.log[:0:0]
		for _, e := range c.log {
			if e.s.cur.seq == e.seq {
				live = append(live, e)
			}
		}
		c.log = live
	}
}

// visibleSeq is the last change sequence incremental lists show at now: a
// change younger than delay is not listed yet (and no sync token passes it),
// though its push went out at once. Changes are logged in time order, so
// the hidden ones are the log's tail.
func (c *calData) visibleSeq(now time.Time, delay time.Duration) int64 {
	if delay <= 0 {
		return c.seq
	}
	cut := now.Add(-delay)
	i := sort.Search(len(c.log), func(i int) bool { return c.log[i].at.After(cut) })
	if i == len(c.log) {
		return c.seq
	}
	return c.log[i].seq - 1
}

// changedSince returns the index in log of the first entry with seq > after.
func (c *calData) changedSince(after int64) int {
	return sort.Search(len(c.log), func(i int) bool { return c.log[i].seq > after })
}

func (c *calData) get(id string) *event {
	if s := c.events[id]; s != nil {
		return s.cur
	}
	return nil
}

var zoneCache sync.Map

func loadZone(name string) (*time.Location, error) {
	if name == "" {
		return time.UTC, nil
	}
	if l, ok := zoneCache.Load(name); ok {
		return l.(*time.Location), nil
	}
	l, err := time.LoadLocation(name)
	if err != nil || name == "Local" {
		if err == nil {
			err = errInvalid("Local is not a time zone")
		}
		return nil, err
	}
	zoneCache.Store(name, l)
	return l, nil
}
