// Package syncer is calsync's sync engine: it turns notifications into
// coalesced incremental syncs of a calendar into the Firestore mirror and
// publishes one change message per changed event. See README.md.
package syncer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"google.golang.org/api/calendar/v3"

	"github.com/calsync/calsync/shared/calclient"
	"github.com/calsync/calsync/shared/lifecycle"
	"github.com/calsync/calsync/shared/logging"
	"github.com/calsync/calsync/shared/messages"
	"github.com/calsync/calsync/shared/pubsubx"
	"github.com/calsync/calsync/shared/store"
)

// Services gives the Calendar API client that reads a calendar with its own
// credential (ADC, delegation or a stored refresh token): calclient.Factory.
type Services interface {
	Service(ctx context.Context, g store.Grant) (*calendar.Service, error)
}

// ServicesFunc adapts a function to Services.
type ServicesFunc func(ctx context.Context, g store.Grant) (*calendar.Service, error)

// Service calls f.
func (f ServicesFunc) Service(ctx context.Context, g store.Grant) (*calendar.Service, error) {
	return f(ctx, g)
}

// Publisher publishes a page of change messages, in order, under one
// ordering key, and returns nil only once Pub/Sub has stored every one
// (pubsubx.Publisher).
type Publisher interface {
	PublishAll(ctx context.Context, orderingKey string, msgs []pubsubx.Message) error
}

// Requester publishes one message and returns once Pub/Sub stored it
// (pubsubx.Publisher).
type Requester interface {
	Publish(ctx context.Context, data []byte, attrs map[string]string, orderingKey string) error
}

// Defaults.
const (
	DefaultPageSize      = 2500 // events.list maxResults maximum
	DefaultLeaseDuration = 60 * time.Second
	DefaultRerunInterval = 1500 * time.Millisecond
	DefaultQuietPeriod   = 300 * time.Millisecond
	DefaultRetryBudget   = 120 * time.Second
	DefaultMaxSession    = 5 * time.Minute
	DefaultFollowUpDelay = 15 * time.Second
	DefaultMaxBudgetWait = time.Minute
	DefaultMaxDefer      = 2 * time.Minute
	DefaultNotFoundRetry = time.Minute
)

// Options configure a Syncer. Store and Services are required.
type Options struct {
	Store    *store.Store
	Services Services
	// Publisher carries the change feed. Nil disables it (benchmarks only).
	Publisher Publisher
	// Requests, if set, publishes calsync's own sync requests to the
	// notifications topic: the continuation of a session that used up
	// MaxSession.
	Requests Requester
	// Lifecycle records what Google's answers do to a calendar (a dead
	// grant, the 404 streak) and logs it (default: an owner on Store that
	// stops no channels, with the default 404 policy).
	Lifecycle *lifecycle.Owner
	Logger    *slog.Logger

	LeaseDuration time.Duration // lease length; the heartbeat renews it every third of it
	RerunInterval time.Duration // pacing of reruns during a burst, from the previous sync's start
	// QuietPeriod ends the wait early: once this process has seen no
	// notification for the calendar for this long (and has seen one since the
	// previous round started), the burst is over and the final round goes.
	QuietPeriod time.Duration
	RetryBudget time.Duration // in-process retries of one operation before giving up
	// MaxSession bounds how long one message keeps a calendar busy (default
	// 5 min, under the function's 540 s timeout): past it, a listing stops at
	// its next checkpoint, or a completed round does not rerun; the lease is
	// let go with the calendar dirty and a continuation request (Requests)
	// makes the next invocation continue.
	MaxSession time.Duration
	// FollowUpDelay: a push whose incremental sync listed nothing gets one
	// more sync this much later (Google does not promise that a change is
	// listed when its push arrives). 0: DefaultFollowUpDelay; negative: off.
	FollowUpDelay time.Duration
	// MaxBudgetWait bounds how long a call waits for the shared call
	// budget; past it the sync is deferred (default 1 min). Waiting in place
	// keeps the order and costs nothing but the invocation; a deferral
	// costs a release, a publish and a new admission.
	MaxBudgetWait time.Duration
	// MaxDefer bounds how far ahead a deferred request is due, and so how
	// long a SyncWorker request waits for a request's NotBefore (default
	// 2 min, well inside the function's timeout).
	MaxDefer time.Duration
	// NotFoundRetry is when the first 404 of a streak is tried again
	// (default 1 min); when 404s make a calendar not_found is Lifecycle's
	// policy.
	NotFoundRetry time.Duration
	// RetryInitial is the first backoff interval (default 200 ms; doubled, ±50% jitter).
	RetryInitial time.Duration
	PageSize     int64 // events.list maxResults (default 2500)

	// Instance names this process in lease owners ("instance/uuid"), so an
	// operator (or a test) can tell which instance holds a calendar
	// (default: "p" + pid + "-" + a random suffix).
	Instance string

	Now func() time.Time
	// NoDiffs leaves changedFields and previous out of updated change
	// messages. For benchmarks only, to measure what the diffs cost.
	NoDiffs bool
	// OnSync, if set, sees every completed round (tests and benchmarks).
	OnSync func(Report)
	// FullResyncCooldown is a cost guard: a full resync asked for within
	// this long of the calendar's last full sync is coalesced into an
	// incremental round (a full_resync request: reconcile, operator). A
	// 410 always gets its resync: the token is dead, and a deferred resync
	// left the mirror stale for the whole cooldown. 0: none (the SyncWorker's FULL_RESYNC_COOLDOWN is 10 min).
	FullResyncCooldown time.Duration
}

