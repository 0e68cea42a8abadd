package syncer

import (
	"encoding/json"
	"maps"
	"time"

	"google.golang.org/api/calendar/v3"

	"github.com/calsync/calsync/shared/messages"
	"github.com/calsync/calsync/shared/pubsubx"
	"github.com/calsync/calsync/shared/store"
)

// The pure core of a round: what a page of Google's listing, the orphans it
// held back, the sweep or a dead sync's leftovers do to the mirror and the
// feed, computed from the listed events and what the mirror holds, with no
// I/O. round.go reads what a plan needs, calls these and executes the plan
// (flush). A change to what is written or announced belongs here, and its
// test in plan_test.go; a change to how it is read or written, in round.go.

// planContext is what every plan of a round shares.
type planContext struct {
	key, calendarID string
	by              messages.Attribution // the calendar's tenant and reader: its change messages' attribution
	origin          string               // messages.Origin*: which kind of sync the round is
	syncedAt        time.Time
	announce        bool // a change publisher is configured: build the messages
}

// plan is what one batch does, executed in this order by flush: record
// created as announcing, publish messages, write writes (fenced), unmark.
type plan struct {
	writes   []store.EventWrite
	listed   []*calendar.Event // per write, the listed item (nil: removed with its series or by the sweep)
	messages []pubsubx.Message
	created  []string // ids announced as created: recorded before publishing (resolveGhosts)
	tally             // what the batch does, merged into the round's result once executed
	// orphans are cancelled exceptions whose series the round has not seen
	// yet: the round holds them until it has (resolveOrphans).
	orphans []*calendar.Event
	// missing: series deleted in the page whose stored exceptions must be
	// read first (pageInput.exceptions). The plan is then incomplete: read
	// them and plan again.
	missing []string
}

// fallback is the write that replaces a document Firestore refused: the
// event stored in part, flagged rejected. False for an id the plan does not
// plan an item for (only a document set can be refused).
func (p *plan) fallback(id string) (store.EventWrite, bool) {
	for i, w := range p.writes {
		if w.ID != id || p.listed[i] == nil {
			continue
		}
		fw := store.EventWrite{ID: id, Doc: store.MinimalEventDoc(p.listed[i], store.ProblemRejected), Replaces: w.Replaces}
		if !w.Replaces.Exists {
			fw.Delta = 1
		}
		return fw, true
	}
	return store.EventWrite{}, false
}

// pageInput is what planning a page (or the round's orphans) takes.
type pageInput struct {
	items []*calendar.Event
	// stored: the mirror's versions of the items and of the series masters
	// of cancelled exceptions (GetEventsKeeping: with the documents about to
	// be replaced, for the diffs).
	stored map[string]store.EventMeta
	// exceptions: the stored exceptions of series deleted in the page, by
	// master (plan.missing says which to read).
	exceptions map[string][]store.EventMeta
	series     map[string]bool // masters this round listed: live (true) or cancelled
	full       bool            // a full listing: only what it lists counts, not the mirror
	loc        *time.Location  // the calendar's zone, for all-day dates
}

// pageReads lists the documents a page's plan needs: its events, and the
// series masters of its cancelled exceptions (is the series alive?).
func pageReads(items []*calendar.Event) []string {
	ids := make([]string, 0, len(items)+8)
	seen := make(map[string]bool, len(items))
	add := func(id string) {
		if id != "" && !seen[id] {
			seen[id] = true
			ids = append(ids, id)
		}
	}
	for _, ev := range items {
		add(ev.Id)
		if ev.Status == "cancelled" && ev.RecurringEventId != "" {
			add(ev.RecurringEventId)
		}
	}
	return ids
}

// diffCandidates: the listed etag of each event that may be an update, so
// the read keeps the stored documents the diffs compare with; "" (no stored
// etag is empty) for a deletion or a cancelled occurrence, whose stored
// document its message carries as lastKnown.
func diffCandidates(items []*calendar.Event) map[string]string {
	etags := make(map[string]string, len(items))
	for _, ev := range items {
		if ev.Status == "cancelled" {
			etags[ev.Id] = ""
		} else {
			etags[ev.Id] = ev.Etag
		}
	}
	return etags
}

