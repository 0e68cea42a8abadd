// Package enroll is calsync's enrollment engine: for an identity (a
// Workspace user read by domain-wide delegation, or a user's OAuth grant) it
// lists the calendarList, registers and watches every calendar the filters
// keep, unenrolls the ones that left, and watches the list itself, so a
// calendar added to or removed from the list is enrolled or unenrolled when
// the list's push arrives; for a Workspace domain it does the same for every
// active user of the directory and, on request, every room. The CLI
// (calsync enroll/unenroll), the SyncWorker (calendarList pushes and control
// messages) and RenewChannels (the daily directory diff) all use it.
// See README.md.
package enroll

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"time"

	"google.golang.org/api/calendar/v3"

	"github.com/calsync/calsync/shared/calclient"
	"github.com/calsync/calsync/shared/channels"
	"github.com/calsync/calsync/shared/lifecycle"
	"github.com/calsync/calsync/shared/logging"
	"github.com/calsync/calsync/shared/messages"
	"github.com/calsync/calsync/shared/store"
	"github.com/calsync/calsync/shared/tenant"
)

// Services gives the Calendar client of an identity or calendar
// (calclient.Factory).
type Services interface {
	Service(ctx context.Context, g store.Grant) (*calendar.Service, error)
}

// Publisher stores one message on the notifications topic (pubsubx.Publisher).
type Publisher interface {
	Publish(ctx context.Context, data []byte, attrs map[string]string, orderingKey string) error
}

// Enroller enrolls identities and domains. Store, Calendars and Requests
// are required; without Channels (no channel-token keys) calendars are
// registered and synced and RenewChannels gives them their channels.
type Enroller struct {
	Store     *store.Store
	Calendars Services
	// Directory builds Admin SDK clients for domain enrollment (nil: none).
	Directory Directory
	// Channels watches calendars and lists (nil: left to RenewChannels).
	Channels *channels.Manager
	// Requests publishes first syncs, purges and list reconciles on the
	// notifications topic.
	Requests Publisher
	// Lifecycle records what Google's answers (and unenrollments) do to
	// identities, domains and calendars (default: an owner on Store that
	// stops no channels).
	Lifecycle *lifecycle.Owner
	// RenewBefore is the channels' renewal window (as RenewChannels').
	RenewBefore time.Duration
	// Concurrency bounds the identities a directory diff enrolls at once
	// (default 8).
	Concurrency int
	// MaxUnenrollShare bounds the share of a domain's enrolled identities
	// one directory diff may unenroll (default DefaultMaxUnenrollShare): a
	// listing that succeeds but covers less (an admin's rights narrowed to
	// one organisational unit) must not unenroll everyone else.
	MaxUnenrollShare float64
	// MaxCalendarsPerIdentity caps the calendars one identity's list
	// enrolls (default DefaultMaxCalendarsPerIdentity): an OAuth end user
	// controls that list, and each calendar costs channels and syncs.
	MaxCalendarsPerIdentity int
	// Revoker revokes a disconnected user's grant at Google
	// (calclient.Factory; nil: disconnect fails and is retried).
	Revoker interface {
		RevokeGrant(ctx context.Context, refreshToken string) error
	}
	// ControlMaxAge: control messages issued longer ago are refused
	// (default DefaultControlMaxAge).
	ControlMaxAge time.Duration
	Logger        *slog.Logger
	Now           func() time.Time
}

func (e *Enroller) now() time.Time {
	if e.Now != nil {
		return e.Now().UTC()
	}
	return time.Now().UTC()
}

func (e *Enroller) lifecycle() *lifecycle.Owner {
	if e.Lifecycle != nil {
		return e.Lifecycle
	}
	return &lifecycle.Owner{Store: e.Store, Logger: e.Logger}
}

func (e *Enroller) log(ctx context.Context) *slog.Logger {
	if e.Logger != nil {
		return e.Logger
	}
	return logging.FromContext(ctx)
}