// Report describes one completed sync round.
type Report struct {
	CalendarKey string
	Full        bool
	StartedAt   time.Time
	CompletedAt time.Time
	Pages       int
	Listed      int
	Written     int
	Deleted     int
	Unchanged   int
	Stale       int // listed versions older than the mirror's: not written, not announced
	Problems    int // events stored only in part
	Changes     int
	Invocations int // invocations the round took (>1: continued from checkpoints)
	// Lag is completion minus the oldest covered notification's receivedAt (0: unknown).
	Lag         time.Duration
	RerunReason string
}

// Stats are the Syncer's counters since it was made.
type Stats struct {
	Rounds      int64 // completed sync rounds
	ListCalls   int64 // events.list calls
	EventWrites int64 // event documents set
	EventDels   int64 // event documents deleted
	Changes     int64 // change messages published
}

// Syncer handles notifications. Safe for concurrent use: every call of
// HandleNotification may run in parallel (Pub/Sub push does that).
type Syncer struct {
	o          Options
	stats      struct{ rounds, lists, writes, dels, changes atomic.Int64 }
	seen       sync.Map // calendar key → *atomic.Int64: unix nanos of the last notification this process handled
	localDirty sync.Map // calendar key → *localDirty: the sessions this process runs
}

// New returns a Syncer, filling defaults.
func New(o Options) *Syncer {
	if o.LeaseDuration <= 0 {
		o.LeaseDuration = DefaultLeaseDuration
	}
	if o.RerunInterval <= 0 {
		o.RerunInterval = DefaultRerunInterval
	}
	if o.QuietPeriod <= 0 {
		o.QuietPeriod = DefaultQuietPeriod
	}
	if o.RetryBudget <= 0 {
		o.RetryBudget = DefaultRetryBudget
	}
	if o.MaxSession <= 0 {
		o.MaxSession = DefaultMaxSession
	}
	if o.RetryInitial <= 0 {
		o.RetryInitial = 200 * time.Millisecond
	}
	if o.FollowUpDelay == 0 {
		o.FollowUpDelay = DefaultFollowUpDelay
	}
	if o.MaxBudgetWait <= 0 {
		o.MaxBudgetWait = DefaultMaxBudgetWait
	}
	if o.MaxDefer <= 0 {
		o.MaxDefer = DefaultMaxDefer
	}
	if o.NotFoundRetry <= 0 {
		o.NotFoundRetry = DefaultNotFoundRetry
	}
	if o.PageSize <= 0 || o.PageSize > DefaultPageSize {
		o.PageSize = DefaultPageSize
	}
	if o.Logger == nil {
		o.Logger = logging.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Instance == "" {
		o.Instance = fmt.Sprintf("p%d-%s", os.Getpid(), uuid.NewString()[:6])
	}
	if o.Lifecycle == nil {
		o.Lifecycle = &lifecycle.Owner{Store: o.Store, Logger: o.Logger}
	}
	return &Syncer{o: o}
}

// Stats returns the counters.
func (s *Syncer) Stats() Stats {
	return Stats{Rounds: s.stats.rounds.Load(), ListCalls: s.stats.lists.Load(),
		EventWrites: s.stats.writes.Load(), EventDels: s.stats.dels.Load(), Changes: s.stats.changes.Load()}
}

func (s *Syncer) now() time.Time { return s.o.Now().UTC() }

// HandleNotification processes one notification. A nil error means
// "acknowledge": done, covered by another sync, or permanently impossible
// (logged). An error means "redeliver": a transient failure outlasted the
// retry budget, or quota is exhausted.
func (s *Syncer) HandleNotification(ctx context.Context, n messages.Notification) error {
	if n.ResourceState == messages.StatePurge {
		return s.purge(ctx, n) // purge.go
	}
	log := s.o.Logger.With(logging.KeyCalendarKey, n.CalendarKey)
	if d := n.NotBefore.Sub(s.now()); d > 0 {
		// A delayed request (a deferral, a follow-up): Pub/Sub delivered it
		// at once, so wait here, holding no lease. Bounded: what is due
		// later than MaxDefer is admitted early (at worst one more deferral).
		log.Debug("delayed request; waiting for its time", logging.KeyRetryInMs, d.Milliseconds())
		t := time.NewTimer(min(d, s.o.MaxDefer))
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return ctx.Err() // redelivered; it waits again, for less
		}
	}
	// Calls wait for the shared call budget at most this long: past it the
	// sync is deferred rather than hold a lease and an instance.
	ctx = calclient.WithMaxWait(context.WithValue(ctx, sessionKey{}, n), s.o.MaxBudgetWait)
	s.markSeen(n.CalendarKey)
	lease := store.Lease{Owner: s.o.Instance + "/" + uuid.NewString(), Duration: s.o.LeaseDuration, Now: s.o.Now}
	req := requestOf(n)
	h := s.localDirtyOf(n.CalendarKey)
	dirty, gen := h.check()
	if dirty && !req.FullResync {
		// This process holds the lease and the dirty flag is set: the next
		// round covers this notification. No Firestore call.
		return nil
	}
	adm, err := s.admit(ctx, n.CalendarKey, req, lease)
	if err != nil {
		log.Error("notification not admitted; Pub/Sub will redeliver", logging.KeyEvent, logging.EventSyncError,
			logging.KeyResourceState, n.ResourceState, logging.KeyError, err.Error())
		return err
	}
	switch adm.Outcome {
	case store.OutcomeSync:
	case store.OutcomeMarkedDirty, store.OutcomeAlreadyDirty:
		h.noteDirty(gen)
		log.Debug("notification coalesced", logging.KeyResourceState, n.ResourceState, logging.KeyReason, string(adm.Outcome))
		return nil
	case store.OutcomeUnknown:
		// The Webhook verified the channel token, so the key is ours: a
		// calendar document is missing that should not be.
		log.Error("notification for a calendar that is not registered; acknowledged", logging.KeyEvent, logging.EventInvalidMessage,
			logging.KeyResourceState, n.ResourceState, logging.KeyReason, messages.ReasonUnknownCalendar)
		return nil
	case store.OutcomeRetryLater:
		log.Info("redelivery of the message whose sync holds the calendar, still held after waiting; Pub/Sub will retry it",
			logging.KeyResourceState, n.ResourceState, logging.KeyReason, string(adm.Outcome))
		return ErrRetryLater
	case store.OutcomeDuplicate:
		// Counted by a log-based metric: a steady rate is someone replaying.
		log.Info("push already admitted for this calendar (a replay or a duplicate delivery); acknowledged", logging.KeyEvent, logging.EventNotificationDuplicate,
			logging.KeyChannelID, n.ChannelID, logging.KeyMessageNumber, n.MessageNumber, logging.KeyReason, string(adm.Outcome))
		return nil
	case store.OutcomeInactive:
		log.Info("notification for an inactive calendar; acknowledged", logging.KeyResourceState, n.ResourceState,
			logging.KeyReason, adm.Calendar.Status)
		return nil
	default:
		log.Debug("notification coalesced", logging.KeyResourceState, n.ResourceState, logging.KeyReason, string(adm.Outcome))
		return nil
	}
	log = log.With(logging.KeyCalendarID, adm.Calendar.CalendarID)
	return s.syncUnderLease(ctx, log, n, adm.Calendar, newHolding(n.CalendarKey, adm.Lease), req.FullResync)
}

