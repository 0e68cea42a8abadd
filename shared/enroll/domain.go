package enroll

import (
	"context"
	"errors"
	"fmt"
	"net/mail"
	"slices"
	"strings"
	"sync"

	"golang.org/x/oauth2"
	admin "google.golang.org/api/admin/directory/v1"
	"google.golang.org/api/option"

	"github.com/calsync/calsync/shared/lifecycle"
	"github.com/calsync/calsync/shared/logging"
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
// by domain-wide delegation (the same service account as the calendars')
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
	Filters              store.Filters // for each user's calendar list
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
	ShrinkRefused     int   `json:"shrinkRefused,omitempty"`
	Calendars         int   `json:"calendars"`         // calendars enrolled by this diff (users' and rooms)
	Rooms             int   `json:"rooms"`             // rooms listed
	RoomsEnrolled     int   `json:"roomsEnrolled"`     // room calendars enrolled
	RoomsUnenrolled   int   `json:"roomsUnenrolled"`   // rooms deleted since
	Failed            int   `json:"failed"`            // identities or calendars that failed (logged)
	DirectoryRequests int   `json:"directoryRequests"` // users.list and resources.calendars.list pages
	DurationMs        int64 `json:"durationMs"`
}

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
	// A first page proves the admin and the delegation before anything is written.
	if err := retryCalendar(ctx, func() error {
		_, err := svc.Users.List().Domain(sp.Domain).MaxResults(1).Context(ctx).Do()
		return err
	}); err != nil {
		return DomainResult{Domain: sp.Domain}, fmt.Errorf("%w: users.list of %s as %s: %v", ErrNotAuthorized, sp.Domain, sp.Admin, err)
	}
	if err := e.Store.PutDomain(ctx, store.Domain{Domain: sp.Domain, Admin: sp.Admin, Rooms: sp.Rooms, Filters: sp.Filters,
		DeleteMirrorOnRemove: sp.DeleteMirrorOnRemove}); err != nil {
		return DomainResult{Domain: sp.Domain}, err
	}
	return e.syncDirectory(ctx, sp.Domain, progress, sp.AllowShrink)
}

// SyncDirectory applies an enrolled domain's directory: every active user
// (not suspended, not archived) is enrolled as a delegated identity with the
// domain's filters (unless already enrolled so), every identity the domain
// enrolled whose user is suspended or gone is unenrolled (its mirror kept or
// deleted as the domain says), and with rooms every room calendar is
// enrolled and the rooms deleted since unenrolled. RenewChannels runs it
// daily (DIRECTORY_SYNC_INTERVAL). A diff that would unenroll more than
// MaxUnenrollShare of the domain's identities unenrolls none of them
// (DomainResult.ShrinkRefused); only EnrollDomain with AllowShrink applies it.
func (e *Enroller) SyncDirectory(ctx context.Context, domain string, progress func(Progress)) (DomainResult, error) {
	return e.syncDirectory(ctx, domain, progress, false)
}