// IdentitySpec is an identity to enroll and how.
type IdentitySpec struct {
	AuthMode     string // store.AuthDelegation or store.AuthOAuth
	Subject      string // delegation: the Workspace user
	CredentialID string // oauth: the stored grant
	Email        string // oauth: the grant's user, for operators
	Filters      messages.Filters
	// DeleteMirrorOnRemove: a calendar leaving the list loses its mirror.
	DeleteMirrorOnRemove bool
	Domain               string // set by a domain's directory diff
	// Tenant enrolling it ("": the default tenant); its calendars are the
	// tenant's. ExternalID is the product's own id for the user.
	Tenant     string
	ExternalID string
}

func (sp IdentitySpec) identity() store.Identity {
	return store.Identity{AuthMode: sp.AuthMode, Subject: sp.Subject, CredentialID: sp.CredentialID, Email: sp.Email,
		Filters: sp.Filters, DeleteMirrorOnRemove: sp.DeleteMirrorOnRemove, Domain: sp.Domain, Status: store.StatusActive,
		Tenant: tenant.Stored(sp.Tenant), ExternalID: sp.ExternalID}
}

// Key is the spec's identity key.
func (sp IdentitySpec) Key() string {
	return sp.identity().Grant().IdentityKey()
}

// Result is what one enrollment or discovery did.
type Result struct {
	IdentityKey string `json:"identityKey"`
	Listed      int    `json:"listed"`     // entries of the calendar list
	Kept        int    `json:"kept"`       // of them the filters keep
	Enrolled    int    `json:"enrolled"`   // calendars registered or re-activated
	Unenrolled  int    `json:"unenrolled"` // calendars that left the list
	Shared      int    `json:"shared"`     // kept, but enrolled by another identity or an operator
	Calendars   int    `json:"calendars"`  // calendars enrolled through the identity now
	Watched     int    `json:"watched"`    // channels made (calendars and the list)
	Failed      int    `json:"failed"`     // calendars whose channel or first sync failed (logged)
	Stale       bool   `json:"stale"`      // a newer listing was applied first: nothing changed
	// HandedOver: calendars read with another grant now (a better
	// reader, or the reader lost them): full resyncs asked for.
	HandedOver int `json:"handedOver,omitempty"`
	// FreeBusyOnly: calendars whose best reader sees free/busy only: not
	// synced (status free_busy_only).
	FreeBusyOnly int `json:"freeBusyOnly,omitempty"`
	// CapLeftOut: calendars the filters keep but MaxCalendarsPerIdentity
	// left out (logged as calendar_cap_reached).
	CapLeftOut int `json:"capLeftOut,omitempty"`
}

// DefaultMaxCalendarsPerIdentity is MaxCalendarsPerIdentity's default.
const DefaultMaxCalendarsPerIdentity = 500

// capped applies the cap on calendars per identity to a listing's
// candidates: the calendars the identity follows already come first (a
// listing never drops what it follows for a newcomer), then the rest in the
// list's order, up to the cap; those left out are not enrolled. A cap
// lowered below what an identity follows unenrolls nothing: the listing
// still counts them as in the list.
func (e *Enroller) capped(ctx context.Context, key string, cands []store.Calendar, mine map[string]store.Calendar, res *Result) []store.Calendar {
	limit := e.MaxCalendarsPerIdentity
	if limit <= 0 {
		limit = DefaultMaxCalendarsPerIdentity
	}
	if len(cands) <= limit {
		return cands
	}
	following := func(c store.Calendar) bool {
		m, ok := mine[c.Key()]
		return ok && m.Status != store.StatusUnwatched
	}
	out := make([]store.Calendar, 0, limit)
	for _, c := range cands {
		if following(c) && len(out) < limit {
			out = append(out, c)
		}
	}
	for _, c := range cands {
		if !following(c) && len(out) < limit {
			out = append(out, c)
		}
	}
	res.CapLeftOut = len(cands) - len(out)
	e.log(ctx).WarnContext(ctx, "calendar list longer than the cap on calendars per identity; the rest not enrolled",
		logging.KeyEvent, logging.EventCalendarCapReached, logging.KeyIdentityKey, key, "cap", limit,
		logging.KeyListed, len(cands), "leftOut", res.CapLeftOut)
	return out
}