// planPage plans one page of a listing: newer versions only, deletions with
// their series' exceptions, cancelled occurrences kept while their series
// lives (held as orphans while that is unknown).
func planPage(pc planContext, in pageInput) (plan, error) {
	b := newBatch(in.stored)
	var missing []string
	for _, ev := range in.items {
		need, err := b.add(pc, in, ev)
		if err != nil {
			return plan{}, err
		}
		if need != "" {
			missing = append(missing, need)
		}
	}
	if len(missing) > 0 {
		return plan{missing: missing}, nil
	}
	p, err := planChanges(pc, b)
	p.orphans = b.orphans
	return p, err
}

// add plans one listed event in the batch; need names a deleted series whose
// stored exceptions in.exceptions lacks.
func (b *pageBatch) add(pc planContext, in pageInput, ev *calendar.Event) (need string, err error) {
	switch {
	case ev.Status == "cancelled" && ev.RecurringEventId == "":
		// A deletion: the event, and if it was a series, its exceptions.
		cur := b.current(ev.Id)
		if b.older(ev, cur) {
			return "", nil
		}
		if cur.Exists {
			b.put(ev.Id, store.EventMeta{}, ev, nil)
		}
		for _, id := range b.order { // exceptions planned earlier in this page
			if p := b.plan[id]; p.doc != nil && p.ev.RecurringEventId == ev.Id {
				p.doc = nil
				p.ev = nil
			}
		}
		if !cur.Series {
			// Not a series in the mirror (or not there at all): no stored
			// exceptions to look for. Tombstones of old single events are
			// common in full listings; this spares each a query.
			return "", nil
		}
		exc, ok := in.exceptions[ev.Id]
		if !ok {
			return ev.Id, nil
		}
		for _, m := range exc {
			b.remember(m)
			if b.current(m.ID).Exists {
				b.put(m.ID, m, nil, nil)
			}
		}
		return "", nil
	case ev.Status == "cancelled":
		// A cancelled occurrence: kept while its series lives.
		live, known := b.seriesLive(in, ev.RecurringEventId)
		if !known {
			b.orphans = append(b.orphans, ev)
			return "", nil
		}
		if !live {
			if b.current(ev.Id).Exists {
				b.put(ev.Id, store.EventMeta{}, ev, nil)
			}
			return "", nil
		}
	}
	return "", b.set(pc, in.loc, ev)
}

// set plans ev's document, unless the mirror holds a newer version.
func (b *pageBatch) set(pc planContext, loc *time.Location, ev *calendar.Event) error {
	if b.older(ev, b.current(ev.Id)) {
		return nil
	}
	doc, err := store.EventDoc(ev, loc, pc.syncedAt)
	if err != nil {
		return err
	}
	b.put(ev.Id, store.EventMeta{ID: ev.Id}, ev, doc)
	return nil
}

// seriesLive: is master's series alive, as far as this round knows?
func (b *pageBatch) seriesLive(in pageInput, master string) (live, known bool) {
	if v, ok := in.series[master]; ok {
		return v, true
	}
	if in.full {
		return false, false // the mirror may be stale: only the listing counts
	}
	m := b.current(master)
	if m.Exists {
		return m.Status != "cancelled", true
	}
	return false, false
}

// planOrphans decides the cancelled exceptions (in.items) whose series the
// round had not seen when it listed them: kept if the series is live (in
// this listing, or in the mirror for an incremental round), removed
// otherwise.
func planOrphans(pc planContext, in pageInput) (plan, error) {
	b := newBatch(in.stored)
	for _, ev := range in.items {
		live, known := in.series[ev.RecurringEventId]
		if !known && !in.full {
			m := in.stored[ev.RecurringEventId]
			live = m.Exists && m.Status != "cancelled"
		}
		if !live {
			if cur := b.current(ev.Id); !b.older(ev, cur) && cur.Exists {
				b.put(ev.Id, store.EventMeta{}, ev, nil)
			}
			continue
		}
		if err := b.set(pc, in.loc, ev); err != nil {
			return plan{}, err
		}
	}
	return planChanges(pc, b)
}

