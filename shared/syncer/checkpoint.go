package syncer

// Long rounds: a listing of many pages checkpoints after every page that has
// a next one (store/checkpoint.go), stops at a checkpoint once the session's
// time is up, and the next invocation continues it.

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"google.golang.org/api/calendar/v3"
	"google.golang.org/api/googleapi"

	"github.com/calsync/calsync/shared/calclient"
	"github.com/calsync/calsync/shared/store"
)

// errStopped: the session's time ran out at a checkpoint.
var errStopped = errors.New("syncer: session time used up; stopped at a checkpoint")

// checkpoint records the round's position after page (which has a next one).
func (s *Syncer) checkpoint(ctx context.Context, st *roundState, page *calendar.Events) error {
	r := st.res
	cp := store.Checkpoint{StartedAt: st.startedAt, Full: st.full, PageToken: page.NextPageToken, TimeZone: st.locName,
		Chunks: st.chunks, Pages: r.pages, Listed: r.listed, Written: r.written, Deleted: r.deleted, Unchanged: r.unchanged,
		Stale: r.stale, Problems: r.problems, Changes: r.changes, Invocations: st.invocations}
	var chunk *store.Chunk
	if st.full {
		chunk = &store.Chunk{IDs: make([]string, 0, len(page.Items))}
		for _, ev := range page.Items {
			chunk.IDs = append(chunk.IDs, ev.Id)
			if ev.RecurringEventId == "" && (len(ev.Recurrence) > 0 || ev.Status == "cancelled") {
				if ev.Status == "cancelled" {
					chunk.Cancelled = append(chunk.Cancelled, ev.Id)
				} else {
					chunk.Live = append(chunk.Live, ev.Id)
				}
			}
		}
		cp.Chunks++
	} else {
		cp.Token = st.token
	}
	for _, ev := range st.orphans {
		raw, err := json.Marshal(ev)
		if err != nil {
			return err
		}
		cp.Orphans = append(cp.Orphans, string(raw))
	}
	if err := s.try(ctx, func() error { return s.o.Store.SaveCheckpoint(ctx, st.key, st.h.lease, cp, chunk) }); err != nil {
		return err
	}
	st.chunks = cp.Chunks
	return nil
}

// restore loads a stopped round's state: progress, the ids and series its
// pages listed (full rounds), its held orphans.
func (s *Syncer) restore(ctx context.Context, st *roundState, cp *store.Checkpoint) error {
	st.full, st.res.full, st.token = cp.Full, cp.Full, cp.Token
	st.res.pages, st.res.listed, st.res.written, st.res.deleted = cp.Pages, cp.Listed, cp.Written, cp.Deleted
	st.res.unchanged, st.res.stale, st.res.problems, st.res.changes = cp.Unchanged, cp.Stale, cp.Problems, cp.Changes
	st.invocations = cp.Invocations + 1
	st.locName = cp.TimeZone
	st.loc, _ = time.LoadLocation(cp.TimeZone)
	for _, raw := range cp.Orphans {
		var ev calendar.Event
		if err := json.Unmarshal([]byte(raw), &ev); err != nil {
			return err
		}
		st.orphans = append(st.orphans, &ev)
	}
	if !cp.Full {
		return nil
	}
	chunks, err := retry(ctx, s, func() ([]store.Chunk, error) { return s.o.Store.Chunks(ctx, st.key, cp.Chunks) })
	if err != nil {
		return err
	}
	st.chunks = cp.Chunks
	st.listed = make(map[string]struct{})
	st.series = make(map[string]bool)
	for _, c := range chunks {
		for _, id := range c.IDs {
			st.listed[id] = struct{}{}
		}
		for _, id := range c.Live {
			st.series[id] = true
		}
		for _, id := range c.Cancelled {
			st.series[id] = false
		}
	}
	return nil
}

// discard drops a checkpoint whose page token Google no longer takes.
func (s *Syncer) discard(ctx context.Context, st *roundState, cp *store.Checkpoint) error {
	st.log.Warn("a stopped sync cannot be continued (its page token was refused); starting the round over")
	return s.try(ctx, func() error { return s.o.Store.DiscardCheckpoint(ctx, st.key, st.h.lease, *cp) })
}

// resumeRefused: the first list call of a resumed round was refused as such
// (400 for the page token, or 410): the stopped listing cannot go on.
func resumeRefused(err error) bool {
	var ge *googleapi.Error
	return err != nil && errors.As(err, &ge) && (ge.Code == http.StatusBadRequest || calclient.IsGone(err))
}