// ErrNotAuthorized: the identity's grant does not let calsync read its
// calendar list (invalid_grant, unauthorized_client, 401, 403).
var ErrNotAuthorized = errors.New("enroll: the identity's grant does not allow reading its calendar list")

// EnrollIdentity enrolls an identity: its calendar list is read first (an
// identity whose grant does not work is refused, ErrNotAuthorized, and
// nothing is written), then the identity is recorded and the listing applied
// (Discover).
func (e *Enroller) EnrollIdentity(ctx context.Context, sp IdentitySpec) (Result, error) {
	id := sp.identity()
	key := sp.Key()
	start := e.now()
	entries, calls, err := e.listCalendars(ctx, id)
	if err != nil {
		if lifecycle.Classify(err).IsAuth() {
			return Result{IdentityKey: key}, fmt.Errorf("%w (%s): %v", ErrNotAuthorized, id.Grant().Key(), err)
		}
		return Result{IdentityKey: key}, err
	}
	_, previous, err := lifecycle.EnrollIdentity(ctx, e.Store, id)
	if err != nil {
		return Result{IdentityKey: key}, err
	}
	id, err = e.Store.GetIdentity(ctx, key)
	if err != nil {
		return Result{IdentityKey: key}, err
	}
	if previous != store.StatusActive && id.Status == store.StatusActive {
		e.lifecycle().Announce(ctx, messages.Lifecycle{Type: messages.LifecycleIdentityEnrolled, Attribution: id.Attribution(key), Status: id.Status})
	}
	return e.apply(ctx, key, id, start, entries, calls)
}

// Discover reads an identity's calendar list again and applies it:
// calendars the filters keep are enrolled (registered, watched, a first full
// sync asked for), the ones this identity enrolled and the list lost are
// unenrolled (channels stopped, mirror kept or purged), and the list's own
// channel is made if missing. A listing that began before the last applied
// one changes nothing (several instances may discover at once). A dead grant
// marks the identity auth_revoked.
func (e *Enroller) Discover(ctx context.Context, key string) (Result, error) {
	id, err := e.Store.GetIdentity(ctx, key)
	if err != nil {
		return Result{IdentityKey: key}, err
	}
	if id.Status != store.StatusActive {
		return Result{IdentityKey: key}, e.ensureList(ctx, key, id)
	}
	start := e.now()
	entries, calls, err := e.listCalendars(ctx, id)
	if err != nil {
		if lifecycle.Classify(err).IsAuth() {
			return Result{IdentityKey: key}, e.revoked(ctx, key, id, err)
		}
		return Result{IdentityKey: key}, err
	}
	return e.apply(ctx, key, id, start, entries, calls)
}

// listCalendars reads every page of the identity's calendar list
// (minAccessRole from the filters, hidden entries too), returning the
// entries and the number of calls.
func (e *Enroller) listCalendars(ctx context.Context, id store.Identity) ([]*calendar.CalendarListEntry, int, error) {
	svc, err := e.Calendars.Service(ctx, id.Grant())
	if err != nil {
		return nil, 0, err
	}
	var out []*calendar.CalendarListEntry
	calls := 0
	pt := ""
	for {
		call := svc.CalendarList.List().ShowHidden(true).MaxResults(250).MinAccessRole(minRole(id.Filters)).Context(ctx)
		if pt != "" {
			call.PageToken(pt)
		}
		var page *calendar.CalendarList
		err := retryCalendar(ctx, func() error {
			calls++
			var err error
			page, err = call.Do()
			return err
		})
		if err != nil {
			return nil, calls, fmt.Errorf("calendarList.list as %s: %w", id.Grant().Key(), err)
		}
		out = append(out, page.Items...)
		if pt = page.NextPageToken; pt == "" {
			return out, calls, nil
		}
	}
}