func (e *Enroller) syncDirectory(ctx context.Context, domain string, progress func(Progress), allowShrink bool) (DomainResult, error) {
	start := e.now()
	res := DomainResult{Domain: strings.ToLower(domain)}
	d, err := e.Store.GetDomain(ctx, domain)
	if err != nil {
		return res, err
	}
	if d.Status != store.StatusActive {
		return res, fmt.Errorf("enroll: domain %s is %s", domain, d.Status)
	}
	if e.Directory == nil {
		return res, errors.New("enroll: no Directory client")
	}
	svc, err := e.Directory.Directory(ctx, d.Admin)
	if err != nil {
		return res, err
	}
	var users []*admin.User
	pt := ""
	for {
		call := svc.Users.List().Domain(d.Domain).MaxResults(500).OrderBy("email").Context(ctx)
		if pt != "" {
			call.PageToken(pt)
		}
		var page *admin.Users
		if err := retryCalendar(ctx, func() error {
			res.DirectoryRequests++
			var err error
			page, err = call.Do()
			return err
		}); err != nil {
			return res, fmt.Errorf("users.list of %s: %w", d.Domain, err)
		}
		users = append(users, page.Users...)
		if pt = page.NextPageToken; pt == "" {
			break
		}
	}
	res.Users = len(users)
	enrolled, err := e.Store.IdentitiesOfDomain(ctx, d.Domain)
	if err != nil {
		return res, err
	}
	active := map[string]bool{}
	var todo []IdentitySpec
	for _, u := range users {
		if u.Suspended || u.Archived {
			continue
		}
		email := strings.ToLower(u.PrimaryEmail)
		active[email] = true
		sp := IdentitySpec{AuthMode: store.AuthDelegation, Subject: email, Filters: d.Filters,
			DeleteMirrorOnRemove: d.DeleteMirrorOnRemove, Domain: d.Domain}
		if id, ok := enrolled[sp.Key()]; ok && id.Status == store.StatusActive && sameFilters(id.Filters, d.Filters) &&
			id.DeleteMirrorOnRemove == d.DeleteMirrorOnRemove {
			res.Kept++
			continue
		}
		todo = append(todo, sp)
	}
	res.Active = len(active)
	var gone []string
	following := 0
	for key, id := range enrolled {
		if id.Status == store.StatusUnenrolled {
			continue
		}
		following++
		// auth_revoked too: a suspended user's grant often fails (a list
		// push, a reconcile) before the diff sees the suspension.
		if !active[strings.ToLower(id.Subject)] {
			gone = append(gone, key)
		}
	}
	if allowed := e.unenrollAllowance(following); len(gone) > allowed && !allowShrink {
		res.ShrinkRefused = len(gone)
		e.log(ctx).ErrorContext(ctx, "directory diff refused: it would unenroll too many of the domain's identities; none unenrolled "+
			"(a partial listing? if the directory really shrank: calsync enroll --domain ... --allow-shrink)",
			logging.KeyEvent, logging.EventDirectoryShrinkRefused, logging.KeyDomain, d.Domain,
			"wouldUnenroll", len(gone), "identities", following, "allowed", allowed, logging.KeyUsers, len(users),
			"active", len(active))
		gone = nil
	}
	total := len(todo) + len(gone)
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
	for _, sp := range todo {
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
	for _, key := range gone {
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
	if d.Rooms {
		if err := e.syncRooms(ctx, svc, d, &res); err != nil {
			res.Failed++
			e.failure(ctx, store.DomainKey(d.Domain), "", "rooms", err)
		}
	}
	if err := e.Store.DirectorySynced(ctx, d.Domain, start, res.Active, res.Rooms); err != nil {
		return res, err
	}
	res.DurationMs = e.now().Sub(start).Milliseconds()
	e.log(ctx).InfoContext(ctx, "directory applied", logging.KeyEvent, logging.EventDirectorySync, logging.KeyDomain, d.Domain,
		logging.KeyUsers, res.Users, "active", res.Active, logging.KeyEnrolled, res.Enrolled, "kept", res.Kept,
		logging.KeyUnenrolled, res.Unenrolled, "shrinkRefused", res.ShrinkRefused, logging.KeyRooms, res.Rooms, "roomsEnrolled", res.RoomsEnrolled,
		"roomsUnenrolled", res.RoomsUnenrolled, logging.KeyCalendars, res.Calendars, logging.KeyFailed, res.Failed,
		logging.KeyListCalls, res.DirectoryRequests, logging.KeyDurationMs, res.DurationMs)
	return res, nil
}

// syncRooms enrolls the domain's room calendars (read as the admin) and
// unenrolls those of rooms deleted since, guarded like a calendar list.
func (e *Enroller) syncRooms(ctx context.Context, svc *admin.Service, d store.Domain, res *DomainResult) error {
	start := e.now()
	var rooms []*admin.CalendarResource
	pt := ""
	for {
		call := svc.Resources.Calendars.List("my_customer").MaxResults(500).Context(ctx)
		if pt != "" {
			call.PageToken(pt)
		}
		var page *admin.CalendarResources
		if err := retryCalendar(ctx, func() error {
			res.DirectoryRequests++
			var err error
			page, err = call.Do()
			return err
		}); err != nil {
			return fmt.Errorf("resources.calendars.list of %s: %w", d.Domain, err)
		}
		rooms = append(rooms, page.Items...)
		if pt = page.NextPageToken; pt == "" {
			break
		}
	}
	res.Rooms = len(rooms)
	key := store.DomainKey(d.Domain)
	keep := map[string]bool{}
	var enroll []store.Calendar
	for _, r := range rooms {
		if r.ResourceEmail == "" {
			continue
		}
		keep[store.CalendarKey(r.ResourceEmail)] = true
		enroll = append(enroll, store.Calendar{CalendarID: r.ResourceEmail, AuthMode: store.AuthDelegation, Subject: d.Admin})
	}
	mine, err := e.Store.CalendarsEnrolledBy(ctx, key)
	if err != nil {
		return err
	}
	var unenroll []string
	for k, c := range mine {
		if !keep[k] && c.Status != store.StatusUnwatched {
			unenroll = append(unenroll, k)
		}
	}
	applied, err := e.Store.ApplyRooms(ctx, d.Domain, store.Listing{StartedAt: start, Enroll: enroll, Unenroll: unenroll,
		UnenrollReason: "room deleted from the directory of " + d.Domain})
	if err != nil || applied.Stale {
		return err
	}
	var r Result
	e.follow(ctx, applied.Enrolled, &r)
	e.leave(ctx, applied.Unenrolled, d.DeleteMirrorOnRemove, &r)
	res.RoomsEnrolled, res.RoomsUnenrolled = len(applied.Enrolled), len(applied.Unenrolled)
	res.Calendars += len(applied.Enrolled)
	res.Failed += r.Failed
	return nil
}

// unenrollAllowance is how many of n followed identities one diff may
// unenroll: MaxUnenrollShare of them, rounded down, and at least one (a
// small domain's single departure is no sign of a partial listing).
func (e *Enroller) unenrollAllowance(n int) int {
	share := e.MaxUnenrollShare
	if share <= 0 {
		share = DefaultMaxUnenrollShare
	}
	return max(int(share*float64(n)+1e-9), 1)
}

func sameFilters(a, b store.Filters) bool {
	return a.MinAccessRole == b.MinAccessRole && a.PrimaryOnly == b.PrimaryOnly &&
		slices.Equal(a.Include, b.Include) && slices.Equal(a.Exclude, b.Exclude)
}

// UnenrollDomain stops following a domain: status unenrolled, every identity
// it enrolled unenrolled, its rooms unwatched (mirrors deleted with
// deleteMirror).
func (e *Enroller) UnenrollDomain(ctx context.Context, domain string, deleteMirror bool) (DomainResult, error) {
	res := DomainResult{Domain: strings.ToLower(domain)}
	d, err := e.Store.GetDomain(ctx, domain)
	if err != nil {
		return res, err
	}
	if _, err := e.lifecycle().Unenroll(ctx, lifecycle.Domain(d), "unenrolled"); err != nil {
		return res, err
	}
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
	rooms, err := e.Store.CalendarsEnrolledBy(ctx, store.DomainKey(d.Domain))
	if err != nil {
		return res, err
	}
	var r Result
	var leaving []store.Calendar
	for ck, c := range rooms {
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
	e.leave(ctx, leaving, deleteMirror, &r)
	res.Failed += r.Failed
	return res, nil
}
