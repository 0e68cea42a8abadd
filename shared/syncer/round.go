package syncer

import (
	"context"
	"encoding/json"
	"log/slog"
	"time"

	"google.golang.org/api/calendar/v3"

	"github.com/calsync/calsync/shared/logging"
	"github.com/calsync/calsync/shared/messages"
	"github.com/calsync/calsync/shared/pubsubx"
	"github.com/calsync/calsync/shared/store"
)

// result is what one round did.
type result struct {
	full                                       bool
	token                                      string
	pages, listed, written, deleted, unchanged int
	changes                                    int
	delta                                      int64 // created - deleted
	count                                      int64 // full rounds: documents after the sweep
}

func (r *result) completion(rd store.Round, handOver bool) store.Completion {
	return store.Completion{Round: store.Round{StartedAt: rd.StartedAt, Full: r.full}, Token: r.token,
		Changes: r.changes, EventDelta: r.delta, EventCount: r.count, HandOver: handOver}
}

// roundState is the memory of one round: ids only, never events, except the
// rare cancelled exceptions whose series is not known yet.
type roundState struct {
	key, calendarID string
	full            bool
	listed          map[string]struct{} // full rounds: every id the listing returned
	series          map[string]bool     // masters seen in this round: live (true) or cancelled (false)
	orphans         []*calendar.Event   // cancelled exceptions of a series not seen yet
	loc             *time.Location
	locName         string
	res             *result
}

// round runs one sync: incremental with rd.Token, or full (with a sweep).
// A 410 fullSyncRequired turns an incremental round into a full one.
func (s *Syncer) round(ctx context.Context, log *slog.Logger, key string, rd store.Round) (*result, error) {
	svc, err := retry(ctx, s, func() (*calendar.Service, error) { return s.o.Services.Service(ctx, rd.Calendar) })
	if err != nil {
		return nil, err
	}
	st := &roundState{key: key, calendarID: rd.Calendar.CalendarID, res: &result{}}
	// Ids whose "created" a dead sync published without writing them.
	leftover, err := retry(ctx, s, func() ([]string, error) { return s.o.Store.Announcing(ctx, key) })
	if err != nil {
		return nil, err
	}
	if !rd.Full {
		err = s.listAll(ctx, svc, st, rd.Token)
		if err == nil {
			return st.res, s.resolveGhosts(ctx, st, leftover)
		}
		if Classify(err) != KindSyncTokenGone {
			return nil, err
		}
		log.Warn("sync token no longer valid (410); full resync with mark and sweep", logging.KeyEvent, logging.EventFullResync,
			logging.KeyError, err.Error())
	}
	// Full: keep what an interrupted incremental listing wrote (it is newer
	// data, and etags make it idempotent), start a fresh listing.
	prev := st.res
	st.res = &result{full: true, pages: prev.pages, listed: prev.listed, written: prev.written, deleted: prev.deleted,
		unchanged: prev.unchanged, changes: prev.changes}
	st.full = true
	st.listed = make(map[string]struct{})
	st.series = nil
	st.orphans = nil
	if err := s.listAll(ctx, svc, st, ""); err != nil {
		return nil, err
	}
	if err := s.sweep(ctx, st); err != nil {
		return nil, err
	}
	return st.res, s.resolveGhosts(ctx, st, leftover)
}

// resolveGhosts ends what a sync killed between publishing and writing left:
// once this round has made the mirror exact, an announced id the mirror lacks
// is an event deleted meanwhile, and consumers get its "deleted".
func (s *Syncer) resolveGhosts(ctx context.Context, st *roundState, leftover []string) error {
	if len(leftover) == 0 {
		return nil
	}
	have, err := retry(ctx, s, func() (map[string]store.EventMeta, error) { return s.o.Store.GetEvents(ctx, st.key, leftover) })
	if err != nil {
		return err
	}
	var msgs []pubsubx.Message
	syncedAt := s.now()
	for _, id := range leftover {
		if have[id].Exists || s.o.Publisher == nil {
			continue
		}
		m, err := changeMessage(st, id, messages.ChangeDeleted, &pending{}, syncedAt)
		if err != nil {
			return err
		}
		msgs = append(msgs, m)
	}
	if len(msgs) > 0 {
		if err := s.try(ctx, func() error { return s.o.Publisher.PublishAll(ctx, st.key, msgs) }); err != nil {
			return err
		}
		s.stats.changes.Add(int64(len(msgs)))
		st.res.changes += len(msgs)
	}
	err = s.try(ctx, func() error { return s.o.Store.UnmarkAnnouncing(ctx, st.key, leftover) })
	return err
}