// orphanReads lists the documents planOrphans needs: each orphan and its
// series master.
func orphanReads(orphans []*calendar.Event) []string {
	ids := make([]string, 0, 2*len(orphans))
	for _, ev := range orphans {
		ids = append(ids, ev.Id, ev.RecurringEventId)
	}
	return ids
}

// planSweep deletes, after a full listing, the stored events of ids (which
// the listing did not return) that the mirror still holds.
func planSweep(pc planContext, ids []string, stored map[string]store.EventMeta) (plan, error) {
	b := newBatch(stored)
	for _, id := range ids {
		if m := stored[id]; m.Exists {
			b.put(id, m, nil, nil)
		}
	}
	return planChanges(pc, b)
}

// planGhosts: the "deleted" messages for ids a dead sync announced as
// created without writing them, which the mirror, exact again, lacks.
func planGhosts(pc planContext, leftover []string, stored map[string]store.EventMeta) ([]pubsubx.Message, error) {
	if !pc.announce {
		return nil, nil
	}
	var msgs []pubsubx.Message
	for _, id := range leftover {
		if stored[id].Exists {
			continue
		}
		m, err := changeMessage(pc, id, messages.ChangeDeleted, &pending{})
		if err != nil {
			return nil, err
		}
		msgs = append(msgs, m)
	}
	return msgs, nil
}

// pending is the planned final state of one document in a batch.
type pending struct {
	before store.EventMeta
	ev     *calendar.Event // the item (nil for a delete without one)
	doc    map[string]any  // nil: delete
}

// pageBatch plans the writes of a batch, in order; later items win.
type pageBatch struct {
	existing map[string]store.EventMeta
	owned    bool // existing is the batch's own copy (remember)
	plan     map[string]*pending
	order    []string
	orphans  []*calendar.Event // cancelled exceptions whose series is not known yet
	stale    int               // items older than the mirror's version: left alone
}

func newBatch(existing map[string]store.EventMeta) *pageBatch {
	return &pageBatch{existing: existing, plan: map[string]*pending{}}
}

// remember adds a stored version read after the batch's own read (a deleted
// series' exceptions), unless it has one; the caller's map is left alone.
func (b *pageBatch) remember(m store.EventMeta) {
	if _, ok := b.existing[m.ID]; ok {
		return
	}
	if !b.owned {
		b.existing, b.owned = maps.Clone(b.existing), true
		if b.existing == nil {
			b.existing = map[string]store.EventMeta{}
		}
	}
	b.existing[m.ID] = m
}

func (b *pageBatch) current(id string) store.EventMeta {
	if p, ok := b.plan[id]; ok {
		if p.doc == nil {
			return store.EventMeta{ID: id}
		}
		return store.EventMeta{ID: id, Exists: true, Etag: p.ev.Etag, Updated: p.ev.Updated, Sequence: p.ev.Sequence,
			Status: p.ev.Status, RecurringEventID: p.ev.RecurringEventId, Series: len(p.ev.Recurrence) > 0}
	}
	return b.existing[id]
}

func (b *pageBatch) put(id string, before store.EventMeta, ev *calendar.Event, doc map[string]any) {
	if p, ok := b.plan[id]; ok {
		p.ev, p.doc = ev, doc
		return
	}
	if _, ok := b.existing[id]; ok {
		before = b.existing[id]
	}
	b.plan[id] = &pending{before: before, ev: ev, doc: doc}
	b.order = append(b.order, id)
}

