package syncer

import (
	"context"
	"log/slog"
	"time"

	"google.golang.org/api/calendar/v3"

	"github.com/calsync/calsync/shared/logging"
	"github.com/calsync/calsync/shared/messages"
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
	h               *sessionLease
	log             *slog.Logger
	startedAt       time.Time // what the round covers (the original start of a resumed round)
	stopAt          time.Time // the session's end: stop at the next checkpoint after it
	token           string    // incremental rounds: the sync token the listing started from
	chunks          int       // full rounds: chunks checkpointed so far
	invocations     int       // invocations this round has taken, this one included
	full            bool
	// neverFull: the calendar has not completed a full round yet, so a
	// full round is its initial sync (origin "initial").
	neverFull bool
	by        messages.Attribution // the calendar's tenant and reader (attributionOf)
	purge     bool                 // the sweep of an unwatched calendar's mirror (purge.go)
	listed    map[string]struct{}  // full rounds: every id the listing returned
	series    map[string]bool      // masters seen in this round: live (true) or cancelled (false)
	orphans   []*calendar.Event    // cancelled exceptions of a series not seen yet
	loc       *time.Location
	locName   string
	res       *result
}

// round runs one sync: incremental with rd.Token, or full (with a sweep),
// or the rest of a round an earlier invocation stopped (rd.Resume). A 410
// fullSyncRequired turns an incremental round into a full one. errStopped:
// the session's time ran out at a checkpoint; the next invocation continues.
func (s *Syncer) round(ctx context.Context, log *slog.Logger, h *sessionLease, rd store.Round, stopAt time.Time) (*result, error) {
	svc, err := retry(ctx, s, func() (*calendar.Service, error) { return s.o.Services.Service(ctx, rd.Calendar.Grant()) })
	if err != nil {
		return nil, err
	}
	st := &roundState{key: h.key, calendarID: rd.Calendar.CalendarID, h: h, log: log, startedAt: rd.StartedAt, stopAt: stopAt,
		invocations: 1, res: &result{}, neverFull: rd.Calendar.LastFullSyncAt.IsZero(), by: rd.Calendar.Attribution()}
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
		stored, err := s.o.Store.GetEvents(ctx, st.key, leftover)
		if err != nil {
			return err
		}
		msgs, err := planGhosts(s.planContext(st), leftover, stored)
		if err != nil {
			return err
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

// noteListed records what a page tells the round beyond its writes: the
// ids a full listing returned (the sweep's input), and the series masters
// it listed, live or cancelled.
func (st *roundState) noteListed(items []*calendar.Event) {
	for _, ev := range items {
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
}

// origin is which kind of sync the round is, for its change messages: a
// 410 turns an incremental round into a full one (a resync) on the way.
func (st *roundState) origin() string {
	switch {
	case st.purge:
		return messages.OriginPurge
	case !st.full:
		return messages.OriginIncremental
	case st.neverFull:
		return messages.OriginInitial
	}
	return messages.OriginResync
}

func (s *Syncer) planContext(st *roundState) planContext {
	return planContext{key: st.key, calendarID: st.calendarID, by: st.by, origin: st.origin(),
		syncedAt: s.now(), announce: s.o.Publisher != nil}
}

func (st *roundState) input(items []*calendar.Event, stored map[string]store.EventMeta) pageInput {
	return pageInput{items: items, stored: stored, series: st.series, full: st.full, loc: st.loc}
}

// applyPage writes one page: it reads the page's documents in one GetAll,
// plans (plan.go; a deleted series' exceptions read when the plan asks),
// and flushes the plan. A failure retries the whole page from a fresh read,
// so nothing half-applied is applied twice.
func (s *Syncer) applyPage(ctx context.Context, st *roundState, items []*calendar.Event) error {
	if len(items) == 0 {
		return nil
	}
	st.noteListed(items)
	ids := pageReads(items)
	// The stored documents of events about to be updated are kept for the
	// change messages' diffs (GetAll reads them whole anyway: diff.go).
	var newEtags map[string]string
	if !s.o.NoDiffs {
		newEtags = diffCandidates(items)
	}
	return s.try(ctx, func() error {
		stored, err := s.o.Store.GetEventsKeeping(ctx, st.key, ids, newEtags)
		if err != nil {
			return err
		}
		in, pc := st.input(items, stored), s.planContext(st)
		for {
			p, err := planPage(pc, in)
			if err != nil {
				return err
			}
			if len(p.missing) == 0 {
				if err := s.flush(ctx, st, p); err != nil {
					return err
				}
				st.orphans = append(st.orphans, p.orphans...)
				return nil
			}
			if in.exceptions == nil {
				in.exceptions = make(map[string][]store.EventMeta, len(p.missing))
			}
			for _, master := range p.missing {
				if in.exceptions[master], err = s.o.Store.Exceptions(ctx, st.key, master); err != nil {
					return err
				}
			}
		}
	})
}

// resolveOrphans writes the cancelled exceptions whose series the round had
// not seen when it listed them (planOrphans decides).
func (s *Syncer) resolveOrphans(ctx context.Context, st *roundState) error {
	if len(st.orphans) == 0 {
		return nil
	}
	ids := orphanReads(st.orphans)
	err := s.try(ctx, func() error {
		stored, err := s.o.Store.GetEvents(ctx, st.key, ids)
		if err != nil {
			return err
		}
		p, err := planOrphans(s.planContext(st), st.input(st.orphans, stored))
		if err != nil {
			return err
		}
		return s.flush(ctx, st, p)
	})
	if err == nil {
		st.orphans = nil
	}
	return err
}

// flush executes a plan: it records the ids announced as created, publishes
// the change messages (and waits for Pub/Sub), then writes the documents,
// fenced: a crash in between re-sends, never loses. A document Firestore
// refuses is stored in part. The round's result is updated only once it
// all succeeded.
func (s *Syncer) flush(ctx context.Context, st *roundState, p plan) error {
	t := p.tally
	if len(p.writes) == 0 {
		st.res.add(t)
		return nil
	}
	// Record the ids announced as created before announcing them, so a sync
	// killed before writing them leaves no ghost (resolveGhosts).
	if err := s.o.Store.MarkAnnouncing(ctx, st.key, st.h.lease, p.created); err != nil {
		return err
	}
	if err := s.publish(ctx, st, p.messages); err != nil {
		return err
	}
	rejected, err := s.o.Store.WriteEvents(ctx, st.key, st.h.lease, p.writes)
	if err != nil {
		return err
	}
	for _, r := range rejected {
		w, ok := p.fallback(r.ID)
		if !ok {
			return r.Err // only a document set can be refused; this is a bug
		}
		if again, err := s.o.Store.WriteEvents(ctx, st.key, st.h.lease, []store.EventWrite{w}); err != nil || len(again) > 0 {
			if err == nil {
				err = again[0].Err
			}
			return err
		}
		t.problems = append(t.problems, problem{r.ID, store.ProblemRejected + ": " + clipError(r.Err)})
	}
	if err := s.o.Store.UnmarkAnnouncing(ctx, st.key, st.h.lease, p.created); err != nil {
		return err
	}
	for _, w := range p.writes {
		if w.Doc == nil {
			s.stats.dels.Add(1)
		} else {
			s.stats.writes.Add(1)
		}
	}
	s.stats.changes.Add(int64(len(p.messages)))
	for _, pr := range t.problems {
		// Stored as far as it could be, flagged; the sync goes on.
		st.log.Error("event stored in part: Firestore cannot hold it as Google sent it", logging.KeyEvent, logging.EventUnstorable,
			logging.KeyEventID, pr.id, logging.KeyReason, pr.reason)
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
	pc := s.planContext(st)
	for i := 0; i < len(gone); i += chunk {
		ids := gone[i:min(i+chunk, len(gone))]
		err := s.try(ctx, func() error {
			// Each document kept (no listed etag matches ""): its deleted
			// message carries it as lastKnown. GetAll reads whole documents
			// anyway; a chunk is held at a time.
			gone := make(map[string]string, len(ids))
			for _, id := range ids {
				gone[id] = ""
			}
			stored, err := s.o.Store.GetEventsKeeping(ctx, st.key, ids, gone)
			if err != nil {
				return err
			}
			p, err := planSweep(pc, ids, stored)
			if err != nil {
				return err
			}
			return s.flush(ctx, st, p)
		})
		if err != nil {
			return err
		}
	}
	st.res.count = total - int64(len(gone))
	st.listed = nil
	return nil
}
