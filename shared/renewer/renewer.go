// Package renewer is calsync's channel renewal engine, run by the
// RenewChannels function (hourly, from Cloud Scheduler) and the operator CLI.
// Each run, in bounded parallel, one failure never stopping the
// rest: it renews channels expiring within RENEW_BEFORE (new channel first,
// then the old one stopped), gives every active calendar without a live
// channel a new one and asks for a catch-up sync, stops channels of calendars
// that are gone or not active, asks for a reconcile sync of calendars not
// synced for RECONCILE_AFTER or left dirty by a crashed sync, and closes the
// records of expired channels (expireAt: Firestore's TTL deletes them).
// Overlapping runs are safe: see shared/channels (chained channel ids).
package renewer

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/calsync/calsync/shared/calclient"
	"github.com/calsync/calsync/shared/channels"
	"github.com/calsync/calsync/shared/credentials"
	"github.com/calsync/calsync/shared/enroll"
	"github.com/calsync/calsync/shared/lifecycle"
	"github.com/calsync/calsync/shared/logging"
	"github.com/calsync/calsync/shared/messages"
	"github.com/calsync/calsync/shared/store"
)

// Publisher stores one message durably before returning nil (pubsubx.Publisher).
type Publisher interface {
	Publish(ctx context.Context, data []byte, attrs map[string]string, orderingKey string) error
}

// Summary is what one run did; the HTTP answer and the renew_run log line.
type Summary struct {
	Renewed      int `json:"renewed"`      // channels replaced before expiry
	Rekeyed      int `json:"rekeyed"`      // ... of them because another key than the signing one signed their token (rotation)
	Created      int `json:"created"`      // calendars without a live channel that got one
	Stopped      int `json:"stopped"`      // orphan and duplicate channels stopped
	Reconciles   int `json:"reconciles"`   // reconcile syncs asked for
	Failed       int `json:"failed"`       // calendars or requests that failed
	ExpiringSoon int `json:"expiringSoon"` // channels expiring within 6 h not renewed
	Expired      int `json:"expired"`      // records of expired channels closed
	Busy         int `json:"busy"`         // calendars left to an overlapping run
	Resealed     int `json:"resealed"`     // credentials sealed to the current key (legacy AES ones, or of an older key)
	PollOnly     int `json:"pollOnly"`     // calendars Google will not push for, polled instead (no channel)
	Polls        int `json:"polls"`        // ... of them asked to sync because their last sync is older than POLL_INTERVAL
	// PollsDeferred: poll-only calendars a poll run left alone because
	// their last sync is within POLL_MIN_INTERVAL (the cost guard).
	PollsDeferred int `json:"pollsDeferred"`
	NotFound404   int `json:"notFound404"` // events.watch answered 404 (counted in the calendar's streak)
	Probed        int `json:"probed"`      // not_found calendars tried again
	Reactivated   int `json:"reactivated"` // ... of them found again: active once more
	Calendars     int `json:"calendars"`   // calendars looked at
	// Enrollment (identities.go): calendar-list channels and directory diffs.
	Identities     int   `json:"identities"`     // identities looked at (their list channels ensured)
	ListReconciles int   `json:"listReconciles"` // identities whose list is looked at again (quiet too long)
	Directories    int   `json:"directories"`    // Workspace domains whose directory was diffed
	MirrorsExpired int   `json:"mirrorsExpired"` // unwatched calendars whose mirror was asked to be purged (RetainUnwatched)
	DurationMs     int64 `json:"durationMs"`
}

