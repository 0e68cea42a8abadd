package enroll

import (
	"context"
	"errors"
	"fmt"
	"net/mail"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/oauth2"
	admin "google.golang.org/api/admin/directory/v1"
	"google.golang.org/api/option"

	"github.com/calsync/calsync/shared/lifecycle"
	"github.com/calsync/calsync/shared/logging"
	"github.com/calsync/calsync/shared/messages"
	"github.com/calsync/calsync/shared/store"
)

// Directory builds an Admin SDK Directory client acting as a domain's admin.
type Directory interface {
	Directory(ctx context.Context, admin string) (*admin.Service, error)
}

// TokenSources gives domain-wide delegation tokens (calclient.Factory).
type TokenSources interface {
	DelegatedTokenSource(ctx context.Context, subject string, scopes ...string) (oauth2.TokenSource, error)
}

// DirectoryClients is the Directory of a deployment: the admin impersonated
// by domain-wide delegation (DIRECTORY_DELEGATION_SERVICE_ACCOUNT when set, an account
// authorised for the Directory's scopes only; else the calendars' account)
// with the two read-only scopes calsync needs.
type DirectoryClients struct {
	Tokens TokenSources
	// Endpoint is the emulator's base URL ("" for Google's Admin SDK).
	Endpoint string
}

// DirectoryScopes are the scopes domain-wide delegation must grant the
// service account for domain enrollment (besides the Calendar scope).
var DirectoryScopes = []string{admin.AdminDirectoryUserReadonlyScope, admin.AdminDirectoryResourceCalendarReadonlyScope}

// Directory returns a client acting as adminEmail.
func (d DirectoryClients) Directory(ctx context.Context, adminEmail string) (*admin.Service, error) {
	ts, err := d.Tokens.DelegatedTokenSource(context.WithoutCancel(ctx), adminEmail, DirectoryScopes...)
	if err != nil {
		return nil, err
	}
	if ts == nil {
		return nil, errors.New("enroll: the Directory API needs domain-wide delegation (against the emulator: OAUTH_TOKEN_URL)")
	}
	opts := []option.ClientOption{option.WithTokenSource(ts)}
	if d.Endpoint != "" {
		opts = append(opts, option.WithEndpoint(strings.TrimSuffix(strings.TrimSuffix(strings.TrimRight(d.Endpoint, "/"), "/calendar/v3"), "/")+"/"))
	}
	return admin.NewService(context.WithoutCancel(ctx), opts...)
}

// DomainSpec is a Workspace domain to enroll.
type DomainSpec struct {
	Domain string
	// Admin is the domain admin impersonated for the Directory API and the
	// rooms' calendars.
	Admin                string
	Rooms                bool
	Filters              messages.Filters // for each user's calendar list
	DeleteMirrorOnRemove bool
	// AllowShrink is the operator's override of the unenroll guard
	// (MaxUnenrollShare) for this one diff: the CLI's --allow-shrink.
	AllowShrink bool
}

// DefaultMaxUnenrollShare is MaxUnenrollShare's default: 10%.
const DefaultMaxUnenrollShare = 0.10