// apply applies one listing begun at start.
func (e *Enroller) apply(ctx context.Context, key string, id store.Identity, start time.Time, entries []*calendar.CalendarListEntry, calls int) (Result, error) {
	res := Result{IdentityKey: key, Listed: len(entries)}
	keep := map[string]bool{}
	var enroll []store.Calendar
	for _, en := range entries {
		if en.Deleted || !keeps(id.Filters, en) {
			continue
		}
		c := store.Calendar{CalendarID: en.Id, Tenant: id.Tenant, AuthMode: id.AuthMode, Subject: id.Subject, CredentialID: id.CredentialID,
			AccessRole: en.AccessRole, ExternalID: id.ExternalID}
		keep[c.Key()] = true
		enroll = append(enroll, c)
	}
	res.Kept = len(enroll)
	mine, err := e.Store.CalendarsEnrolledBy(ctx, key)
	if err != nil {
		return res, err
	}
	read, err := e.Store.CalendarsReadBy(ctx, key)
	if err != nil {
		return res, err
	}
	enroll = e.capped(ctx, key, enroll, mine, &res)
	var unenroll []string
	for k, c := range mine {
		if !keep[k] && c.Status != store.StatusUnwatched {
			unenroll = append(unenroll, k)
		}
	}
	for k := range read {
		if _, counted := mine[k]; !counted && !keep[k] {
			unenroll = append(unenroll, k) // another reads it: this one no longer can
		}
	}
	applied, err := lifecycle.ApplyList(ctx, e.Store, key, store.Listing{StartedAt: start, Enroll: enroll, Unenroll: unenroll,
		UnenrollReason: "left the calendar list of " + id.Grant().Key(), LeftOut: res.CapLeftOut})
	if err != nil {
		return res, err
	}
	if applied.Stale {
		res.Stale = true
		e.log(ctx).InfoContext(ctx, "calendar list read before the last one applied; nothing changed",
			logging.KeyEvent, logging.EventDiscovery, logging.KeyIdentityKey, key, logging.KeyReason, "stale")
		return res, nil
	}
	res.Enrolled, res.Unenrolled, res.Shared, res.Calendars = len(applied.Enrolled), len(applied.Unenrolled), applied.Shared, applied.Calendars
	res.HandedOver, res.FreeBusyOnly = len(applied.HandedOver), len(applied.FreeBusyOnly)
	e.announceListing(ctx, applied)
	e.follow(ctx, applied.Enrolled, &res)
	e.stopUnwatched(ctx, applied.Unenrolled, id.DeleteMirrorOnRemove, &res)
	e.handOver(ctx, applied.HandedOver, &res)
	e.freeBusyOnly(ctx, applied.FreeBusyOnly, &res)
	if err := e.ensureList(ctx, key, id); err != nil {
		res.Failed++
		e.failure(ctx, key, "", "list_channel", err)
	} else if e.Channels != nil {
		res.Watched++ // counted as ensured; a live channel is kept
	}
	e.log(ctx).InfoContext(ctx, "calendar list applied", logging.KeyEvent, logging.EventDiscovery, logging.KeyIdentityKey, key,
		logging.KeyAuthMode, id.AuthMode, logging.KeyListed, res.Listed, logging.KeyEnrolled, res.Enrolled,
		logging.KeyUnenrolled, res.Unenrolled, logging.KeyShared, res.Shared, logging.KeyCalendars, res.Calendars,
		"handedOver", res.HandedOver, "freeBusyOnly", res.FreeBusyOnly,
		logging.KeyListCalls, calls, logging.KeyFailed, res.Failed, logging.KeyDurationMs, e.now().Sub(start).Milliseconds())
	return res, nil
}

