package calclient

import (
	"context"
	"crypto/sha256"
	"encoding/base32"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"
)

// Google's Calendar quotas hold across all of a deployment's processes: 600
// requests a minute per user per project and 10,000 a minute per project,
// sliding windows. A per-process limiter cannot keep them (N SyncWorker
// instances and RenewChannels each spent their own allowance), so every call
// takes one unit from a budget shared through Firestore: SharedBudget. Each
// process leases slices of calls (one transaction per slice, sized to its
// recent rate, far fewer than one per call) and must spend a slice within
// SliceTTL; the shared documents count a grant for the window plus SliceTTL,
// so whenever its calls land, no sliding window at Google sees more than the
// limit (give or take the processes' clock skew, which the margin under
// Google's limits absorbs).
//
// A lease costs two document reads and a write, so a user who calls once a
// minute would cost one lease per call. With Processes set, a fifth of each
// limit is split between the processes as a local allowance: a process
// makes up to that many calls a window per bucket without asking Firestore
// (most users, most of the time), and the shared documents hold the other
// four fifths. Together: at most the limit, while no more than Processes
// processes call at once.
//
// Google also counts the project's calls a day (the Calendar API's daily
// threshold, 1,000,000 per project per 24 hours; past it, charges apply).
// ProjectPerDay holds the deployment under a daily limit of its own: a
// sliding 24-hour window, so no calendar day, wherever Google starts it,
// sees more. Its slices may be spent for minutes rather than seconds (a
// day's count needs no finer grain) and it has no local allowance: over a
// day, instances come and go, and each new one would spend its share again.

// Budget admits Calendar API calls of one user identity (see Identity).
type Budget interface {
	// Take blocks until one call of identity may go, or fails: a
	// *BudgetError when the wait would outlast the caller's bound
	// (WithMaxWait), the context's error, or the shared store's.
	Take(ctx context.Context, identity string) error
}

// BudgetError: no call is free before RetryAt (later than the caller wanted
// to wait). A rate limit of calsync's own: retry then, or hand the work over.
type BudgetError struct {
	Bucket  string // "project", "daily" or "user"
	RetryAt time.Time
}

func (e *BudgetError) Error() string {
	return fmt.Sprintf("calclient: %s call budget spent until %s", e.Bucket, e.RetryAt.Format(time.RFC3339))
}

// IsBudgetExhausted reports a *BudgetError and when to retry.
func IsBudgetExhausted(err error) (time.Time, bool) {
	var be *BudgetError
	if errors.As(err, &be) {
		return be.RetryAt, true
	}
	return time.Time{}, false
}

type maxWaitKey struct{}

// WithMaxWait bounds how long Take may wait for the budget under ctx: past
// it, the call fails at once with a *BudgetError (a sync hands its calendar
// over rather than hold a lease and an instance while it waits). Without
// it, Take waits as long as ctx lets it (RenewChannels, the CLI).
func WithMaxWait(ctx context.Context, d time.Duration) context.Context {
	return context.WithValue(ctx, maxWaitKey{}, d)
}

// Leaser is the shared store of budgets (store.Store.LeaseQuota).
type Leaser interface {
	LeaseQuota(ctx context.Context, bucket string, want, limit int, span time.Duration) (granted int, retryAt time.Time, err error)
}

// SharedBudget is the Firestore-backed Budget: per user identity a bucket of
// UserPerMinute calls (DefaultRatePerMinute if 0), and one of
// ProjectPerMinute for the whole deployment (none if 0).
type SharedBudget struct {
	Store            Leaser
	UserPerMinute    int
	ProjectPerMinute int
	// SliceTTL is how long a leased slice may be spent (default 5 s). The
	// longer, the fewer transactions, the more of the limit goes unused:
	// the sustained rate is limit × 60 s / (60 s + SliceTTL).
	SliceTTL time.Duration
	// Window is the quota window (default a minute, Google's).
	Window time.Duration
	// Processes is the most processes of the deployment that call at once
	// (CALENDAR_PROCESSES: SyncWorker instances, RenewChannels, a spare).
	// 0: no local allowance, every call from the shared documents.
	Processes int
	// ProjectPerDay is the deployment's calls in any 24 hours, all users
	// together (none if 0), in the shared document DailyBucket.
	ProjectPerDay int
	Now           func() time.Time

	mu      sync.Mutex
	project *slicer
	daily   *slicer
	users   map[string]*slicer
}

// BucketOf is the quota document id of a user identity (a hash: no email
// in document ids).
func BucketOf(identity string) string {
	sum := sha256.Sum256([]byte(identity))
	return "user-" + strings.ToLower(base32.HexEncoding.WithPadding(base32.NoPadding).EncodeToString(sum[:15]))
}

// ProjectBucket is the quota document id of the whole deployment.
const ProjectBucket = "project"

// DailyBucket is the quota document id of the deployment's daily limit.
const DailyBucket = "project-day"

// dailySliceTTL: how long a slice of the daily budget may be spent.
const dailySliceTTL = 5 * time.Minute

func (b *SharedBudget) slicers(identity string) (*slicer, *slicer, *slicer) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.users == nil {
		b.users = map[string]*slicer{}
		if b.ProjectPerMinute > 0 {
			b.project = b.newSlicer(ProjectBucket, b.ProjectPerMinute, 10)
		}
		if b.ProjectPerDay > 0 {
			b.daily = b.newDailySlicer()
		}
	}
	u := b.users[identity]
	if u == nil {
		limit := b.UserPerMinute
		if limit <= 0 {
			limit = DefaultRatePerMinute
		}
		u = b.newSlicer(BucketOf(identity), limit, 1)
		b.users[identity] = u
	}
	return u, b.project, b.daily
}