// DomainResult is what one directory diff did.
type DomainResult struct {
	Domain     string `json:"domain"`
	Users      int    `json:"users"`      // users listed (suspended included)
	Active     int    `json:"active"`     // of them active: the ones enrolled
	Enrolled   int    `json:"enrolled"`   // identities enrolled (new, or back)
	Kept       int    `json:"kept"`       // identities already enrolled as asked
	Unenrolled int    `json:"unenrolled"` // identities of suspended or deleted users
	// ShrinkRefused counts the identities the diff would have unenrolled
	// but did not: more than MaxUnenrollShare of the domain's (logged at
	// ERROR directory_shrink_refused; an operator's --allow-shrink applies it).
	ShrinkRefused int `json:"shrinkRefused,omitempty"`
	Calendars     int `json:"calendars"` // calendars enrolled by this diff (users' and rooms)
	// Rooms: the rooms (CONFERENCE_ROOM) of the domain's customer listed;
	// NotRooms: its other resources (equipment...), never enrolled.
	Rooms           int `json:"rooms"`
	NotRooms        int `json:"notRooms"`
	RoomsEnrolled   int `json:"roomsEnrolled"`   // room calendars enrolled (a room is the customer's: once for all its domains)
	RoomsShared     int `json:"roomsShared"`     // rooms listed but followed otherwise (an identity's list, an operator)
	RoomsUnenrolled int `json:"roomsUnenrolled"` // rooms no enrolled domain of the customer lists any more
	RoomsKept       int `json:"roomsKept,omitempty"`
	// RoomsSuperseded: this diff's rooms were not applied because a diff of
	// the customer that began later applied its own (RenewChannels' diff
	// of a domain enrolled meanwhile; the later reading wins).
	RoomsSuperseded bool `json:"roomsSuperseded,omitempty"`
	// RoomsShrinkRefused: the rooms the diff would have unenrolled but did
	// not (the shrink guard, as for identities).
	RoomsShrinkRefused int `json:"roomsShrinkRefused,omitempty"`
	// Status is the domain's status after the diff: active, or the refusal
	// that keeps its directory from being read (shared/lifecycle).
	Status            string `json:"status,omitempty"`
	Failed            int    `json:"failed"`            // identities or calendars that failed (logged)
	DirectoryRequests int    `json:"directoryRequests"` // users.list and resources.calendars.list pages
	DurationMs        int64  `json:"durationMs"`
}

// ErrDirectoryRefused: Google refuses the domain's directory for a reason
// no retry cures (admin policy, delegation, API disabled, an admin who is
// no longer one...). shared/lifecycle recorded it as the domain's status
// and logged it; the next diff that reads the directory clears it.
var ErrDirectoryRefused = errors.New("enroll: the domain's directory is refused")

// Progress is reported after each user of a directory diff.
type Progress struct {
	Done, Total int
	Current     string // the user just handled
}

// EnrollDomain enrolls a Workspace domain: the directory is read first (a
// domain whose admin or delegation does not work is refused, nothing
// written), then the domain is recorded and its directory applied
// (SyncDirectory). progress, if set, is called after each user.
func (e *Enroller) EnrollDomain(ctx context.Context, sp DomainSpec, progress func(Progress)) (DomainResult, error) {
	sp.Domain = strings.ToLower(strings.TrimSpace(sp.Domain))
	if a, err := mail.ParseAddress(sp.Admin); err != nil || a.Address != sp.Admin || !strings.HasSuffix(strings.ToLower(sp.Admin), "@"+sp.Domain) {
		return DomainResult{Domain: sp.Domain}, fmt.Errorf("enroll: admin %q is not an address of %s", sp.Admin, sp.Domain)
	}
	if e.Directory == nil {
		return DomainResult{Domain: sp.Domain}, errors.New("enroll: no Directory client")
	}
	svc, err := e.Directory.Directory(ctx, sp.Admin)
	if err != nil {
		return DomainResult{Domain: sp.Domain}, err
	}
	// A first page proves the admin and the delegation before anything is
	// written, and names the customer (the owner of the rooms).
	var first *admin.Users
	if err := retryCalendar(ctx, func() error {
		var err error
		first, err = svc.Users.List().Domain(sp.Domain).MaxResults(1).Context(ctx).Do()
		return err
	}); err != nil {
		return DomainResult{Domain: sp.Domain}, fmt.Errorf("%w: users.list of %s as %s: %v", ErrNotAuthorized, sp.Domain, sp.Admin, err)
	}
	if err := e.Store.PutDomain(ctx, store.Domain{Domain: sp.Domain, Admin: sp.Admin, Rooms: sp.Rooms, Filters: sp.Filters,
		DeleteMirrorOnRemove: sp.DeleteMirrorOnRemove, CustomerID: customerOf(first.Users, "")}); err != nil {
		return DomainResult{Domain: sp.Domain}, err
	}
	return e.syncDirectory(ctx, sp.Domain, progress, sp.AllowShrink)
}