// Renewer runs the renewal.
type Renewer struct {
	ProjectID string // for the trace field of request logs
	Store     *store.Store
	Access    *credentials.Access // Calendar clients, credentials, the lifecycle owner
	Channels  *channels.Manager
	Publisher Publisher
	// RenewBefore renews channels expiring within it.
	RenewBefore time.Duration
	// ReconcileAfter asks for a sync of calendars not synced for it.
	ReconcileAfter time.Duration
	// Concurrency bounds calendars handled at once.
	Concurrency int
	// PollInterval: a poll-only calendar (Google will not push for it) is
	// asked to sync when its last sync is older than this.
	PollInterval time.Duration
	// PollMinInterval: a poll-only calendar is synced at most once per this
	// long (default 1h; its last sync started or finished), however often
	// the poll runs come: Google has nothing to push about for them, and a
	// holiday calendar polled every few minutes is cost for no news.
	PollMinInterval time.Duration
	// NotFoundReprobe: a not_found calendar is tried again this long after
	// its last try (0: never).
	NotFoundReprobe time.Duration
	Logger          *slog.Logger
	Now             func() time.Time
	// Progress, if set, is called after each calendar (the CLI's progress line).
	Progress func(done, total int)
	// Enroll, if set, is the enrollment engine: identities' list channels are
	// renewed like calendars' (and quiet lists looked at again), and each
	// Workspace domain's directory is diffed every DirectorySyncInterval.
	Enroll                *enroll.Enroller
	DirectorySyncInterval time.Duration
	// RetainUnwatched: a calendar nobody follows any more (unwatched: its
	// identity unenrolled or disconnected, it left a list, an operator
	// unwatched it) keeps its mirror this long after its last sync, then
	// the mirror is purged (each event announced deleted, origin purge).
	// 0 keeps mirrors for ever.
	RetainUnwatched time.Duration
}

func (r *Renewer) now() time.Time {
	if r.Now != nil {
		return r.Now().UTC()
	}
	return time.Now().UTC()
}

type task struct {
	key   string
	cal   *store.Calendar
	chans []store.Channel
}