// listAll follows every page of one listing, writing each page before the
// next is processed (the next page is fetched while the current one is
// written: at most two pages in memory), then resolves orphans. The token
// comes from the last page.
func (s *Syncer) listAll(ctx context.Context, svc *calendar.Service, st *roundState, token string) error {
	type fetched struct {
		page *calendar.Events
		err  error
	}
	fctx, cancelFetch := context.WithCancel(ctx)
	defer cancelFetch()
	fetch := func(pageToken string) (*calendar.Events, error) {
		return retry(fctx, s, func() (*calendar.Events, error) {
			s.stats.lists.Add(1)
			call := svc.Events.List(st.calendarID).ShowDeleted(true).MaxResults(s.o.PageSize).Context(fctx)
			if token != "" {
				call.SyncToken(token)
			}
			if pageToken != "" {
				call.PageToken(pageToken)
			}
			return call.Do()
		})
	}
	page, err := fetch("")
	for {
		if err != nil {
			return err
		}
		var next chan fetched
		if page.NextPageToken != "" {
			next = make(chan fetched, 1)
			go func(pt string) {
				p, err := fetch(pt)
				next <- fetched{p, err}
			}(page.NextPageToken)
		}
		st.res.pages++
		st.res.listed += len(page.Items)
		if page.TimeZone != st.locName {
			st.locName = page.TimeZone
			st.loc, _ = time.LoadLocation(page.TimeZone) // unknown zone: nil, all-day dates in UTC
		}
		if err := s.applyPage(ctx, st, page.Items); err != nil {
			if next != nil {
				cancelFetch()
				<-next // let the prefetch end before returning
			}
			return err
		}
		if next == nil {
			if err := s.resolveOrphans(ctx, st); err != nil {
				return err
			}
			st.res.token = page.NextSyncToken
			return nil
		}
		f := <-next
		page, err = f.page, f.err
	}
}

// pending is the planned final state of one document in a page.
type pending struct {
	before store.EventMeta
	ev     *calendar.Event // the item (nil for a delete without one)
	doc    map[string]any  // nil: delete
}

// pageBatch plans the writes of a page, in order; later items win.
type pageBatch struct {
	existing map[string]store.EventMeta
	plan     map[string]*pending
	order    []string
}

func (b *pageBatch) current(id string) store.EventMeta {
	if p, ok := b.plan[id]; ok {
		if p.doc == nil {
			return store.EventMeta{ID: id}
		}
		return store.EventMeta{ID: id, Exists: true, Etag: p.ev.Etag, Status: p.ev.Status, RecurringEventID: p.ev.RecurringEventId,
			Series: len(p.ev.Recurrence) > 0}
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

// applyPage reads the page's documents in one GetAll, plans the writes
// (only changed etags), publishes their change messages and then writes them.
func (s *Syncer) applyPage(ctx context.Context, st *roundState, items []*calendar.Event) error {
	if len(items) == 0 {
		return nil
	}
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
			add(ev.RecurringEventId) // is the series alive?
		}
	}
	existing, err := retry(ctx, s, func() (map[string]store.EventMeta, error) { return s.o.Store.GetEvents(ctx, st.key, ids) })
	if err != nil {
		return err
	}
	b := &pageBatch{existing: existing, plan: make(map[string]*pending, len(items))}
	syncedAt := s.now()
	for _, ev := range items {
		if st.full {
			st.listed[ev.Id] = struct{}{}
		}
		if err := s.plan(ctx, st, b, ev, syncedAt); err != nil {
			return err
		}
	}
	return s.flush(ctx, st, b, syncedAt)
}