// SyncDirectory applies an enrolled domain's directory: every active user
// (not suspended, not archived) is enrolled as a delegated identity with the
// domain's filters (unless already enrolled so), every identity the domain
// enrolled whose user is suspended or gone is unenrolled (its mirror kept or
// deleted as the domain says), and with rooms the rooms of its customer are
// enrolled (once, whatever the number of its domains enrolled) and those no
// enrolled domain of the customer lists any more unenrolled. RenewChannels
// runs it daily (DIRECTORY_SYNC_INTERVAL). A diff that would unenroll more
// than MaxUnenrollShare of the domain's identities, or of the customer's
// rooms, unenrolls none of them (DomainResult.ShrinkRefused,
// RoomsShrinkRefused); only EnrollDomain with AllowShrink applies it. A
// directory Google refuses is the domain's status (ErrDirectoryRefused).
func (e *Enroller) SyncDirectory(ctx context.Context, domain string, progress func(Progress)) (DomainResult, error) {
	return e.syncDirectory(ctx, domain, progress, false)
}

// syncDirectory reads (readDirectory), decides (planDirectory, pure) and
// does what was decided.
func (e *Enroller) syncDirectory(ctx context.Context, domain string, progress func(Progress), allowShrink bool) (DomainResult, error) {
	start := e.now()
	res := DomainResult{Domain: strings.ToLower(domain)}
	d, err := e.Store.GetDomain(ctx, domain)
	if err != nil {
		return res, err
	}
	if d.Status == store.StatusUnenrolled {
		return res, fmt.Errorf("enroll: domain %s is %s", domain, d.Status)
	}
	if e.Directory == nil {
		return res, errors.New("enroll: no Directory client")
	}
	if err := e.Store.DirectorySyncStarted(ctx, d.Domain, start); err != nil {
		return res, err
	}
	st, err := e.readDirectory(ctx, d, &res)
	if err != nil {
		return res, err
	}
	st.MaxUnenrollShare, st.AllowShrink = e.MaxUnenrollShare, allowShrink
	plan := planDirectory(st)
	d = st.Domain
	res.Users, res.Active, res.Kept, res.ShrinkRefused = len(st.Users), plan.Active, plan.Kept, plan.ShrinkRefused
	res.Rooms, res.NotRooms, res.RoomsShrinkRefused = len(plan.Rooms), plan.NotRooms, plan.RoomsShrinkRefused
	if plan.ShrinkRefused > 0 {
		e.shrinkRefused(ctx, d, "identities", plan.ShrinkRefused, plan.Following, plan.Allowed,
			logging.KeyUsers, len(st.Users), "active", plan.Active)
	}
	if plan.RoomsShrinkRefused > 0 {
		e.shrinkRefused(ctx, d, "rooms", plan.RoomsShrinkRefused, plan.RoomsFollowing, plan.RoomsAllowed,
			"listed", len(plan.Rooms), "customer", d.CustomerID)
	}
	e.applyUsers(ctx, d, plan, st.Identities, progress, &res)
	if err := e.syncRooms(ctx, d, st, plan, start, &res); err != nil {
		res.Failed++
		e.failure(ctx, store.DomainKey(d.Domain), "", "rooms", err)
	}
	if err := e.Store.DirectorySynced(ctx, d.Domain, d.CustomerID, start, res.Active, res.Rooms); err != nil {
		return res, err
	}
	res.DurationMs = e.now().Sub(start).Milliseconds()
	e.log(ctx).InfoContext(ctx, "directory applied", logging.KeyEvent, logging.EventDirectorySync, logging.KeyDomain, d.Domain,
		logging.KeyUsers, res.Users, "active", res.Active, logging.KeyEnrolled, res.Enrolled, "kept", res.Kept,
		logging.KeyUnenrolled, res.Unenrolled, "shrinkRefused", res.ShrinkRefused, logging.KeyRooms, res.Rooms, "notRooms", res.NotRooms,
		"roomsEnrolled", res.RoomsEnrolled, "roomsShared", res.RoomsShared, "roomsUnenrolled", res.RoomsUnenrolled,
		"roomsShrinkRefused", res.RoomsShrinkRefused, "customer", d.CustomerID, logging.KeyCalendars, res.Calendars,
		logging.KeyFailed, res.Failed, logging.KeyListCalls, res.DirectoryRequests, logging.KeyDurationMs, res.DurationMs)
	return res, nil
}