// announceListing publishes the calendars a listing added, removed or
// found readable as free/busy only (its transaction decided them).
func (e *Enroller) announceListing(ctx context.Context, a store.Applied) {
	for _, c := range a.FreeBusyOnly {
		e.lifecycle().Announce(ctx, messages.Lifecycle{Type: messages.LifecycleCalendarFreeBusy, Attribution: c.Attribution(),
			CalendarKey: c.Key(), CalendarID: c.CalendarID, Status: store.StatusFreeBusyOnly})
	}
	for _, c := range a.Enrolled {
		e.lifecycle().Announce(ctx, messages.Lifecycle{Type: messages.LifecycleCalendarAdded, Attribution: c.Attribution(),
			CalendarKey: c.Key(), CalendarID: c.CalendarID, Status: c.Status})
	}
	for _, c := range a.Unenrolled {
		e.lifecycle().Announce(ctx, messages.Lifecycle{Type: messages.LifecycleCalendarRemoved, Attribution: c.Attribution(),
			CalendarKey: c.Key(), CalendarID: c.CalendarID, Status: store.StatusUnwatched, Detail: "left the identity's calendar list"})
	}
}

// follow gives newly enrolled calendars a channel and asks for their first
// (full) sync. A calendar the identity cannot watch (404) is set not_found.
func (e *Enroller) follow(ctx context.Context, cals []store.Calendar, res *Result) {
	for _, c := range cals {
		key := c.Key()
		if e.Channels != nil {
			chans, err := e.Store.ChannelsOfCalendar(ctx, key)
			if err == nil {
				var out channels.Outcome
				out, err = e.Channels.Ensure(ctx, key, &c, chans, e.RenewBefore)
				if out.Created {
					res.Watched++
				}
			}
			if err != nil && !errors.Is(err, channels.ErrBusy) {
				res.Failed++
				lres, lerr := e.lifecycle().Report(ctx, lifecycle.Calendar(key, c), lifecycle.OpEventsWatch, err)
				if lerr != nil {
					e.failure(ctx, "", key, "status", lerr)
				}
				switch lres.Next {
				case lifecycle.RetryLater:
					// RenewChannels repairs the channel; sync anyway.
					e.failure(ctx, "", key, "watch", err)
				case lifecycle.Probe, lifecycle.Defer:
					// A 404 that is not yet proof (the calendar was shared a
					// moment ago), or a delegation Google does not have yet:
					// the first sync tries it again (and defers).
				default:
					continue // a dead grant, a calendar gone for good
				}
			}
		}
		// A calendar followed again with its sync token (its grant was
		// reconnected, its user came back) catches up incrementally; Google
		// answers 410 if the token is too old, and the sync goes full then.
		state := messages.StateFullResync
		if c.SyncToken != "" {
			state = messages.StateReconcile
		}
		if err := e.ask(ctx, key, state); err != nil {
			res.Failed++
			e.failure(ctx, "", key, "first_sync", err)
		}
	}
}

// handOver moves calendars to the grant that reads them now: the former
// reader's channels stopped (only their creator may stop them), a channel
// made with the new one, and a full resync (the new reader may see other
// details: private events; its mirror is what it sees).
func (e *Enroller) handOver(ctx context.Context, hs []store.Handover, res *Result) {
	for _, h := range hs {
		key := h.To.Key()
		e.log(ctx).InfoContext(ctx, "calendar read with another grant; full resync", logging.KeyEvent, logging.EventReaderChanged,
			logging.KeyCalendarKey, key, logging.KeyCalendarID, h.To.CalendarID, "from", h.From.EnrolledBy, "to", h.To.EnrolledBy,
			"fromRole", h.From.AccessRole, "toRole", h.To.AccessRole)
		e.stopUnwatched(ctx, []store.Calendar{h.From}, false, res)
		e.follow(ctx, []store.Calendar{h.To}, res)
	}
}