func (st *roundState) seriesLive(b *pageBatch, master string) (live, known bool) {
	if v, ok := st.series[master]; ok {
		return v, true
	}
	if st.full {
		return false, false // the mirror may be stale: only the listing counts
	}
	m := b.current(master)
	if m.Exists {
		return m.Status != "cancelled", true
	}
	return false, false
}

func (s *Syncer) plan(ctx context.Context, st *roundState, b *pageBatch, ev *calendar.Event, syncedAt time.Time) error {
	if ev.RecurringEventId == "" && len(ev.Recurrence) > 0 || ev.RecurringEventId == "" && ev.Status == "cancelled" {
		if st.series == nil {
			st.series = make(map[string]bool)
		}
		st.series[ev.Id] = ev.Status != "cancelled"
	}
	switch {
	case ev.Status == "cancelled" && ev.RecurringEventId == "":
		// A deletion: the event, and if it was a series, its exceptions.
		cur := b.current(ev.Id)
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
			return nil
		}
		exc, err := retry(ctx, s, func() ([]store.EventMeta, error) { return s.o.Store.Exceptions(ctx, st.key, ev.Id) })
		if err != nil {
			return err
		}
		for _, m := range exc {
			if _, ok := b.existing[m.ID]; !ok {
				b.existing[m.ID] = m
			}
			if b.current(m.ID).Exists {
				b.put(m.ID, m, nil, nil)
			}
		}
		return nil
	case ev.Status == "cancelled":
		// A cancelled occurrence: kept while its series lives.
		live, known := st.seriesLive(b, ev.RecurringEventId)
		if !known {
			st.orphans = append(st.orphans, ev)
			return nil
		}
		if !live {
			if b.current(ev.Id).Exists {
				b.put(ev.Id, store.EventMeta{}, ev, nil)
			}
			return nil
		}
	}
	doc, err := store.EventDoc(ev, st.loc, syncedAt)
	if err != nil {
		return err
	}
	b.put(ev.Id, store.EventMeta{ID: ev.Id}, ev, doc)
	return nil
}

// resolveOrphans decides the cancelled exceptions whose series the round had
// not seen: kept if the series is live (in this listing, or in the mirror for
// an incremental round), removed otherwise.
func (s *Syncer) resolveOrphans(ctx context.Context, st *roundState) error {
	if len(st.orphans) == 0 {
		return nil
	}
	orphans := st.orphans
	st.orphans = nil
	ids := make([]string, 0, 2*len(orphans))
	for _, ev := range orphans {
		ids = append(ids, ev.Id, ev.RecurringEventId)
	}
	existing, err := retry(ctx, s, func() (map[string]store.EventMeta, error) { return s.o.Store.GetEvents(ctx, st.key, ids) })
	if err != nil {
		return err
	}
	b := &pageBatch{existing: existing, plan: make(map[string]*pending)}
	syncedAt := s.now()
	for _, ev := range orphans {
		live, known := st.series[ev.RecurringEventId]
		if !known && !st.full {
			m := existing[ev.RecurringEventId]
			live = m.Exists && m.Status != "cancelled"
		}
		if !live {
			if b.current(ev.Id).Exists {
				b.put(ev.Id, store.EventMeta{}, ev, nil)
			}
			continue
		}
		doc, err := store.EventDoc(ev, st.loc, syncedAt)
		if err != nil {
			return err
		}
		b.put(ev.Id, store.EventMeta{ID: ev.Id}, ev, doc)
	}
	return s.flush(ctx, st, b, syncedAt)
}

// flush publishes the page's change messages (and waits for Pub/Sub), then
// writes the documents: a crash in between re-sends, never loses.
func (s *Syncer) flush(ctx context.Context, st *roundState, b *pageBatch, syncedAt time.Time) error {
	var writes []store.EventWrite
	var msgs []pubsubx.Message
	var created []string
	for _, id := range b.order {
		p := b.plan[id]
		var kind string
		switch {
		case p.doc == nil && !p.before.Exists:
			continue // created and deleted within the page, or never there
		case p.doc == nil:
			kind = messages.ChangeDeleted
			st.res.deleted++
			st.res.delta--
		case p.before.Exists && p.before.Etag == p.ev.Etag:
			st.res.unchanged++
			continue
		case p.before.Exists:
			kind = messages.ChangeUpdated
			st.res.written++
		default:
			kind = messages.ChangeCreated
			st.res.written++
			st.res.delta++
			created = append(created, id)
		}
		writes = append(writes, store.EventWrite{ID: id, Doc: p.doc})
		if s.o.Publisher != nil {
			m, err := changeMessage(st, id, kind, p, syncedAt)
			if err != nil {
				return err
			}
			msgs = append(msgs, m)
		}
	}
	return s.publishAndWrite(ctx, st, writes, msgs, created)
}