// readDirectory reads what a diff decides on: the domain's users and, with
// rooms, its customer's resources and the rooms enrolled. Google's answer
// is reported to shared/lifecycle once per diff: a refusal becomes the
// domain's status (ErrDirectoryRefused when it stops the diff), a read
// clears one recorded before.
func (e *Enroller) readDirectory(ctx context.Context, d store.Domain, res *DomainResult) (directoryState, error) {
	st := directoryState{Domain: d}
	res.Status = d.Status
	svc, err := e.Directory.Directory(ctx, d.Admin)
	if err != nil {
		return st, err
	}
	st.Users, err = pages(ctx, res, func(pt string) ([]*admin.User, string, error) {
		call := svc.Users.List().Domain(d.Domain).MaxResults(500).OrderBy("email").Context(ctx)
		if pt != "" {
			call.PageToken(pt)
		}
		p, err := call.Do()
		if err != nil {
			return nil, "", err
		}
		return p.Users, p.NextPageToken, nil
	})
	if err != nil {
		return st, e.reportDirectory(ctx, d, res, fmt.Errorf("users.list of %s: %w", d.Domain, err))
	}
	st.Domain.CustomerID = customerOf(st.Users, d.CustomerID)
	var roomsErr error
	if d.Rooms {
		st.Resources, roomsErr = pages(ctx, res, func(pt string) ([]*admin.CalendarResource, string, error) {
			call := svc.Resources.Calendars.List("my_customer").MaxResults(500).Context(ctx)
			if pt != "" {
				call.PageToken(pt)
			}
			p, err := call.Do()
			if err != nil {
				return nil, "", err
			}
			return p.Items, p.NextPageToken, nil
		})
		if roomsErr != nil {
			roomsErr = fmt.Errorf("resources.calendars.list of %s: %w", d.Domain, roomsErr)
		}
	}
	// The users were read: a refusal of the resources is still the
	// domain's status, anything else clears one.
	reported := error(nil)
	if lifecycle.Classify(roomsErr).IsAuth() {
		reported = roomsErr
	}
	if err := e.reportDirectory(ctx, d, res, reported); err != nil && !errors.Is(err, ErrDirectoryRefused) {
		return st, err
	}
	if err := e.readRooms(ctx, &st, roomsErr); err != nil {
		res.Failed++
		e.failure(ctx, store.DomainKey(d.Domain), "", "rooms", err)
	}
	st.Identities, err = e.Store.IdentitiesOfDomain(ctx, d.Domain)
	return st, err
}

// readRooms reads what the customer's rooms are: the room calendars it
// enrolled (adopting the domain's own from before rooms were the
// customer's), the domains that listed each, the domains that follow rooms.
func (e *Enroller) readRooms(ctx context.Context, st *directoryState, listErr error) error {
	d := st.Domain
	switch {
	case !d.Rooms:
		return nil
	case listErr != nil:
		return listErr
	case d.CustomerID == "":
		return fmt.Errorf("rooms of %s: no user listed carries the customer id", d.Domain)
	}
	if err := e.Store.PutCustomer(ctx, d.CustomerID); err != nil {
		return err
	}
	if _, err := e.Store.AdoptRooms(ctx, d.Domain, d.CustomerID); err != nil {
		return err
	}
	var err error
	if st.RoomCalendars, st.RoomDomains, st.EnrollingDomains, err = e.customerRooms(ctx, d.CustomerID); err != nil {
		return err
	}
	st.EnrollingDomains[d.Domain] = true
	st.ListedRooms = true
	return nil
}