// newDailySlicer: slices of at most a thousandth of the day (they count
// for the day plus their TTL wherever their calls land, and what expires
// unspent is lost for a day), no local allowance.
func (b *SharedBudget) newDailySlicer() *slicer {
	s := b.newSlicer(DailyBucket, b.ProjectPerDay, 1)
	s.free, s.limit = 0, b.ProjectPerDay
	s.window, s.ttl = 24*time.Hour, dailySliceTTL
	s.span = s.window + s.ttl
	s.max = max(1, b.ProjectPerDay/1000)
	s.size = min(4, s.max)
	return s
}

func (b *SharedBudget) newSlicer(bucket string, limit, minSlice int) *slicer {
	ttl := b.SliceTTL
	if ttl <= 0 {
		ttl = 5 * time.Second
	}
	window := b.Window
	if window <= 0 {
		window = time.Minute
	}
	now := b.Now
	if now == nil {
		now = time.Now
	}
	free := 0
	if b.Processes > 0 {
		// A fifth of the limit, split over the processes, is spent here
		// without a lease; the shared documents hold the rest.
		free = limit / 5 / b.Processes
		limit -= free * b.Processes
	}
	// Slices of at most a twentieth of the limit: a process never sits on
	// much of what others could use.
	maxSlice := max(minSlice, limit/20)
	return &slicer{store: b.Store, bucket: bucket, limit: limit, span: window + ttl, ttl: ttl, now: now,
		min: minSlice, max: maxSlice, size: min(max(minSlice, 4), maxSlice), free: free, window: window}
}

// Take implements Budget: one call from the identity's bucket, one from
// the project's, and one from the day's (last: the scarcest, wasted by no
// refusal of the others).
func (b *SharedBudget) Take(ctx context.Context, identity string) error {
	u, p, d := b.slicers(identity)
	for _, s := range []*slicer{u, p, d} {
		if s == nil {
			continue
		}
		if err := s.take(ctx); err != nil {
			return err
		}
	}
	return nil
}

// slicer is one bucket's allotment in this process.
type slicer struct {
	store          Leaser
	bucket         string
	limit          int
	span, ttl      time.Duration
	now            func() time.Time
	min, max, size int // slice sizes: bounds, and the next one's
	mu             sync.Mutex
	tokens         int
	expires        time.Time
	retryAt        time.Time
	leasing        chan struct{} // non-nil while a lease is in flight
	// free calls a window this process makes without a lease; spent holds
	// when it made those of the last window.
	free   int
	window time.Duration
	spent  []time.Time
}

// takeFree spends one call of the local allowance if the last window has
// room (s.mu held).
func (s *slicer) takeFree(now time.Time) bool {
	if s.free == 0 {
		return false
	}
	cut := 0
	for cut < len(s.spent) && !s.spent[cut].After(now.Add(-s.window)) {
		cut++
	}
	s.spent = s.spent[cut:]
	if len(s.spent) >= s.free {
		return false
	}
	s.spent = append(s.spent, now)
	return true
}

func (s *slicer) take(ctx context.Context) error {
	bound, bounded := ctx.Value(maxWaitKey{}).(time.Duration)
	deadline, hasDeadline := ctx.Deadline()
	for {
		s.mu.Lock()
		now := s.now()
		if s.takeFree(now) {
			s.mu.Unlock()
			return nil
		}
		if s.tokens > 0 && now.Before(s.expires) {
			s.tokens--
			if s.tokens == 0 {
				s.size = min(s.size*2, s.max) // spent in time: ask for more next time
			}
			s.mu.Unlock()
			return nil
		}
		if s.tokens > 0 {
			// The slice expired with calls left: they are lost (Firestore
			// counts them all the same); ask for fewer.
			s.tokens, s.size = 0, max(s.size/2, s.min)
		}
		if now.Before(s.retryAt) {
			at := s.retryAt
			s.mu.Unlock()
			if (bounded && at.Sub(now) > bound) || (hasDeadline && at.After(deadline)) {
				return &BudgetError{Bucket: bucketKind(s.bucket), RetryAt: at}
			}
			if err := sleep(ctx, at.Sub(now)); err != nil {
				return err
			}
			continue
		}
		if ch := s.leasing; ch != nil {
			s.mu.Unlock()
			select {
			case <-ch:
			case <-ctx.Done():
				return ctx.Err()
			}
			continue
		}
		ch := make(chan struct{})
		s.leasing = ch
		want := s.size
		s.mu.Unlock()

		granted, retryAt, err := s.store.LeaseQuota(ctx, s.bucket, want, s.limit, s.span)
		s.mu.Lock()
		s.leasing = nil
		close(ch)
		if err != nil {
			s.mu.Unlock()
			return fmt.Errorf("calclient: call budget: %w", err)
		}
		if granted > 0 {
			s.tokens, s.expires = granted, s.now().Add(s.ttl)
		} else {
			s.retryAt = retryAt
		}
		s.mu.Unlock()
	}
}

func bucketKind(bucket string) string {
	switch bucket {
	case ProjectBucket:
		return "project"
	case DailyBucket:
		return "daily"
	}
	return "user"
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