// publishAndWrite publishes a page's changes, then writes its documents. The
// ids announced as created are recorded first and dropped after the write, so
// a sync killed in between can be made good by the next round (resolveGhosts).
func (s *Syncer) publishAndWrite(ctx context.Context, st *roundState, writes []store.EventWrite, msgs []pubsubx.Message, created []string) error {
	if len(writes) == 0 {
		return nil
	}
	if len(msgs) == 0 {
		created = nil // nothing announced, nothing to record
	}
	if err := s.try(ctx, func() error { return s.o.Store.MarkAnnouncing(ctx, st.key, created) }); err != nil {
		return err
	}
	if len(msgs) > 0 {
		if err := s.try(ctx, func() error { return s.o.Publisher.PublishAll(ctx, st.key, msgs) }); err != nil {
			return err
		}
		s.stats.changes.Add(int64(len(msgs)))
		st.res.changes += len(msgs)
	}
	if err := s.try(ctx, func() error { return s.o.Store.WriteEvents(ctx, st.key, writes) }); err != nil {
		return err
	}
	if err := s.try(ctx, func() error { return s.o.Store.UnmarkAnnouncing(ctx, st.key, created) }); err != nil {
		return err
	}
	for _, w := range writes {
		if w.Doc == nil {
			s.stats.dels.Add(1)
		} else {
			s.stats.writes.Add(1)
		}
	}
	return nil
}

func changeMessage(st *roundState, id, kind string, p *pending, syncedAt time.Time) (pubsubx.Message, error) {
	c := messages.Change{CalendarID: st.calendarID, CalendarKey: st.key, EventID: id, Change: kind,
		PreviousEtag: p.before.Etag, SyncedAt: syncedAt}
	var raw []byte
	var err error
	if p.ev != nil {
		c.Etag, c.Sequence, c.Updated = p.ev.Etag, p.ev.Sequence, p.ev.Updated
		raw, err = json.Marshal(p.ev)
	} else {
		// Removed with its series or by the sweep: no tombstone of its own.
		raw, err = json.Marshal(map[string]string{"kind": "calendar#event", "id": id, "status": "cancelled"})
	}
	if err != nil {
		return pubsubx.Message{}, err
	}
	c.Event = raw
	data, err := json.Marshal(c)
	if err != nil {
		return pubsubx.Message{}, err
	}
	return pubsubx.Message{Data: data, Attributes: c.Attributes()}, nil
}

// sweep removes, after a full listing, every mirrored event the listing did
// not return. It reads ids and etags only (a Select projection) and deletes in
// chunks, publishing a deleted change for each.
func (s *Syncer) sweep(ctx context.Context, st *roundState) error {
	const chunk = 500
	var gone []store.EventMeta
	var total int64
	err := s.try(ctx, func() error {
		gone, total = gone[:0], 0
		return s.o.Store.ForEachEvent(ctx, st.key, func(id, etag string) error {
			total++
			if _, ok := st.listed[id]; !ok {
				gone = append(gone, store.EventMeta{ID: id, Exists: true, Etag: etag})
			}
			return nil
		})
	})
	if err != nil {
		return err
	}
	syncedAt := s.now()
	for i := 0; i < len(gone); i += chunk {
		b := &pageBatch{existing: map[string]store.EventMeta{}, plan: map[string]*pending{}}
		for _, m := range gone[i:min(i+chunk, len(gone))] {
			b.existing[m.ID] = m
			b.put(m.ID, m, nil, nil)
		}
		if err := s.flush(ctx, st, b, syncedAt); err != nil {
			return err
		}
	}
	st.res.count = total - int64(len(gone))
	st.listed = nil
	return nil
}