// customerRooms reads a customer's room calendars, which domains listed
// each room, and its domains that follow rooms (not unenrolled).
func (e *Enroller) customerRooms(ctx context.Context, customer string) (map[string]store.Calendar, map[string][]string, map[string]bool, error) {
	cals, err := e.Store.CalendarsEnrolledBy(ctx, store.CustomerKey(customer))
	if err != nil {
		return nil, nil, nil, err
	}
	rooms, err := e.Store.RoomsOfCustomer(ctx, customer)
	if err != nil {
		return nil, nil, nil, err
	}
	listedBy := map[string][]string{}
	for k, r := range rooms {
		listedBy[k] = r.Domains
	}
	domains, err := e.Store.DomainsOfCustomer(ctx, customer)
	if err != nil {
		return nil, nil, nil, err
	}
	enrolling := map[string]bool{}
	for _, o := range domains {
		if o.Rooms && o.Status != store.StatusUnenrolled {
			enrolling[o.Domain] = true
		}
	}
	return cals, listedBy, enrolling, nil
}

// reportDirectory reports Google's answer to the domain's directory (nil:
// read) and says what it means for the diff: ErrDirectoryRefused (wrapping
// cause) when the directory is refused, cause when it is another failure,
// nil to go on.
func (e *Enroller) reportDirectory(ctx context.Context, d store.Domain, res *DomainResult, cause error) error {
	r, err := e.lifecycle().Report(ctx, lifecycle.Domain(d), lifecycle.OpDirectoryList, cause)
	if err != nil {
		return err
	}
	switch r.Next {
	case lifecycle.Continue:
		res.Status = store.StatusActive
	case lifecycle.Stop:
		if r.Effect == lifecycle.EffectDeny {
			res.Status = lifecycle.DomainStatusOf(lifecycle.Classify(cause))
		}
		return fmt.Errorf("%w (%s): %w", ErrDirectoryRefused, res.Status, cause)
	}
	return cause
}

// pages reads every page of a Directory listing, each call retried.
func pages[T any](ctx context.Context, res *DomainResult, page func(pt string) ([]T, string, error)) ([]T, error) {
	var all []T
	pt := ""
	for {
		var items []T
		next := ""
		if err := retryCalendar(ctx, func() error {
			res.DirectoryRequests++
			var err error
			items, next, err = page(pt)
			return err
		}); err != nil {
			return all, err
		}
		all = append(all, items...)
		if pt = next; pt == "" {
			return all, nil
		}
	}
}

// customerOf is the customer of the users listed (known, when none says).
func customerOf(users []*admin.User, known string) string {
	for _, u := range users {
		if u.CustomerId != "" {
			return u.CustomerId
		}
	}
	return known
}

// shrinkRefused logs a refusal of the shrink guard (what: identities or
// rooms; the field named so counts the ones followed).
func (e *Enroller) shrinkRefused(ctx context.Context, d store.Domain, what string, would, following, allowed int, more ...any) {
	e.log(ctx).ErrorContext(ctx, "directory diff refused: it would unenroll too many of the domain's "+what+"; none unenrolled "+
		"(a partial listing? if the directory really shrank: calsync enroll --domain ... --allow-shrink)",
		append([]any{logging.KeyEvent, logging.EventDirectoryShrinkRefused, logging.KeyDomain, d.Domain, logging.KeyTarget, what,
			"wouldUnenroll", would, what, following, "allowed", allowed}, more...)...)
}