// requestOf is what the store's lease protocol needs of a notification.
func requestOf(n messages.Notification) store.Request {
	return store.Request{
		ReceivedAt:  n.ReceivedAt,
		FullResync:  n.ResourceState == messages.StateFullResync,
		InitialOnly: n.ResourceState == messages.StateSync,
		Purge:       n.ResourceState == messages.StatePurge,
		Operator:    n.Operator,
		MessageID:   n.MessageID,
		// Replays and duplicate deliveries of a push are recognised by these.
		ChannelID:     n.ChannelID,
		MessageNumber: n.MessageNumber,
	}
}

// admit applies the coalescing rule. The redelivery of the very message
// whose session holds the lease (store.OutcomeRetryLater: its holder died, or
// is paused, or still at it) waits here, asking again every second, until the
// holder is done (covered) or its lease ran out (taken over), for at most
// one and a half leases: bouncing it to Pub/Sub instead would spend its
// delivery attempts at Pub/Sub's backoff, and a short backoff could
// dead-letter it before the lease ends.
func (s *Syncer) admit(ctx context.Context, key string, req store.Request, lease store.Lease) (store.Admission, error) {
	giveUp := s.o.Now().Add(s.o.LeaseDuration * 3 / 2)
	for {
		adm, err := retry(ctx, s, func() (store.Admission, error) { return s.o.Store.Admit(ctx, key, req, lease, Coalesce) })
		if err != nil || adm.Outcome != store.OutcomeRetryLater || !s.o.Now().Before(giveUp) {
			return adm, err
		}
		t := time.NewTimer(time.Second)
		select {
		case <-ctx.Done():
			t.Stop()
			return adm, nil // answered retry-later
		case <-t.C:
		}
	}
}