// older reports whether item is an older version of the event than cur
// holds: a stored event is never replaced by an older one.
func (b *pageBatch) older(ev *calendar.Event, cur store.EventMeta) bool {
	if cur.Exists && compareVersions(ev.Updated, ev.Sequence, ev.Etag, cur.Updated, cur.Sequence, cur.Etag) < 0 {
		b.stale++
		return true
	}
	return false
}

// planChanges turns a batch's final states into the plan: the writes (an
// unchanged etag is neither written nor announced), their change messages
// (with changedFields and previous values for an update), the ids announced
// as created, and the tally.
func planChanges(pc planContext, b *pageBatch) (plan, error) {
	p := plan{tally: tally{stale: b.stale}}
	for _, id := range b.order {
		e := b.plan[id]
		var kind string
		w := store.EventWrite{ID: id, Doc: e.doc, Replaces: e.before}
		switch {
		case e.doc == nil && !e.before.Exists:
			continue // created and deleted within the batch, or never there
		case e.doc == nil:
			kind, w.Delta = messages.ChangeDeleted, -1
			p.deleted++
		case e.before.Exists && e.before.Etag == e.ev.Etag:
			p.unchanged++
			continue
		case e.ev.Status == "cancelled" && e.ev.RecurringEventId != "":
			// One occurrence of a live series cancelled: its own kind, not
			// an "updated" event with no summary.
			kind = messages.ChangeCancelled
			p.written++
			if !e.before.Exists {
				w.Delta = 1
				p.created = append(p.created, id)
			}
		case e.before.Exists:
			kind = messages.ChangeUpdated
			p.written++
		default:
			kind, w.Delta = messages.ChangeCreated, 1
			p.written++
			p.created = append(p.created, id)
		}
		if reason, ok := e.doc[store.FieldProblem].(string); ok {
			p.problems = append(p.problems, problem{id, reason})
		}
		p.writes = append(p.writes, w)
		p.listed = append(p.listed, e.ev)
		if pc.announce {
			m, err := changeMessage(pc, id, kind, e)
			if err != nil {
				return plan{}, err
			}
			p.messages = append(p.messages, m)
		}
	}
	if len(p.messages) == 0 {
		p.created = nil // nothing announced, nothing to record
	}
	p.changes = len(p.messages)
	return p, nil
}

// changeMessage is the change message of one planned document.
func changeMessage(pc planContext, id, kind string, p *pending) (pubsubx.Message, error) {
	c := messages.Change{SchemaVersion: messages.ChangeSchemaVersion, Origin: pc.origin, Attribution: pc.by,
		CalendarID: pc.calendarID, CalendarKey: pc.key, EventID: id, Change: kind, PreviousEtag: p.before.Etag, SyncedAt: pc.syncedAt}
	var raw []byte
	var err error
	if p.ev != nil {
		c.Etag, c.Sequence, c.Updated = p.ev.Etag, p.ev.Sequence, p.ev.Updated
		raw, err = json.Marshal(p.ev)
		if kind == messages.ChangeUpdated && p.before.Doc != nil && err == nil {
			cur := p.doc
			if _, shed := cur[store.FieldTruncated]; shed {
				cur, err = store.EventFields(p.ev) // the whole event, not what fitted
			}
			if err == nil {
				c.ChangedFields, c.Previous = diffEvent(p.before.Doc, cur)
			}
		}
	} else {
		// Removed with its series or by the sweep: no tombstone of its own.
		raw, err = json.Marshal(map[string]string{"kind": "calendar#event", "id": id, "status": "cancelled"})
	}
	if err != nil {
		return pubsubx.Message{}, err
	}
	c.Event = raw
	if (kind == messages.ChangeDeleted || kind == messages.ChangeCancelled) && p.before.Doc != nil {
		if c.LastKnown, err = store.EventJSON(p.before.Doc); err != nil {
			return pubsubx.Message{}, err
		}
	}
	data, err := json.Marshal(c)
	if err != nil {
		return pubsubx.Message{}, err
	}
	return pubsubx.Message{Data: data, Attributes: c.Attributes()}, nil
}