// applyUsers enrolls and unenrolls the identities the plan says, with
// progress after each.
func (e *Enroller) applyUsers(ctx context.Context, d store.Domain, plan directoryPlan, enrolled map[string]store.Identity,
	progress func(Progress), res *DomainResult) {
	total := len(plan.Enroll) + len(plan.Unenroll)
	var mu sync.Mutex
	done := 0
	report := func(who string) {
		done++
		if progress != nil {
			progress(Progress{Done: done, Total: total, Current: who})
		}
	}
	sem := make(chan struct{}, max(e.Concurrency, 1))
	if e.Concurrency == 0 {
		sem = make(chan struct{}, 8)
	}
	var wg sync.WaitGroup
	for _, sp := range plan.Enroll {
		if ctx.Err() != nil {
			break
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			r, err := e.EnrollIdentity(ctx, sp)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				res.Failed++
				e.failure(ctx, sp.Key(), "", "enroll_user", err)
			} else {
				res.Enrolled++
				res.Calendars += r.Enrolled
				res.Failed += r.Failed
			}
			report(sp.Subject)
		}()
	}
	wg.Wait()
	reason := "suspended or deleted in the directory of " + d.Domain
	for _, key := range plan.Unenroll {
		r, err := e.UnenrollIdentity(ctx, key, d.DeleteMirrorOnRemove, reason)
		if err != nil {
			res.Failed++
			e.failure(ctx, key, "", "unenroll_user", err)
		} else {
			res.Unenrolled++
			res.Failed += r.Failed
		}
		report(enrolled[key].Subject)
	}
}

// syncRooms applies the customer's rooms the domain listed; a domain of a
// known customer that no longer follows rooms (enrolled again without
// them) leaves them as an unenrolled domain does.
func (e *Enroller) syncRooms(ctx context.Context, d store.Domain, st directoryState, plan directoryPlan, start time.Time, res *DomainResult) error {
	switch {
	case st.ListedRooms:
		return e.applyRooms(ctx, d, plan, start, res)
	case d.Rooms || d.CustomerID == "":
		return nil
	}
	leaving, err := e.unenrollRooms(ctx, d, d.DeleteMirrorOnRemove, res)
	var r Result
	e.stopUnwatched(ctx, leaving, d.DeleteMirrorOnRemove, &r)
	res.Failed += r.Failed
	return err
}

// applyRooms records which rooms the domain lists now and applies the
// plan's rooms to the customer's (a listing guarded like a calendar list:
// of the customer's domains' diffs, the one that began last wins).
func (e *Enroller) applyRooms(ctx context.Context, d store.Domain, plan directoryPlan, start time.Time, res *DomainResult) error {
	if err := e.Store.ListedRooms(ctx, d.CustomerID, d.Domain, plan.RoomEmails); err != nil {
		return err
	}
	applied, err := lifecycle.ApplyRooms(ctx, e.Store, d.CustomerID, store.Listing{StartedAt: start, Enroll: plan.Rooms,
		Unenroll: plan.RoomsUnenroll, UnenrollReason: "room listed by no enrolled domain of its customer"})
	if err != nil {
		return err
	}
	if applied.Stale {
		res.RoomsSuperseded = true
		return nil
	}
	var r Result
	e.follow(ctx, applied.Enrolled, &r)
	e.stopUnwatched(ctx, applied.Unenrolled, d.DeleteMirrorOnRemove, &r)
	res.RoomsEnrolled, res.RoomsUnenrolled, res.RoomsShared = len(applied.Enrolled), len(applied.Unenrolled), applied.Shared
	res.Calendars += len(applied.Enrolled)
	res.Failed += r.Failed
	return nil
}