// freeBusyOnly stops following calendars whose best reader sees free/busy
// only (their mirror, if any, is not kept up to date; the status says so).
func (e *Enroller) freeBusyOnly(ctx context.Context, cals []store.Calendar, res *Result) {
	for _, c := range cals {
		e.log(ctx).WarnContext(ctx, "calendar readable as free/busy only; not synced", logging.KeyEvent, logging.EventFreeBusyOnly,
			logging.KeyCalendarKey, c.Key(), logging.KeyCalendarID, c.CalendarID, logging.KeyIdentityKey, c.EnrolledBy)
	}
	e.stopUnwatched(ctx, cals, false, res)
}

// stopUnwatched stops the channels of calendars now unwatched and, with deleteMirror,
// asks for their mirror to be purged (the SyncWorker does it under the
// calendar's lease, announcing each event as deleted).
func (e *Enroller) stopUnwatched(ctx context.Context, cals []store.Calendar, deleteMirror bool, res *Result) {
	for _, c := range cals {
		key := c.Key()
		if e.Channels != nil {
			if _, err := e.Channels.StopCalendar(ctx, c, "unenrolled"); err != nil {
				res.Failed++
				e.failure(ctx, "", key, "stop", err) // RenewChannels stops what is left
			}
		}
		if deleteMirror {
			if err := e.ask(ctx, key, messages.StatePurge); err != nil {
				res.Failed++
				e.failure(ctx, "", key, "purge", err)
			}
		}
	}
}

// ensureList brings the identity's list channel to its wanted state (one
// live channel while active, none otherwise).
func (e *Enroller) ensureList(ctx context.Context, key string, id store.Identity) error {
	if e.Channels == nil {
		return nil
	}
	_, err := e.Channels.EnsureListNow(ctx, key, &id, e.RenewBefore)
	return err
}

// revoked reports that an identity's grant no longer reads its list: the
// lifecycle owner marks the identity and its grant's calendars auth_revoked
// (one ERROR line); its list channel is closed.
func (e *Enroller) revoked(ctx context.Context, key string, id store.Identity, cause error) error {
	res, err := e.lifecycle().Report(ctx, lifecycle.Identity(key, id), lifecycle.OpListList, cause)
	if err != nil || res.Next != lifecycle.Stop {
		return err
	}
	id.Status = store.StatusAuthRevoked
	return e.ensureList(ctx, key, id)
}

// UnenrollResult is what UnenrollIdentity did.
type UnenrollResult struct {
	IdentityKey string `json:"identityKey"`
	Unenrolled  int    `json:"unenrolled"` // calendars set unwatched
	Purged      int    `json:"purged"`     // mirrors asked to be deleted
	Failed      int    `json:"failed"`
}

// UnenrollIdentity stops following an identity: status unenrolled, its list
// channel stopped, every calendar it enrolled unwatched with its channels
// stopped, and with deleteMirror their mirrors purged (also those unwatched
// earlier). ErrNotFound (store) for an identity never enrolled.
func (e *Enroller) UnenrollIdentity(ctx context.Context, key string, deleteMirror bool, reason string) (UnenrollResult, error) {
	res := UnenrollResult{IdentityKey: key}
	id, err := e.Store.GetIdentity(ctx, key)
	if err != nil {
		return res, err
	}
	// Its calendars that another identity can read are handed over to it
	// first (a listing that lists nothing); the rest are unwatched.
	if err := e.dropReader(ctx, key, reason, &res); err != nil {
		return res, err
	}
	if _, err := e.lifecycle().Unenroll(ctx, lifecycle.Identity(key, id), reason); err != nil {
		return res, err
	}
	id.Status = store.StatusUnenrolled
	if err := e.ensureList(ctx, key, id); err != nil {
		res.Failed++
		e.failure(ctx, key, "", "list_channel", err)
	}
	mine, err := e.Store.CalendarsEnrolledBy(ctx, key)
	if err != nil {
		return res, err
	}
	for ck, c := range mine {
		// Whatever problem a calendar has meanwhile (a suspended user's
		// grant fails before the diff sees the suspension), nobody follows
		// it any more.
		if c.Status != store.StatusUnwatched {
			if _, err := e.lifecycle().Unenroll(ctx, lifecycle.Calendar(ck, c), reason); err != nil {
				res.Failed++
				e.failure(ctx, key, ck, "status", err)
				continue
			}
			res.Unenrolled++
		}
		if c.Status == store.StatusActive {
			if e.Channels != nil {
				if _, err := e.Channels.StopCalendar(ctx, c, "unenrolled"); err != nil {
					res.Failed++
					e.failure(ctx, key, ck, "stop", err)
				}
			}
		}
		if deleteMirror {
			if err := e.ask(ctx, ck, messages.StatePurge); err != nil {
				res.Failed++
				e.failure(ctx, key, ck, "purge", err)
				continue
			}
			res.Purged++
		}
	}
	e.log(ctx).InfoContext(ctx, "identity unenrolled", logging.KeyEvent, logging.EventIdentityUnenrolled, logging.KeyIdentityKey, key,
		logging.KeyUnenrolled, res.Unenrolled, "purged", res.Purged, logging.KeyFailed, res.Failed, logging.KeyReason, reason)
	return res, nil
}