// Run does one renewal run. The error is for a run that could not start
// (Firestore unreadable); failures of single calendars are counted in
// Summary.Failed and logged (event renew_failure), and the run goes on.
func (r *Renewer) Run(ctx context.Context) (Summary, error) {
	start := time.Now()
	var sum Summary
	// Directories first: the calendars they unenroll are then not renewed
	// below but have their channels stopped.
	r.directories(ctx, &sum)
	cals, err := r.Store.AllCalendars(ctx)
	if err != nil {
		return sum, fmt.Errorf("renew: read calendars: %w", err)
	}
	open, err := r.Store.ChannelsInStates(ctx, store.ChannelPending, store.ChannelActive)
	if err != nil {
		return sum, fmt.Errorf("renew: read channels: %w", err)
	}
	byKey := map[string][]store.Channel{}
	lists := map[string][]store.Channel{} // calendar-list channels, by identity key
	for _, ch := range open {
		if ch.Watches() == store.WatchesCalendarList {
			lists[ch.Key] = append(lists[ch.Key], ch)
			continue
		}
		byKey[ch.Key] = append(byKey[ch.Key], ch)
	}
	var tasks []task
	for key, c := range cals {
		if c.Status == store.StatusActive || len(byKey[key]) > 0 || r.probeDue(c) {
			tasks = append(tasks, task{key: key, cal: &c, chans: byKey[key]})
		}
	}
	for key, chans := range byKey {
		if _, ok := cals[key]; !ok {
			tasks = append(tasks, task{key: key, chans: chans}) // calendar gone: orphans
		}
	}
	tasks = interleave(tasks)
	sum.Calendars = len(tasks)

	conc := max(r.Concurrency, 1)
	var (
		mu   sync.Mutex
		wg   sync.WaitGroup
		sem  = make(chan struct{}, conc)
		done int
	)
	for _, t := range tasks {
		if ctx.Err() != nil {
			break
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			one := r.handle(ctx, t)
			mu.Lock()
			sum.add(one)
			done++
			if r.Progress != nil {
				r.Progress(done, len(tasks))
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		sum.Failed += len(tasks) - done
	}
	r.identities(ctx, lists, &sum)
	r.expireMirrors(ctx, cals, &sum)
	r.reseal(ctx, &sum)
	sum.DurationMs = time.Since(start).Milliseconds()
	r.log(ctx).InfoContext(ctx, "renew run done",
		logging.KeyEvent, logging.EventRenewRun,
		logging.KeyRenewed, sum.Renewed, logging.KeyRekeyed, sum.Rekeyed, logging.KeyCreated, sum.Created, logging.KeyStopped, sum.Stopped,
		logging.KeyReconciles, sum.Reconciles, logging.KeyFailed, sum.Failed, logging.KeyExpiringSoon, sum.ExpiringSoon,
		logging.KeyExpired, sum.Expired, logging.KeyBusy, sum.Busy, logging.KeyCalendars, sum.Calendars, logging.KeyResealed, sum.Resealed,
		logging.KeyPollOnly, sum.PollOnly, logging.KeyPolls, sum.Polls, logging.KeyProbed, sum.Probed, logging.KeyReactivated, sum.Reactivated,
		logging.KeyIdentities, sum.Identities, logging.KeyListReconciles, sum.ListReconciles, logging.KeyDirectories, sum.Directories,
		"mirrorsExpired", sum.MirrorsExpired,
		logging.KeyDurationMs, sum.DurationMs)
	return sum, nil
}

func (s *Summary) add(o Summary) {
	s.Renewed += o.Renewed
	s.Rekeyed += o.Rekeyed
	s.Created += o.Created
	s.Stopped += o.Stopped
	s.Reconciles += o.Reconciles
	s.Failed += o.Failed
	s.ExpiringSoon += o.ExpiringSoon
	s.Expired += o.Expired
	s.Busy += o.Busy
	s.PollOnly += o.PollOnly
	s.Polls += o.Polls
	s.NotFound404 += o.NotFound404
	s.Probed += o.Probed
	s.Reactivated += o.Reactivated
}

// expireMirrors asks for the purge of the mirrors of calendars unwatched
// for longer than RetainUnwatched (their last sync is older; a purged
// mirror counts no events, so it is asked once).
func (r *Renewer) expireMirrors(ctx context.Context, cals map[string]store.Calendar, sum *Summary) {
	if r.RetainUnwatched <= 0 || ctx.Err() != nil {
		return
	}
	before := r.now().Add(-r.RetainUnwatched)
	for key, c := range cals {
		if c.Status != store.StatusUnwatched || c.EventCount == 0 || c.LastSyncedAt.After(before) {
			continue
		}
		if err := Ask(ctx, r.Publisher, key, messages.StatePurge, r.now()); err != nil {
			sum.Failed++
			r.failure(ctx, key, "expire_mirror", err)
			continue
		}
		sum.MirrorsExpired++
		r.log(ctx).InfoContext(ctx, "unwatched calendar's mirror past its retention; purge asked", logging.KeyEvent, logging.EventMirrorExpired,
			logging.KeyCalendarKey, key, logging.KeyCalendarID, c.CalendarID, "lastSyncedAt", c.LastSyncedAt)
	}
}

// reseal seals every stored credential that is not sealed to the current
// key (legacy AES-GCM ones while CREDENTIAL_KEYS is set, or those of an older
// private key after a rotation), so neither migration nor rotation needs a
// private key outside the functions. Normally it finds nothing (two queries).
func (r *Renewer) reseal(ctx context.Context, sum *Summary) {
	if r.Access == nil || r.Access.Credentials.Seal == nil || ctx.Err() != nil {
		return
	}
	n, err := r.Access.Credentials.Reseal(ctx, nil)
	sum.Resealed = n
	if err != nil {
		sum.Failed++
		r.failure(ctx, "", "reseal", err)
	}
}

// interleave orders tasks round-robin over user identities, so the calendars
// in flight at any time are spread over users and no user's rate limit
// starves the others' work.
func interleave(tasks []task) []task {
	byUser := map[string][]task{}
	var users []string
	for _, t := range tasks {
		id := "orphan"
		if t.cal != nil {
			id = t.cal.Grant().Key()
		}
		if _, ok := byUser[id]; !ok {
			users = append(users, id)
		}
		byUser[id] = append(byUser[id], t)
	}
	slices.Sort(users)
	for _, u := range users {
		slices.SortFunc(byUser[u], func(a, b task) int { return cmp.Compare(a.key, b.key) })
	}
	out := make([]task, 0, len(tasks))
	for i := 0; len(out) < len(tasks); i++ {
		for _, u := range users {
			if i < len(byUser[u]) {
				out = append(out, byUser[u][i])
			}
		}
	}
	return out
}

func (r *Renewer) handle(ctx context.Context, t task) Summary {
	var s Summary
	if t.cal != nil && r.probeDue(*t.cal) {
		if !r.probe(ctx, t, &s) {
			return s
		}
	}
	out, err := r.Channels.Ensure(ctx, t.key, t.cal, t.chans, r.RenewBefore)
	s.Stopped, s.Expired = out.Stopped, out.Expired
	if out.Renewed {
		s.Renewed = 1
	}
	if out.Rekeyed {
		s.Rekeyed = 1
	}
	if out.Created {
		s.Created = 1
	}
	if out.Busy {
		s.Busy = 1
	}
	if out.ExpiringSoon {
		s.ExpiringSoon = 1
	}
	if out.PollOnly {
		s.PollOnly = 1
	}
	if err != nil {
		s.Failed++
		if t.cal == nil {
			r.failure(ctx, t.key, "channels", err)
			return s
		}
		res, lerr := r.lifecycle().Report(ctx, lifecycle.Calendar(t.key, *t.cal), lifecycle.OpEventsWatch, err)
		if lerr != nil {
			r.failure(ctx, t.key, "status", lerr)
		}
		if res.Effect == lifecycle.EffectCountNotFound {
			s.NotFound404++
		}
		switch res.Next {
		case lifecycle.RetryLater:
			r.failure(ctx, t.key, "channels", err) // the next run tries again
		case lifecycle.Defer:
			return s // a delegation Google does not have yet: the owner logged it; the next run tries again
		case lifecycle.Probe:
			// A 404 that is not yet proof: the reconcile below tries it again.
			t.cal.NotFoundCount = res.Streak.Count
		default:
			return s
		}
	}
	if t.cal == nil || t.cal.Status != store.StatusActive {
		return s
	}
	if out.Created || out.PollModeSet || r.needsReconcile(*t.cal) {
		if err := r.askReconcile(ctx, t.key); err != nil {
			s.Failed++
			r.failure(ctx, t.key, "publish", err)
		} else {
			s.Reconciles++
			if out.PollOnly {
				s.Polls++
			}
		}
	}
	return s
}

// needsReconcile: not synced for ReconcileAfter (Google drops a few
// notifications), or for PollInterval when it is polled (no channel); dirty
// with an expired lease (a sync crashed); or in a 404 streak (probe it
// again: a success ends the streak, a persistent one ends the calendar).
func (r *Renewer) needsReconcile(c store.Calendar) bool {
	now := r.now()
	if r.ReconcileAfter > 0 && now.Sub(c.LastSyncedAt) >= r.ReconcileAfter {
		return true
	}
	if c.PollMode != "" && r.PollInterval > 0 && now.Sub(lastPolled(c)) >= r.pollEvery() {
		return true
	}
	return (c.Dirty && !c.LeaseUntil.After(now)) || c.NotFoundCount > 0
}

// DefaultPollMinInterval is PollMinInterval's default.
const DefaultPollMinInterval = time.Hour

// pollEvery is how often one poll-only calendar is synced: POLL_INTERVAL,
// but never more often than PollMinInterval.
func (r *Renewer) pollEvery() time.Duration {
	least := r.PollMinInterval
	if least <= 0 {
		least = DefaultPollMinInterval
	}
	return max(r.PollInterval, least)
}

// lastPolled is when a calendar's last sync started or finished, whichever
// is later: a sync that keeps failing (no lastSyncedAt) is not asked again
// at every run either.
func lastPolled(c store.Calendar) time.Time {
	if c.LastSyncStartedAt.After(c.LastSyncedAt) {
		return c.LastSyncStartedAt
	}
	return c.LastSyncedAt
}

// probeDue: a not_found calendar whose last try is NotFoundReprobe old.
func (r *Renewer) probeDue(c store.Calendar) bool {
	if c.Status != store.StatusNotFound || r.NotFoundReprobe <= 0 {
		return false
	}
	last := c.LastProbeAt
	if last.IsZero() {
		last = c.UpdatedAt // marked before probes were recorded
	}
	return r.now().Sub(last) >= r.NotFoundReprobe
}

// probe tries a not_found calendar again (one events.list of one item, with
// its own identity). Found: it is active again, and the caller goes on to
// give it a channel and a sync (true). Not found: lastProbeAt moves on.
func (r *Renewer) probe(ctx context.Context, t task, s *Summary) bool {
	s.Probed++
	svc, err := r.Access.Calendars.Service(ctx, t.cal.Grant())
	if err == nil {
		_, err = svc.Events.List(t.cal.CalendarID).MaxResults(1).Context(ctx).Do()
	}
	res, lerr := r.lifecycle().Report(ctx, lifecycle.Calendar(t.key, *t.cal), lifecycle.OpProbe, err)
	switch {
	case lerr != nil:
		s.Failed++
		r.failure(ctx, t.key, "probe", lerr)
	case res.Effect == lifecycle.EffectReactivate && res.Next == lifecycle.Continue:
		s.Reactivated++
		t.cal.Status, t.cal.NotFoundCount = store.StatusActive, 0
		t.cal.LastSyncedAt = time.Time{} // sync it now
		return true
	case res.Next == lifecycle.RetryLater:
		s.Failed++
		r.failure(ctx, t.key, "probe", err)
	}
	return false
}

// lifecycle records what Google's answers do to calendars and identities.
func (r *Renewer) lifecycle() *lifecycle.Owner { return r.Access.Lifecycle }

func (r *Renewer) askReconcile(ctx context.Context, key string) error {
	if r.Publisher == nil {
		return errors.New("no publisher")
	}
	return Ask(ctx, r.Publisher, key, messages.StateReconcile, r.now())
}

// Ask publishes a sync request (messages.StateReconcile or StateFullResync)
// for a calendar to the notifications topic.
func Ask(ctx context.Context, p Publisher, calendarKey, state string, now time.Time) error {
	data, attrs, err := messages.Request(calendarKey, state, now)
	if err != nil {
		return err
	}
	return p.Publish(ctx, data, attrs, "")
}

func (r *Renewer) failure(ctx context.Context, key, step string, err error) {
	r.log(ctx).ErrorContext(ctx, "renewal failed for a calendar",
		logging.KeyEvent, logging.EventRenewFailure, logging.KeyCalendarKey, key,
		logging.KeyStep, step, logging.KeyReason, calclient.Reason(err), logging.KeyStatus, calclient.HTTPStatus(err), logging.KeyError, err.Error())
}

func (r *Renewer) log(ctx context.Context) *slog.Logger {
	if r.Logger != nil {
		return r.Logger
	}
	return logging.FromContext(ctx)
}

// Poll asks for a sync of every active poll-only calendar (Google will not
// push for it) whose last sync is PollInterval old. RenewChannels runs it
// when called with ?mode=poll, from a Scheduler job on POLL_INTERVAL: the
// hourly run alone would poll them hourly. One query, one request each.
func (r *Renewer) Poll(ctx context.Context) (Summary, error) {
	start := time.Now()
	var sum Summary
	cals, err := r.Store.PolledCalendars(ctx)
	if err != nil {
		return sum, fmt.Errorf("poll: read calendars: %w", err)
	}
	now := r.now()
	for key, c := range cals {
		if c.Status != store.StatusActive {
			continue
		}
		sum.Calendars++
		sum.PollOnly++
		// A little early rather than a whole interval late: the next poll
		// run comes PollInterval from now.
		since := now.Sub(lastPolled(c))
		if since < r.PollInterval*9/10 {
			continue
		}
		if since < r.pollEvery()*9/10 {
			sum.PollsDeferred++ // due by the schedule, held back by the guard
			continue
		}
		if err := r.askReconcile(ctx, key); err != nil {
			sum.Failed++
			r.failure(ctx, key, "publish", err)
			continue
		}
		sum.Polls++
		sum.Reconciles++
	}
	sum.DurationMs = time.Since(start).Milliseconds()
	r.log(ctx).InfoContext(ctx, "poll run done", logging.KeyEvent, logging.EventPollRun, logging.KeyPollOnly, sum.PollOnly,
		logging.KeyPolls, sum.Polls, logging.KeyPollsDeferred, sum.PollsDeferred, logging.KeyFailed, sum.Failed,
		logging.KeyDurationMs, sum.DurationMs)
	return sum, nil
}