// syncUnderLease runs rounds while the calendar keeps getting dirty, then
// lets the lease go. A heartbeat extends the lease; losing it cancels the work.
func (s *Syncer) syncUnderLease(ctx context.Context, log *slog.Logger, n messages.Notification, cal store.Calendar, hl *sessionLease, full bool) error {
	key := n.CalendarKey
	lease := hl.lease
	h := &localDirty{}
	s.localDirty.Store(key, h)
	defer s.localDirty.CompareAndDelete(key, h)
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	hbDone := make(chan struct{})
	go s.keepLease(ctx, cancel, log, hl, hbDone)
	defer func() { cancel(nil); <-hbDone }()

	prevStart := cal.LastSyncStartedAt
	sessionStart := s.now()
	oldest := n.ReceivedAt
	reason := "notification"
	if full {
		reason = messages.StateFullResync
	}
	for {
		// Pacing: during a burst a round starts RerunInterval after the
		// previous one started; the first notification of a quiet calendar
		// goes at once, and the final round as soon as the burst is over.
		if err := s.pace(ctx, key, prevStart); err != nil {
			return s.fail(ctx, log, key, cal, hl, err)
		}
		h.mu.Lock() // held across the transaction that clears the flag
		h.gen++
		h.dirty = false
		cooldown := s.o.FullResyncCooldown
		if n.Operator {
			cooldown = 0 // an operator asked (calsync resync --full)
		}
		rd, err := retry(ctx, s, func() (store.Round, error) {
			return s.o.Store.StartRoundCooled(ctx, key, lease, full, cooldown)
		})
		h.mu.Unlock()
		if err != nil {
			return s.fail(ctx, log, key, cal, hl, err)
		}
		if rd.FullCoalesced {
			log.Warn("full resync asked for within the cooldown of the last full sync; incremental sync instead",
				logging.KeyEvent, logging.EventFullResyncCooldown, logging.KeyOutcome, "coalesced",
				logging.KeyLastFullSyncAt, rd.Calendar.LastFullSyncAt, logging.KeyCooldownMs, s.o.FullResyncCooldown.Milliseconds())
		}
		cal = rd.Calendar
		if !rd.DirtySince.IsZero() && (oldest.IsZero() || rd.DirtySince.Before(oldest)) {
			oldest = rd.DirtySince
		}
		if rd.Full && reason == "dirty" && rd.Calendar.FullResyncRequested {
			reason = messages.StateFullResync
		}
		res, err := s.round(ctx, log, hl, rd, sessionStart.Add(s.o.MaxSession))
		if errors.Is(err, errStopped) {
			// Out of time mid-round: the round stands at a checkpoint.
			return s.handOver(ctx, log, key, h, hl, true, sessionStart)
		}
		if err == nil {
			var again bool
			handOver := s.now().Sub(sessionStart) >= s.o.MaxSession
			if handOver {
				s.forget(key, h)
			}
			again, err = retry(ctx, s, func() (bool, error) {
				return s.o.Store.Complete(ctx, key, lease, res.completion(rd, handOver))
			})
			if err == nil {
				s.report(log, key, rd, res, oldest, reason)
				s.announceInitial(ctx, key, rd, res)
				switch {
				case !again:
					return s.followUp(ctx, log, key, n, res)
				case handOver:
					return s.handOver(ctx, log, key, h, hl, false, sessionStart)
				}
				prevStart, oldest, reason, full = rd.StartedAt, time.Time{}, "dirty", false
				continue
			}
		}
		if c := context.Cause(ctx); c != nil && errors.Is(c, store.ErrLeaseLost) {
			err = c
		}
		return s.fail(ctx, log, key, cal, hl, err)
	}
}