// dropReader applies a listing of nothing for an identity being unenrolled: every
// calendar it reads goes to its next best reader or is unwatched.
func (e *Enroller) dropReader(ctx context.Context, key, reason string, res *UnenrollResult) error {
	mine, err := e.Store.CalendarsEnrolledBy(ctx, key)
	if err != nil {
		return err
	}
	read, err := e.Store.CalendarsReadBy(ctx, key)
	if err != nil {
		return err
	}
	maps.Copy(mine, read)
	applied, err := lifecycle.ApplyList(ctx, e.Store, key, store.Listing{StartedAt: e.now(), Unenroll: slices.Collect(maps.Keys(mine)),
		UnenrollReason: reason})
	if err != nil || applied.Stale {
		return err // not active: its calendars are unwatched below
	}
	var r Result
	e.announceListing(ctx, applied)
	e.handOver(ctx, applied.HandedOver, &r)
	e.stopUnwatched(ctx, applied.Unenrolled, false, &r)
	res.Unenrolled += len(applied.Unenrolled)
	res.Failed += r.Failed
	return nil
}

// Resync asks for a sync of every active calendar an identity enrolled
// (full: drop tokens and list everything) and a new look at its list.
func (e *Enroller) Resync(ctx context.Context, key string, full bool) (int, error) {
	mine, err := e.Store.CalendarsEnrolledBy(ctx, key)
	if err != nil {
		return 0, err
	}
	state := messages.StateReconcile
	if full {
		state = messages.StateFullResync
	}
	n := 0
	var errs []error
	for ck, c := range mine {
		if c.Status != store.StatusActive {
			continue
		}
		if err := e.ask(ctx, ck, state); err != nil {
			errs = append(errs, err)
			continue
		}
		n++
	}
	data, attrs, err := messages.ListRequest(key, messages.StateReconcile, e.now())
	if err == nil {
		err = e.Requests.Publish(ctx, data, attrs, "")
	}
	return n, errors.Join(append(errs, err)...)
}

// ask publishes a sync (or purge) request for a calendar.
func (e *Enroller) ask(ctx context.Context, key, state string) error {
	data, attrs, err := messages.Request(key, state, e.now())
	if err != nil {
		return err
	}
	return e.Requests.Publish(ctx, data, attrs, "")
}

func (e *Enroller) failure(ctx context.Context, identityKey, calendarKey, step string, err error) {
	e.log(ctx).ErrorContext(ctx, "enrollment step failed", logging.KeyEvent, logging.EventEnrollFailure,
		logging.KeyIdentityKey, identityKey, logging.KeyCalendarKey, calendarKey, logging.KeyStep, step,
		logging.KeyReason, calclient.Reason(err), logging.KeyError, err.Error())
}