// UnenrollDomain stops following a domain: status unenrolled, every identity
// it enrolled unenrolled, and the rooms of its customer that no other
// enrolled domain lists unwatched (mirrors deleted with deleteMirror); the
// rooms another domain lists stay (RoomsKept).
func (e *Enroller) UnenrollDomain(ctx context.Context, domain string, deleteMirror bool) (DomainResult, error) {
	res := DomainResult{Domain: strings.ToLower(domain)}
	d, err := e.Store.GetDomain(ctx, domain)
	if err != nil {
		return res, err
	}
	if _, err := e.lifecycle().Unenroll(ctx, lifecycle.Domain(d), "unenrolled"); err != nil {
		return res, err
	}
	res.Status = store.StatusUnenrolled
	ids, err := e.Store.IdentitiesOfDomain(ctx, d.Domain)
	if err != nil {
		return res, err
	}
	reason := "domain " + d.Domain + " unenrolled"
	for key, id := range ids {
		if id.Status == store.StatusUnenrolled && !deleteMirror {
			continue
		}
		if _, err := e.UnenrollIdentity(ctx, key, deleteMirror, reason); err != nil {
			res.Failed++
			continue
		}
		res.Unenrolled++
	}
	var r Result
	var leaving []store.Calendar
	if d.CustomerID != "" {
		leaving, err = e.unenrollRooms(ctx, d, deleteMirror, &res)
		if err != nil {
			return res, err
		}
	}
	// Rooms the domain enrolled itself, before rooms were the customer's.
	legacy, err := e.Store.CalendarsEnrolledBy(ctx, store.DomainKey(d.Domain))
	if err != nil {
		return res, err
	}
	for ck, c := range legacy {
		if c.Status != store.StatusUnwatched {
			if _, err := e.lifecycle().Unenroll(ctx, lifecycle.Calendar(ck, c), reason); err != nil {
				res.Failed++
				continue
			}
			res.RoomsUnenrolled++
			leaving = append(leaving, c)
		} else if deleteMirror {
			leaving = append(leaving, c)
		}
	}
	e.stopUnwatched(ctx, leaving, deleteMirror, &r)
	res.Failed += r.Failed
	return res, nil
}

// unenrollRooms takes a domain that no longer follows rooms (unenrolled, or
// enrolled again without them) off its customer's rooms and unenrolls
// those no other domain that follows rooms lists (planRooms with an empty
// listing decides which); it returns the calendars now unwatched (with
// deleteMirror, the rooms unwatched before too).
func (e *Enroller) unenrollRooms(ctx context.Context, d store.Domain, deleteMirror bool, res *DomainResult) ([]store.Calendar, error) {
	if err := e.Store.ForgetRoomDomain(ctx, d.CustomerID, d.Domain); err != nil {
		return nil, err
	}
	st := directoryState{Domain: d, ListedRooms: true, AllowShrink: true}
	var err error
	if st.RoomCalendars, st.RoomDomains, st.EnrollingDomains, err = e.customerRooms(ctx, d.CustomerID); err != nil {
		return nil, err
	}
	delete(st.EnrollingDomains, d.Domain)
	var plan directoryPlan
	planRooms(st, &plan)
	gone := map[string]bool{}
	for _, k := range plan.RoomsUnenroll {
		gone[k] = true
	}
	var leaving []store.Calendar
	if deleteMirror {
		// Unwatched before (deleted rooms): their mirrors go too, unless
		// another domain lists the room.
		for k, c := range st.RoomCalendars {
			if c.Status == store.StatusUnwatched && !slices.ContainsFunc(st.RoomDomains[k], func(o string) bool { return st.EnrollingDomains[o] }) {
				leaving = append(leaving, c)
			}
		}
	}
	res.RoomsKept = plan.RoomsFollowing - len(plan.RoomsUnenroll)
	if len(plan.RoomsUnenroll) == 0 {
		return leaving, nil
	}
	applied, err := lifecycle.ApplyRooms(ctx, e.Store, d.CustomerID, store.Listing{StartedAt: e.now(), Unenroll: plan.RoomsUnenroll,
		UnenrollReason: "domain " + d.Domain + " unenrolled; no other enrolled domain lists the room"})
	if err != nil {
		return leaving, err
	}
	if applied.Stale {
		return leaving, fmt.Errorf("rooms of %s: a later directory diff of customer %s is being applied; unenroll again", d.Domain, d.CustomerID)
	}
	res.RoomsUnenrolled += len(applied.Unenrolled)
	return append(leaving, applied.Unenrolled...), nil
}