// forget ends this process's in-process acks on the session's behalf: it
// will not rerun for them.
func (s *Syncer) forget(key string, h *localDirty) {
	h.mu.Lock()
	h.gen++
	h.dirty = false
	h.mu.Unlock()
	s.localDirty.CompareAndDelete(key, h)
}

// handOver ends a session that used up MaxSession while the calendar still
// needs work (a round stopped at a checkpoint, or dirty after a completed
// round): the lease is let go with the calendar dirty, and a continuation
// request on the notifications topic starts the next invocation, which takes
// over (a dirty calendar with a free lease is synced even by a covered
// message). Without a request publisher, or if publishing fails, this
// message is redelivered instead.
func (s *Syncer) handOver(ctx context.Context, log *slog.Logger, key string, h *localDirty, hl *sessionLease, midRound bool, sessionStart time.Time) error {
	lease := hl.lease
	s.forget(key, h)
	if midRound {
		if err := s.try(ctx, func() error { return s.o.Store.Release(ctx, key, lease, true) }); err != nil {
			return s.fail(ctx, log, key, store.Calendar{}, hl, err)
		}
	}
	err := errors.New("no request publisher")
	if s.o.Requests != nil {
		err = s.askSync(ctx, key)
	}
	if err != nil {
		// Redeliver this message instead: it finds the calendar dirty and
		// its lease free, and takes over. Acknowledged, the dirty calendar
		// would wait for a notification that may never come.
		log.Error("could not ask for the continuation of a sync; Pub/Sub will redeliver", logging.KeyEvent, logging.EventSyncError,
			logging.KeyReason, "continuation", logging.KeyError, err.Error())
		return fmt.Errorf("ask for the continuation of %s: %w", key, err)
	}
	log.Info("sync session reached MaxSession; lease let go with the calendar dirty, the next invocation continues",
		logging.KeyReason, "max_session", logging.KeyDurationMs, s.now().Sub(sessionStart).Milliseconds(),
		logging.KeyMidRound, midRound, logging.KeyContinuationAsked, true)
	return nil
}

