package store

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"cloud.google.com/go/firestore"
	"github.com/google/uuid"
)

// The shared Calendar API budget: one document per quota bucket (the
// project, and each user identity) counts the calls granted per second, so
// every process of a deployment together stays within Google's
// sliding-window quotas. Processes lease calls in slices (the caller,
// calclient's SharedBudget, sizes them), not one at a time.
//
// A lease takes no transaction: many processes lease from one hot document,
// and contended transactions queue (Firestore) or stall for seconds (its
// emulator). Instead: read; if there is room, add the slice with an atomic
// increment; read again; if the total is now over the limit, give the excess
// back. Whoever reads last among those who keep calls saw every kept
// increment, so what is kept never exceeds the limit; racing leasers may
// both give back (the safe side).

// The document counts grants per slot of span/60 (whole seconds, at least
// one): a minute's budget per second, a day's per 24 minutes, so a
// document holds about 60 counters whatever its window.

// CollQuota holds quota/{bucket}.
const CollQuota = "quota"

// LeaseQuota grants up to want calls from bucket, which allows limit calls in
// any span (span: the rate window plus how long a granted slice may be
// spent, so calls made late from a slice still count where they land). It
// returns the calls granted (0 when the bucket is full) and, when 0, the
// time at which at least one call is free again.
func (s *Store) LeaseQuota(ctx context.Context, bucket string, want, limit int, span time.Duration) (granted int, retryAt time.Time, err error) {
	if want < 1 || limit < 1 {
		return 0, time.Time{}, fmt.Errorf("store: lease quota %s: want %d of %d", bucket, want, limit)
	}
	ref := s.Client.Collection(CollQuota).Doc(bucket)
	now := s.now()
	q, err := s.readQuota(ctx, ref, now, span)
	if err != nil {
		return 0, time.Time{}, err
	}
	room := int64(limit) - q.used
	if room < 1 {
		return 0, q.freeAt(int64(limit), span), nil
	}
	n := min(room, int64(want))
	field := strconv.FormatInt(now.Unix()/q.slot*q.slot, 10)
	used := map[string]any{field: firestore.Increment(n)}
	for _, k := range q.stale {
		used[k] = firestore.Delete
	}
	doc := map[string]any{"used": used, "limit": limit, "updatedAt": now}
	if len(q.staleBack) > 0 {
		backs := map[string]any{}
		for _, k := range q.staleBack {
			backs[k] = firestore.Delete
		}
		doc["back"] = backs
	}
	if _, err := ref.Set(ctx, doc, firestore.MergeAll); err != nil {
		return 0, time.Time{}, fmt.Errorf("store: lease quota %s: %w", bucket, err)
	}
	after, err := s.readQuota(ctx, ref, now, span)
	if err != nil {
		return 0, time.Time{}, err
	}
	if over := after.used - int64(limit); over > 0 {
		back := min(over, n)
		entry := map[string]any{"back": map[string]any{field + "_" + uuid.NewString(): back}}
		err := retryAmbiguous(ctx, func() error { _, err := ref.Set(ctx, entry, firestore.MergeAll); return err })
		if err != nil {
			return 0, time.Time{}, fmt.Errorf("store: lease quota %s: give back: %w", bucket, err)
		}
		n -= back
		if n == 0 {
			return 0, after.freeAt(int64(limit), span), nil
		}
	}
	return int(n), time.Time{}, nil
}

// quotaState is a bucket as read: the live seconds and their sum, and the
// keys of seconds out of the window.
type quotaState struct {
	slot      int64 // seconds a counter covers
	live      []quotaCount
	used      int64
	stale     []string // keys of used out of the window
	staleBack []string // keys of back out of the window
}

// quotaSlot is the seconds one counter of a bucket with this span covers.
func quotaSlot(span time.Duration) int64 { return max(1, int64(span/time.Second)/60) }

type quotaCount struct{ at, n int64 }

func (s *Store) readQuota(ctx context.Context, ref *firestore.DocumentRef, now time.Time, span time.Duration) (quotaState, error) {
	q := quotaState{slot: quotaSlot(span)}
	var d struct {
		Used map[string]int64 `firestore:"used"`
		Back map[string]int64 `firestore:"back"`
	}
	snap, err := ref.Get(ctx)
	switch {
	case isNotFound(err):
		return q, nil
	case err != nil:
		return q, fmt.Errorf("store: read quota %s: %w", ref.ID, err)
	}
	if err := snap.DataTo(&d); err != nil {
		return q, fmt.Errorf("store: read quota %s: %w", ref.ID, err)
	}
	// A grant in the slot starting at `at` counts until at+slot+span:
	// conservative about where in the slot it fell.
	live := func(at int64, err error) bool { return err == nil && now.Before(time.Unix(at+q.slot, 0).Add(span)) }
	back := map[int64]int64{}
	for k, n := range d.Back {
		slot, _, _ := strings.Cut(k, "_")
		at, err := strconv.ParseInt(slot, 10, 64)
		if !live(at, err) {
			q.staleBack = append(q.staleBack, k)
			continue
		}
		back[at] += n
	}
	for k, n := range d.Used {
		at, err := strconv.ParseInt(k, 10, 64)
		if !live(at, err) {
			q.stale = append(q.stale, k)
			continue
		}
		n = max(0, n-back[at])
		q.live = append(q.live, quotaCount{at, n})
		q.used += n
	}
	return q, nil
}

// freeAt is when the bucket has room for one call again.
func (q quotaState) freeAt(limit int64, span time.Duration) time.Time {
	live := append([]quotaCount(nil), q.live...)
	sort.Slice(live, func(i, j int) bool { return live[i].at < live[j].at })
	used := q.used
	for _, e := range live {
		used -= e.n
		if used < limit {
			return time.Unix(e.at+q.slot, 0).Add(span).UTC()
		}
	}
	return time.Unix(0, 0).UTC() // cannot happen: a full bucket has live seconds
}
