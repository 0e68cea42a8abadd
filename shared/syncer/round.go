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
	stale                                      int // listed versions older than the mirror's: not written
	problems                                   int // events stored only in part (store.FieldProblem)
	changes                                    int // change messages published
	count                                      int64
	invocations                                int // invocations the round took (>1: resumed from a checkpoint)
}

// tally is what one flush did; merged into the round's result only once the
// flush succeeded, so a page retried after a failure is not counted twice.
type tally struct {
	written, deleted, unchanged, stale, changes int
	problems                                    []problem
}

type problem struct{ id, reason string }

func (r *result) add(t tally) {
	r.written += t.written
	r.deleted += t.deleted
	r.unchanged += t.unchanged
	r.stale += t.stale
	r.changes += t.changes
	r.problems += len(t.problems)
}

func (r *result) completion(rd store.Round, handOver bool) store.Completion {
	return store.Completion{Round: store.Round{StartedAt: rd.StartedAt, Full: r.full}, Token: r.token,
		EventCount: r.count, HandOver: handOver}
}

// roundState is the memory of one round: ids only, never events, except the
// rare cancelled exceptions whose series is not known yet.
type roundState struct {
	key, calendarID string
	h               *holding
	log             *slog.Logger
	startedAt       time.Time // what the round covers (the original start of a resumed round)
	stopAt          time.Time // the session's end: stop at the next checkpoint after it
	token           string    // incremental rounds: the sync token the listing started from
	chunks          int       // full rounds: chunks checkpointed so far
	invocations     int       // invocations this round has taken, this one included
	full            bool
	listed          map[string]struct{} // full rounds: every id the listing returned
	series          map[string]bool     // masters seen in this round: live (true) or cancelled (false)
	orphans         []*calendar.Event   // cancelled exceptions of a series not seen yet
	loc             *time.Location
	locName         string
	res             *result
}

// round runs one sync: incremental with rd.Token, or full (with a sweep),
// or the rest of a round an earlier invocation stopped (rd.Resume). A 410
// fullSyncRequired turns an incremental round into a full one. errStopped:
// the session's time ran out at a checkpoint; the next invocation continues.
func (s *Syncer) round(ctx context.Context, log *slog.Logger, h *holding, rd store.Round, stopAt time.Time) (*result, error) {
	svc, err := retry(ctx, s, func() (*calendar.Service, error) { return s.o.Services.Service(ctx, rd.Calendar.Grant()) })
	if err != nil {
		return nil, err
	}
	st := &roundState{key: h.key, calendarID: rd.Calendar.CalendarID, h: h, log: log, startedAt: rd.StartedAt, stopAt: stopAt,
		invocations: 1, res: &result{}}
	// Ids whose "created" a dead sync published without writing them.
	leftover, err := retry(ctx, s, func() ([]string, error) { return s.o.Store.Announcing(ctx, h.key) })
	if err != nil {
		return nil, err
	}
	full, startPage := rd.Full, ""
	st.token = rd.Token
	if cp := rd.Resume; cp != nil {
		if err := s.restore(ctx, st, cp); err != nil {
			return nil, err
		}
		startPage = cp.PageToken
		log.Info("resuming a sync stopped at a checkpoint", logging.KeyPages, cp.Pages, logging.KeyListed, cp.Listed,
			logging.KeyInvocations, st.invocations)
	}
	if !full {
		err = s.listAll(ctx, svc, st, rd.Token, startPage)
		if startPage != "" && resumeRefused(err) {
			// The stopped listing cannot go on: start this round over.
			if err := s.discard(ctx, st, rd.Resume); err != nil {
				return nil, err
			}
			st.res, startPage = &result{}, ""
			err = s.listAll(ctx, svc, st, rd.Token, "")
		}
		if err == nil {
			st.res.invocations = st.invocations
			return st.res, s.resolveGhosts(ctx, st, leftover)
		}
		if Classify(err) != KindSyncTokenGone {
			return nil, err
		}
		// No cooldown here: a dead token leaves no incremental sync to
		// fall back on, and deferring the resync left the mirror stale for
		// the whole cooldown (FullResyncCooldown covers requested resyncs).
		log.Warn("sync token no longer valid (410); full resync with mark and sweep", logging.KeyEvent, logging.EventFullResync,
			logging.KeyError, err.Error())
		startPage = ""
	}
	if startPage == "" {
		// A fresh full listing. Keep what an interrupted incremental listing
		// wrote (it is newer data, and etags make it idempotent).
		prev := st.res
		st.res = &result{pages: prev.pages, listed: prev.listed, written: prev.written, deleted: prev.deleted,
			unchanged: prev.unchanged, stale: prev.stale, problems: prev.problems, changes: prev.changes}
		st.listed = make(map[string]struct{})
		st.series = nil
		st.orphans = nil
		st.chunks = 0
	}
	st.full, st.res.full = true, true
	err = s.listAll(ctx, svc, st, "", startPage)
	if startPage != "" && resumeRefused(err) {
		if err := s.discard(ctx, st, rd.Resume); err != nil {
			return nil, err
		}
		st.res, st.listed, st.series, st.orphans, st.chunks = &result{full: true}, map[string]struct{}{}, nil, nil, 0
		err = s.listAll(ctx, svc, st, "", "")
	}
	if err != nil {
		return nil, err
	}
	if err := s.sweep(ctx, st); err != nil {
		return nil, err
	}
	st.res.invocations = st.invocations
	return st.res, s.resolveGhosts(ctx, st, leftover)
}