// followUp asks for one more sync FollowUpDelay from now when a push's
// incremental sync listed nothing: Google does not promise that a change is
// listed by the time its push arrives. The session is over and its lease let
// go; the request waits in the next invocation (see HandleNotification),
// costing one listing. A follow-up never asks for another.
func (s *Syncer) followUp(ctx context.Context, log *slog.Logger, key string, n messages.Notification, res *result) error {
	push := n.ResourceState == messages.StateExists || n.ResourceState == messages.StateNotExists
	if s.o.Requests == nil || s.o.FollowUpDelay < 0 || !push || n.FollowUp || res.full || res.listed > 0 {
		return nil
	}
	at := s.now().Add(s.o.FollowUpDelay)
	if err := s.ask(ctx, messages.Delayed(key, at, true, 0)); err != nil {
		// Acknowledged, the change Google pushed may never be listed until
		// the reconcile. The completed round covers this message, so its
		// redelivery would be dropped: the calendar is left dirty, which
		// makes the redelivery sync.
		if derr := s.o.Store.MarkDirty(ctx, key, n.ReceivedAt); derr != nil {
			err = errors.Join(err, derr)
		}
		log.Warn("could not ask for the follow-up of an empty push sync; the calendar is left dirty and Pub/Sub will redeliver",
			logging.KeyEvent, logging.EventFollowUp, logging.KeyError, err.Error())
		return fmt.Errorf("follow-up of %s: %w", key, err)
	}
	log.Info("push sync listed nothing; one follow-up sync asked for", logging.KeyEvent, logging.EventFollowUp,
		logging.KeyChannelID, n.ChannelID, logging.KeyRetryInMs, s.o.FollowUpDelay.Milliseconds())
	return nil
}

// announceInitial publishes a calendar's first completed full sync (its
// change messages were all origin "initial"): a product may start its
// "new event" automations for the calendar from here.
func (s *Syncer) announceInitial(ctx context.Context, key string, rd store.Round, res *result) {
	if !res.full || !rd.Calendar.LastFullSyncAt.IsZero() {
		return
	}
	events := int(res.count)
	s.o.Lifecycle.Announce(ctx, messages.Lifecycle{Type: messages.LifecycleInitialSyncComplete, Attribution: rd.Calendar.Attribution(),
		CalendarKey: key, CalendarID: rd.Calendar.CalendarID, Status: rd.Calendar.Status, Events: &events})
}

func (s *Syncer) report(log *slog.Logger, key string, rd store.Round, res *result, oldest time.Time, reason string) {
	done := s.now()
	s.stats.rounds.Add(1)
	kind := "incremental"
	if res.full {
		kind = "full"
	}
	r := Report{CalendarKey: key, Full: res.full, StartedAt: rd.StartedAt, CompletedAt: done, Pages: res.pages,
		Listed: res.listed, Written: res.written, Deleted: res.deleted, Unchanged: res.unchanged, Stale: res.stale, Problems: res.problems, Changes: res.changes, Invocations: res.invocations,
		RerunReason: reason}
	attrs := []any{logging.KeyEvent, logging.EventSync, logging.KeySyncKind, kind, logging.KeyPages, res.pages,
		logging.KeyListed, res.listed, logging.KeyWritten, res.written, logging.KeyDeleted, res.deleted,
		logging.KeyUnchanged, res.unchanged, logging.KeyDurationMs, done.Sub(rd.StartedAt).Milliseconds(),
		logging.KeyRerunReason, reason}
	if res.invocations > 1 {
		attrs = append(attrs, logging.KeyResumed, true, logging.KeyInvocations, res.invocations)
	}
	if res.stale > 0 {
		attrs = append(attrs, logging.KeyStale, res.stale)
	}
	if res.problems > 0 {
		attrs = append(attrs, logging.KeyProblems, res.problems)
	}
	if !oldest.IsZero() {
		r.Lag = done.Sub(oldest)
		attrs = append(attrs, logging.KeyLagMs, r.Lag.Milliseconds())
	}
	log.Info("sync done", attrs...)
	if s.o.OnSync != nil {
		s.o.OnSync(r)
	}
}