// resolveGhosts ends what a sync killed between publishing and writing left:
// once this round has made the mirror exact, an announced id the mirror lacks
// is an event deleted meanwhile, and consumers get its "deleted".
func (s *Syncer) resolveGhosts(ctx context.Context, st *roundState, leftover []string) error {
	if len(leftover) == 0 {
		return nil
	}
	return s.try(ctx, func() error {
		have, err := s.o.Store.GetEvents(ctx, st.key, leftover)
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
		if err := s.publish(ctx, st, msgs); err != nil {
			return err
		}
		st.res.changes += len(msgs)
		return s.o.Store.UnmarkAnnouncing(ctx, st.key, st.h.lease, leftover)
	})
}

// listAll follows every page of one listing, writing each page before the
// next is processed (the next page is fetched while the current one is
// written: at most two pages in memory), then resolves orphans. The token
// comes from the last page.
func (s *Syncer) listAll(ctx context.Context, svc *calendar.Service, st *roundState, token, startPage string) error {
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
	page, err := fetch(startPage)
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
		// More pages: record where the round stands, so that an
		// invocation that ends (or dies) from here on is continued, not
		// restarted.
		if err := s.checkpoint(ctx, st, page); err != nil {
			cancelFetch()
			<-next
			return err
		}
		if !s.o.Now().Before(st.stopAt) {
			cancelFetch()
			<-next
			return errStopped
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
	orphans  []*calendar.Event // cancelled exceptions whose series is not known yet
	stale    int               // items older than the mirror's version: left alone
}

func newBatch(existing map[string]store.EventMeta) *pageBatch {
	return &pageBatch{existing: existing, plan: map[string]*pending{}}
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

// applyPage writes one page: it reads the page's documents in one GetAll,
// plans the writes (changed, newer versions only), publishes their change
// messages and then writes them. A failure retries the whole page from a
// fresh read, so nothing half-applied is applied twice.
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
		if st.full {
			st.listed[ev.Id] = struct{}{}
		}
		if ev.RecurringEventId == "" && (len(ev.Recurrence) > 0 || ev.Status == "cancelled") {
			if st.series == nil {
				st.series = make(map[string]bool)
			}
			st.series[ev.Id] = ev.Status != "cancelled"
		}
	}
	// The stored documents of events about to be updated are kept for the
	// change messages' diffs (GetAll reads them whole anyway: diff.go).
	var newEtags map[string]string
	if !s.o.NoDiffs {
		newEtags = make(map[string]string, len(items))
	}
	for _, ev := range items {
		if newEtags == nil {
			break
		}
		if ev.Status == "cancelled" {
			delete(newEtags, ev.Id) // a deletion or a cancelled occurrence: no diff
		} else {
			newEtags[ev.Id] = ev.Etag
		}
	}
	return s.try(ctx, func() error {
		existing, err := s.o.Store.GetEventsKeeping(ctx, st.key, ids, newEtags)
		if err != nil {
			return err
		}
		b := newBatch(existing)
		syncedAt := s.now()
		for _, ev := range items {
			if err := s.plan(ctx, st, b, ev, syncedAt); err != nil {
				return err
			}
		}
		if err := s.flush(ctx, st, b, syncedAt); err != nil {
			return err
		}
		st.orphans = append(st.orphans, b.orphans...)
		return nil
	})
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
	switch {
	case ev.Status == "cancelled" && ev.RecurringEventId == "":
		// A deletion: the event, and if it was a series, its exceptions.
		cur := b.current(ev.Id)
		if b.older(ev, cur) {
			return nil
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
			return nil
		}
		exc, err := s.o.Store.Exceptions(ctx, st.key, ev.Id)
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
			b.orphans = append(b.orphans, ev)
			return nil
		}
		if !live {
			if b.current(ev.Id).Exists {
				b.put(ev.Id, store.EventMeta{}, ev, nil)
			}
			return nil
		}
	}
	if b.older(ev, b.current(ev.Id)) {
		return nil
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
	ids := make([]string, 0, 2*len(orphans))
	for _, ev := range orphans {
		ids = append(ids, ev.Id, ev.RecurringEventId)
	}
	err := s.try(ctx, func() error {
		existing, err := s.o.Store.GetEvents(ctx, st.key, ids)
		if err != nil {
			return err
		}
		b := newBatch(existing)
		syncedAt := s.now()
		for _, ev := range orphans {
			live, known := st.series[ev.RecurringEventId]
			if !known && !st.full {
				m := existing[ev.RecurringEventId]
				live = m.Exists && m.Status != "cancelled"
			}
			cur := b.current(ev.Id)
			if b.older(ev, cur) {
				continue
			}
			if !live {
				if cur.Exists {
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
	})
	if err == nil {
		st.orphans = nil
	}
	return err
}

// flush publishes a batch's change messages (and waits for Pub/Sub), then
// writes the documents, fenced: a crash in between re-sends, never loses. The
// round's result is updated only once it all succeeded.
func (s *Syncer) flush(ctx context.Context, st *roundState, b *pageBatch, syncedAt time.Time) error {
	t := tally{stale: b.stale}
	var writes []store.EventWrite
	var msgs []pubsubx.Message
	var created []string
	for _, id := range b.order {
		p := b.plan[id]
		var kind string
		w := store.EventWrite{ID: id, Doc: p.doc, Replaces: p.before}
		switch {
		case p.doc == nil && !p.before.Exists:
			continue // created and deleted within the page, or never there
		case p.doc == nil:
			kind, w.Delta = messages.ChangeDeleted, -1
			t.deleted++
		case p.before.Exists && p.before.Etag == p.ev.Etag:
			t.unchanged++
			continue
		case p.ev.Status == "cancelled" && p.ev.RecurringEventId != "":
			// One occurrence of a live series cancelled: its own kind, not
			// an "updated" event with no summary.
			kind = messages.ChangeCancelled
			t.written++
			if !p.before.Exists {
				w.Delta = 1
				created = append(created, id)
			}
		case p.before.Exists:
			kind = messages.ChangeUpdated
			t.written++
		default:
			kind, w.Delta = messages.ChangeCreated, 1
			t.written++
			created = append(created, id)
		}
		if reason, ok := p.doc[store.FieldProblem].(string); ok {
			t.problems = append(t.problems, problem{id, reason})
		}
		writes = append(writes, w)
		if s.o.Publisher != nil {
			m, err := changeMessage(st, id, kind, p, syncedAt)
			if err != nil {
				return err
			}
			msgs = append(msgs, m)
		}
	}
	if len(writes) == 0 {
		st.res.add(t)
		return nil
	}
	if len(msgs) == 0 {
		created = nil // nothing announced, nothing to record
	}
	// Record the ids announced as created before announcing them, so a sync
	// killed before writing them leaves no ghost (resolveGhosts).
	if err := s.o.Store.MarkAnnouncing(ctx, st.key, st.h.lease, created); err != nil {
		return err
	}
	if err := s.publish(ctx, st, msgs); err != nil {
		return err
	}
	t.changes = len(msgs)
	rejected, err := s.o.Store.WriteEvents(ctx, st.key, st.h.lease, writes)
	if err != nil {
		return err
	}
	for _, r := range rejected {
		p := b.plan[r.ID]
		if p == nil || p.ev == nil {
			return r.Err // only a document set can be refused; this is a bug
		}
		doc := store.MinimalEventDoc(p.ev, store.ProblemRejected)
		w := store.EventWrite{ID: r.ID, Doc: doc, Replaces: p.before}
		if !p.before.Exists {
			w.Delta = 1
		}
		if again, err := s.o.Store.WriteEvents(ctx, st.key, st.h.lease, []store.EventWrite{w}); err != nil || len(again) > 0 {
			if err == nil {
				err = again[0].Err
			}
			return err
		}
		t.problems = append(t.problems, problem{r.ID, store.ProblemRejected + ": " + clipError(r.Err)})
	}
	if err := s.o.Store.UnmarkAnnouncing(ctx, st.key, st.h.lease, created); err != nil {
		return err
	}
	for _, w := range writes {
		if w.Doc == nil {
			s.stats.dels.Add(1)
		} else {
			s.stats.writes.Add(1)
		}
	}
	s.stats.changes.Add(int64(len(msgs)))
	for _, p := range t.problems {
		// Stored as far as it could be, flagged; the sync goes on.
		st.log.Error("event stored in part: Firestore cannot hold it as Google sent it", logging.KeyEvent, logging.EventUnstorable,
			logging.KeyEventID, p.id, logging.KeyReason, p.reason)
	}
	st.res.add(t)
	return nil
}

func clipError(err error) string {
	msg := err.Error()
	if len(msg) > 200 {
		msg = msg[:200]
	}
	return msg
}

func changeMessage(st *roundState, id, kind string, p *pending, syncedAt time.Time) (pubsubx.Message, error) {
	c := messages.Change{CalendarID: st.calendarID, CalendarKey: st.key, EventID: id, Change: kind,
		PreviousEtag: p.before.Etag, SyncedAt: syncedAt}
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
	var gone []string
	var total int64
	err := s.try(ctx, func() error {
		gone, total = gone[:0], 0
		return s.o.Store.ForEachEvent(ctx, st.key, func(id, etag string) error {
			total++
			if _, ok := st.listed[id]; !ok {
				gone = append(gone, id)
			}
			return nil
		})
	})
	if err != nil {
		return err
	}
	syncedAt := s.now()
	for i := 0; i < len(gone); i += chunk {
		ids := gone[i:min(i+chunk, len(gone))]
		err := s.try(ctx, func() error {
			existing, err := s.o.Store.GetEvents(ctx, st.key, ids)
			if err != nil {
				return err
			}
			b := newBatch(existing)
			for _, id := range ids {
				if m := existing[id]; m.Exists {
					b.put(id, m, nil, nil)
				}
			}
			return s.flush(ctx, st, b, syncedAt)
		})
		if err != nil {
			return err
		}
	}
	st.res.count = total - int64(len(gone))
	st.listed = nil
	return nil
}
