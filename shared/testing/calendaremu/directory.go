package calendaremu

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Google Workspace's Admin SDK Directory API, the two methods calsync uses:
// users.list and resources.calendars.list, served under /admin/directory/v1/
// (the official admin/directory/v1 client works with option.WithEndpoint(base+"/")).
//
// A domain belongs to a customer (CreateDomain makes a new one,
// CreateSecondaryDomain adds a domain to one) and has users (each with a
// primary calendar, created as any emulator user). The customer has the
// calendar resources (rooms and equipment, ids
// c_…@resource.calendar.google.com, which its admins can read):
// resources.calendars.list is customer-wide, as Google's is. Callers authenticate with a bearer
// token of an admin of the domain (domain-wide delegation, delegation.go, or
// the admin's own OAuth grant) carrying the method's scope. What Google
// answers otherwise, as Google documents it or as its users report it:
//
//   - no Authorization: 401 required "Login Required." (location Authorization)
//   - an unknown or expired token: 401 authError "Invalid Credentials"
//   - a token without the scope: 403 insufficientPermissions "Request had insufficient authentication scopes."
//   - a caller who is not an admin of the customer: 403 forbidden "Not Authorized to access this resource/api"
//   - users.list with neither customer nor domain: 400 badRequest "Bad Request"
//   - a domain the emulator does not hold: 404 notFound "Domain not found."
//   - maxResults outside 1-500: 400 invalid
//
// users.list returns active and suspended users (suspended=true) by email;
// showDeleted=true returns deleted users only. query supports isSuspended=
// and isAdmin= (true/false); anything else is 400 invalid "not supported by
// the emulator", so a test never gets a silently wrong filter.

// DirectoryPath is where the Directory API is served.
const DirectoryPath = "/admin/directory/v1/"

// directoryScopes lists the scopes each emulated Directory method accepts,
// as admin-api.json does (schema_test.go checks it).
var directoryScopes = map[string][]string{
	"users.list": {"https://www.googleapis.com/auth/admin.directory.user", "https://www.googleapis.com/auth/admin.directory.user.readonly",
		"https://www.googleapis.com/auth/cloud-platform"},
	"resources.calendars.list": {"https://www.googleapis.com/auth/admin.directory.resource.calendar",
		"https://www.googleapis.com/auth/admin.directory.resource.calendar.readonly"},
}

// wsCustomer is a Workspace customer (an organisation): its domains share
// its admins and its resources (resources.calendars.list is customer-wide).
type wsCustomer struct {
	id    string
	rooms map[string]*wsRoom // calendar resources by id, rooms and others
}

type wsDomain struct {
	name     string
	customer *wsCustomer
	// delegation: client ids (service-account emails) allowed domain-wide
	// delegation; nil allows every client.
	delegation map[string]bool
	users      map[string]*wsUser // by primary email
	// listedOU, when set, is the one organisational unit (and its children)
	// users.list shows: an admin whose role was narrowed to it (NarrowListing).
	listedOU string
}

type wsUser struct {
	id, email, given, family string
	admin, suspended         bool
	deleted                  bool
	orgUnit                  string // "" is the root, "/"
	created, deletedAt       time.Time
}

type wsRoom struct {
	id, name, email string
	category, kind  string // resourceCategory, resourceType
	capacity        int
	etag            string
}

// Resource categories (CalendarResource.resourceCategory).
const (
	CategoryRoom  = "CONFERENCE_ROOM"
	CategoryOther = "OTHER" // equipment and the like
)

func emailDomain(email string) string {
	_, d, _ := strings.Cut(strings.ToLower(email), "@")
	return d
}

// wsUserLocked finds a directory user by email (nil: none).
func (s *Server) wsUserLocked(email string) (*wsDomain, *wsUser) {
	d := s.ws.domains[emailDomain(email)]
	if d == nil {
		return nil, nil
	}
	return d, d.users[strings.ToLower(email)]
}

// CreateDomain creates a Workspace domain, the primary domain of a new
// customer, with one admin user (created with a primary calendar). Every
// client may use domain-wide delegation in it until SetDelegation says
// otherwise.
func (s *Server) CreateDomain(domain, admin string) error {
	return s.createDomain(domain, admin, "")
}

// CreateSecondaryDomain creates a Workspace domain of the customer that
// owns primary (an existing domain), with one admin user: the customer's
// admins, of either domain, administer both, and both see the customer's
// resources.
func (s *Server) CreateSecondaryDomain(domain, admin, primary string) error {
	if strings.TrimSpace(primary) == "" {
		return errors.New("calendaremu: a secondary domain needs its primary domain")
	}
	return s.createDomain(domain, admin, primary)
}

func (s *Server) createDomain(domain, admin, primary string) error {
	domain = strings.ToLower(strings.TrimSpace(domain))
	if domain == "" || emailDomain(admin) != domain {
		return errors.New("calendaremu: the admin must be a user of the domain")
	}
	s.mu.Lock()
	if s.ws.domains[domain] != nil {
		s.mu.Unlock()
		return errors.New("calendaremu: domain exists: " + domain)
	}
	c := &wsCustomer{id: "C0" + strings.ToUpper(randomBase32(5))[:7], rooms: map[string]*wsRoom{}}
	if primary != "" {
		p := s.ws.domains[strings.ToLower(primary)]
		if p == nil {
			s.mu.Unlock()
			return errors.New("calendaremu: unknown domain " + primary)
		}
		c = p.customer
	}
	s.ws.domains[domain] = &wsDomain{name: domain, customer: c, users: map[string]*wsUser{}}
	s.mu.Unlock()
	return s.AddDomainUser(admin, true)
}

// customerAdminsLocked lists the active admins of every domain of c.
func (s *Server) customerAdminsLocked(c *wsCustomer) []string {
	var out []string
	for _, d := range s.ws.domains {
		if d.customer != c {
			continue
		}
		for _, u := range d.users {
			if u.admin && !u.deleted {
				out = append(out, u.email)
			}
		}
	}
	return out
}

// AddDomainUser adds a user to the domain of its email (created with a
// primary calendar if new to the emulator). Admins can read the customer's
// resources.
func (s *Server) AddDomainUser(email string, admin bool) error {
	email = strings.ToLower(strings.TrimSpace(email))
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.ws.domains[emailDomain(email)]
	if d == nil {
		return errors.New("calendaremu: no domain for " + email)
	}
	if u := d.users[email]; u != nil && !u.deleted {
		return errors.New("calendaremu: user exists: " + email)
	}
	local, _, _ := strings.Cut(email, "@")
	s.ws.nextUserID++
	d.users[email] = &wsUser{id: strconv.FormatInt(100000000000000000+s.ws.nextUserID, 10), email: email,
		given: local, family: "Test", admin: admin, created: s.tick()}
	s.ensureUserLocked(email)
	if admin {
		for _, r := range d.customer.rooms {
			s.grantLocked(r.email, email, "owner")
		}
		s.listChangedLocked(email)
	}
	s.log.Info("directory user added", "user", email, "admin", admin)
	return nil
}

// SuspendUser suspends (or reinstates) a directory user: suspended users
// are listed with suspended=true and cannot be impersonated (invalid_grant).
func (s *Server) SuspendUser(email string, suspended bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, u := s.wsUserLocked(email)
	if u == nil || u.deleted {
		return errors.New("calendaremu: no directory user " + email)
	}
	u.suspended = suspended
	s.log.Info("directory user suspended", "user", email, "suspended", suspended)
	return nil
}

// DeleteDomainUser deletes a directory user: gone from users.list (listed
// by showDeleted=true), cannot be impersonated. Its calendars stay (Google
// keeps them for a while; calsync must not depend on when they go).
func (s *Server) DeleteDomainUser(email string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, u := s.wsUserLocked(email)
	if u == nil || u.deleted {
		return errors.New("calendaremu: no directory user " + email)
	}
	u.deleted, u.deletedAt = true, s.tick()
	s.log.Info("directory user deleted", "user", email)
	return nil
}

// SetOrgUnit moves a directory user to an organisational unit ("/sales").
func (s *Server) SetOrgUnit(email, orgUnit string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, u := s.wsUserLocked(email)
	if u == nil || u.deleted {
		return errors.New("calendaremu: no directory user " + email)
	}
	u.orgUnit = strings.TrimSuffix(orgUnit, "/")
	return nil
}

// NarrowListing makes users.list in domain show only the users of one
// organisational unit and its children, as Google does for an admin whose
// role an administrator narrowed to that unit: the listing still succeeds,
// it just covers less. "" lifts the limit.
func (s *Server) NarrowListing(domain, orgUnit string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.ws.domains[strings.ToLower(domain)]
	if d == nil {
		return errors.New("calendaremu: no domain " + domain)
	}
	d.listedOU = strings.TrimSuffix(orgUnit, "/")
	return nil
}

// SetDelegation limits domain-wide delegation in a domain to the given
// clients (service-account emails, the JWT's iss); none given: no client
// may impersonate anyone there (unauthorized_client), as when an admin
// removes the client's grant.
func (s *Server) SetDelegation(domain string, clients ...string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.ws.domains[strings.ToLower(domain)]
	if d == nil {
		return errors.New("calendaremu: unknown domain " + domain)
	}
	d.delegation = map[string]bool{}
	for _, c := range clients {
		d.delegation[c] = true
	}
	return nil
}

// Room is a resource calendar as AddRoom or AddResource made it.
type Room struct {
	ResourceID string `json:"resourceId"`
	Email      string `json:"email"` // its calendar id
	Name       string `json:"name"`
	Category   string `json:"category"` // resourceCategory
}

// AddRoom creates a meeting room (CONFERENCE_ROOM) of domain's customer: a
// resource with a calendar the customer's admins can read.
func (s *Server) AddRoom(domain, name string) (Room, error) {
	return s.AddResource(domain, name, CategoryRoom)
}

// AddResource creates a calendar resource of domain's customer in a
// category (CategoryRoom, CategoryOther for equipment, or Google's legacy
// CATEGORY_UNKNOWN), with a calendar the customer's admins can read.
func (s *Server) AddResource(domain, name, category string) (Room, error) {
	kind := map[string]string{CategoryRoom: "Conference room", CategoryOther: "Equipment", "CATEGORY_UNKNOWN": "Other"}[category]
	if kind == "" {
		return Room{}, errors.New("calendaremu: unknown resource category " + category)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.ws.domains[strings.ToLower(domain)]
	if d == nil {
		return Room{}, errors.New("calendaremu: unknown domain " + domain)
	}
	s.ws.nextUserID++
	r := &wsRoom{id: strconv.FormatInt(s.ws.nextUserID, 10), name: name, category: category, kind: kind,
		email: "c_" + randomBase32(16) + "@resource.calendar.google.com", etag: etagFor(s.tick())}
	if category == CategoryRoom {
		r.capacity = 8
	}
	d.customer.rooms[r.id] = r
	c := newCalendar(r.email, r.email, name, s.opts.TimeZone, false, s.tick(), s.rng.Uint32())
	s.calendars[r.email] = c
	for _, a := range s.customerAdminsLocked(d.customer) {
		s.grantLocked(r.email, a, "owner")
		s.listChangedLocked(a)
	}
	s.log.Info("resource added", "domain", d.name, "room", r.email, "category", category)
	return Room{ResourceID: r.id, Email: r.email, Name: name, Category: category}, nil
}

// DeleteRoom deletes a resource of domain's customer
// (resources.calendars.delete): gone from resources.calendars.list, and its
// calendar is deleted (its channels stop, it leaves every calendar list).
func (s *Server) DeleteRoom(domain, resourceID string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.ws.domains[strings.ToLower(domain)]
	if d == nil || d.customer.rooms[resourceID] == nil {
		return errors.New("calendaremu: unknown room " + resourceID)
	}
	r := d.customer.rooms[resourceID]
	delete(d.customer.rooms, resourceID)
	if c := s.calendars[r.email]; c != nil {
		delete(s.calendars, r.email)
		for _, ch := range s.channels {
			if ch.cal == c {
				ch.stopLocked()
			}
		}
	}
	s.listsChangedLocked(r.email, "")
	delete(s.ws.acl, r.email)
	s.log.Info("room deleted", "domain", d.name, "room", r.email)
	return nil
}

func (s *Server) grantLocked(calendarID, user, role string) {
	if s.ws.acl[calendarID] == nil {
		s.ws.acl[calendarID] = map[string]string{}
	}
	s.ws.acl[calendarID][user] = role
}

// Wire types (admin-api.json schemas User, Users, CalendarResource,
// CalendarResources; only the fields the emulator fills).
type dirUserName struct {
	GivenName  string `json:"givenName"`
	FamilyName string `json:"familyName"`
	FullName   string `json:"fullName"`
}

type dirEmail struct {
	Address string `json:"address"`
	Primary bool   `json:"primary,omitempty"`
}

type dirUser struct {
	Kind                       string      `json:"kind"`
	ID                         string      `json:"id"`
	Etag                       string      `json:"etag"`
	PrimaryEmail               string      `json:"primaryEmail"`
	Name                       dirUserName `json:"name"`
	IsAdmin                    bool        `json:"isAdmin"`
	IsDelegatedAdmin           bool        `json:"isDelegatedAdmin"`
	LastLoginTime              string      `json:"lastLoginTime"`
	CreationTime               string      `json:"creationTime"`
	DeletionTime               string      `json:"deletionTime,omitempty"`
	AgreedToTerms              bool        `json:"agreedToTerms"`
	Suspended                  bool        `json:"suspended"`
	SuspensionReason           string      `json:"suspensionReason,omitempty"`
	Archived                   bool        `json:"archived"`
	ChangePasswordAtNextLogin  bool        `json:"changePasswordAtNextLogin"`
	IPWhitelisted              bool        `json:"ipWhitelisted"`
	Emails                     []dirEmail  `json:"emails"`
	CustomerID                 string      `json:"customerId"`
	OrgUnitPath                string      `json:"orgUnitPath"`
	IsMailboxSetup             bool        `json:"isMailboxSetup"`
	IsEnrolledIn2Sv            bool        `json:"isEnrolledIn2Sv"`
	IsEnforcedIn2Sv            bool        `json:"isEnforcedIn2Sv"`
	IncludeInGlobalAddressList bool        `json:"includeInGlobalAddressList"`
}

type dirUsers struct {
	Kind          string    `json:"kind"`
	Etag          string    `json:"etag"`
	Users         []dirUser `json:"users,omitempty"`
	NextPageToken string    `json:"nextPageToken,omitempty"`
}

type dirResource struct {
	Kind                  string `json:"kind"`
	Etags                 string `json:"etags"`
	ResourceID            string `json:"resourceId"`
	ResourceName          string `json:"resourceName"`
	GeneratedResourceName string `json:"generatedResourceName"`
	ResourceType          string `json:"resourceType"`
	ResourceEmail         string `json:"resourceEmail"`
	ResourceCategory      string `json:"resourceCategory"`
	Capacity              int    `json:"capacity,omitempty"`
}

type dirResources struct {
	Kind          string        `json:"kind"`
	Etag          string        `json:"etag"`
	Items         []dirResource `json:"items,omitempty"`
	NextPageToken string        `json:"nextPageToken,omitempty"`
}

func (u *wsUser) body(d *wsDomain) dirUser {
	b := dirUser{Kind: "admin#directory#user", ID: u.id, Etag: etagFor(u.created), PrimaryEmail: u.email,
		Name:    dirUserName{GivenName: u.given, FamilyName: u.family, FullName: u.given + " " + u.family},
		IsAdmin: u.admin, LastLoginTime: "1970-01-01T00:00:00.000Z", CreationTime: fmtUpdated(u.created),
		AgreedToTerms: true, Suspended: u.suspended, Emails: []dirEmail{{Address: u.email, Primary: true}},
		CustomerID: d.customer.id, OrgUnitPath: "/", IsMailboxSetup: true, IncludeInGlobalAddressList: true}
	if u.suspended {
		b.SuspensionReason = "ADMIN"
	}
	if u.deleted {
		b.DeletionTime = fmtUpdated(u.deletedAt)
	}
	return b
}

// directoryRequest is one Directory API call after authentication.
type directoryRequest struct {
	method string
	admin  *wsUser
	domain *wsDomain
	scope  string
}

func errDirForbidden() *apiError {
	return newErr(403, "global", "forbidden", "Not Authorized to access this resource/api")
}

func errDomainNotFound() *apiError { return newErr(404, "global", "notFound", "Domain not found.") }

func (s *Server) serveDirectory(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rest := strings.Trim(strings.TrimPrefix(r.URL.EscapedPath(), DirectoryPath), "/")
	var seg []string
	for _, p := range strings.Split(rest, "/") {
		u, err := url.PathUnescape(p)
		if err != nil {
			writeAPIError(w, errNotFound())
			return
		}
		seg = append(seg, u)
	}
	var method string
	var fn func(rq *request, dr directoryRequest) (any, *apiError)
	var scopes []string
	switch {
	case len(seg) == 1 && seg[0] == "users" && r.Method == "GET":
		method, fn, scopes = "directory.users.list", s.usersList, directoryScopes["users.list"]
	case len(seg) == 4 && seg[0] == "customer" && seg[2] == "resources" && seg[3] == "calendars" && r.Method == "GET":
		method, fn, scopes = "directory.resources.calendars.list", s.resourceCalendarsList,
			directoryScopes["resources.calendars.list"]
	default:
		writeAPIError(w, newErr(501, "global", "notImplemented", "The emulator does not implement "+r.Method+" "+r.URL.Path))
		return
	}
	rq := &request{s: s, r: r, method: method, query: r.URL.Query()}
	if len(seg) == 4 {
		rq.calID = seg[1] // the customer, for fault filters
	}
	body, aerr := s.directoryDispatch(rq, scopes, fn)
	status := 200
	if aerr != nil {
		status = aerr.Code
		writeAPIError(w, aerr)
	} else {
		out, _ := json.Marshal(body)
		w.Header().Set("Content-Type", "application/json; charset=UTF-8")
		_, _ = w.Write(out)
		if s.respHook != nil {
			s.respHook(method, status, out)
		}
	}
	attrs := []slog.Attr{slog.String("method", method), slog.String("user", rq.user), slog.Int("status", status),
		slog.Duration("latency", time.Since(start))}
	if aerr != nil {
		attrs = append(attrs, slog.String("reason", aerr.Reason))
	}
	s.log.LogAttrs(r.Context(), slog.LevelInfo, "directory api call", attrs...)
}

// directoryDispatch authenticates (a token is required), counts, applies
// injected faults, checks scope and admin rights, then runs fn under the lock.
func (s *Server) directoryDispatch(rq *request, scopes []string, fn func(*request, directoryRequest) (any, *apiError)) (any, *apiError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	h := rq.r.Header.Get("Authorization")
	if h == "" {
		s.stats.count(rq.method, "")
		return nil, newErr(401, "global", "required", "Login Required.").at("header", "Authorization")
	}
	scheme, tok, _ := strings.Cut(h, " ")
	at := s.oauth.access[strings.TrimSpace(tok)]
	if !strings.EqualFold(scheme, "Bearer") || at == nil || at.g.revoked || time.Now().After(at.expiry) {
		s.stats.count(rq.method, "")
		return nil, errAuth()
	}
	rq.user = at.g.user
	s.stats.count(rq.method, rq.user)
	if aerr := s.disabledLocked(ServiceDirectory, rq.r.Header.Get("X-Goog-User-Project")); aerr != nil {
		return nil, aerr
	}
	if aerr := s.faultLocked(rq); aerr != nil {
		return nil, aerr
	}
	granted := strings.Fields(at.g.scope)
	if !slices.ContainsFunc(scopes, func(sc string) bool { return slices.Contains(granted, sc) }) {
		return nil, newErr(403, "global", "insufficientPermissions", "Request had insufficient authentication scopes.")
	}
	d, u := s.wsUserLocked(rq.user)
	if u == nil || u.deleted || u.suspended || !u.admin {
		return nil, errDirForbidden()
	}
	return fn(rq, directoryRequest{method: rq.method, admin: u, domain: d})
}

// maxResultsParam reads maxResults (1-500, default 100) as the Directory API does.
func maxResultsParam(q url.Values) (int, *apiError) {
	v := q.Get("maxResults")
	if v == "" {
		return 100, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > 500 {
		return 0, errInvalid(fmt.Sprintf("Invalid value '%s'. Values must be within the range: [1, 500]", v)).at("parameter", "maxResults")
	}
	return n, nil
}

// cursor page tokens: base64url of the last key returned.
func dirPageToken(last string) string { return base64.RawURLEncoding.EncodeToString([]byte(last)) }

func dirPageCursor(q url.Values) (string, *apiError) {
	pt := q.Get("pageToken")
	if pt == "" {
		return "", nil
	}
	b, err := base64.RawURLEncoding.DecodeString(pt)
	if err != nil {
		return "", errInvalidParam("pageToken", pt)
	}
	return string(b), nil
}

// customerOf resolves the customer parameter ("my_customer" or the
// admin's customer id) to the admin's customer: Google answers for all of
// its domains.
func customerOf(customer string, dr directoryRequest) (*wsCustomer, *apiError) {
	switch customer {
	case "my_customer", dr.domain.customer.id:
		return dr.domain.customer, nil
	case "":
		return nil, errBadRequest("Bad Request")
	}
	if strings.Contains(customer, ".") {
		return nil, errBadRequest("Bad Request") // a domain given as a customer id
	}
	return nil, errDirForbidden()
}

func (s *Server) usersList(rq *request, dr directoryRequest) (any, *apiError) {
	q := rq.query
	// The domains listed: one, or every domain of the customer.
	var domains []*wsDomain
	switch dom := strings.ToLower(q.Get("domain")); {
	case dom != "":
		d := s.ws.domains[dom]
		if d == nil {
			return nil, errDomainNotFound()
		}
		if d.customer != dr.domain.customer {
			return nil, errDirForbidden()
		}
		domains = []*wsDomain{d}
	default:
		c, aerr := customerOf(q.Get("customer"), dr)
		if aerr != nil {
			return nil, aerr
		}
		for _, d := range s.ws.domains {
			if d.customer == c {
				domains = append(domains, d)
			}
		}
	}
	maxResults, aerr := maxResultsParam(q)
	if aerr != nil {
		return nil, aerr
	}
	after, aerr := dirPageCursor(q)
	if aerr != nil {
		return nil, aerr
	}
	showDeleted := q.Get("showDeleted") == "true"
	filters := map[string]bool{}
	if query := strings.TrimSpace(q.Get("query")); query != "" {
		for _, term := range strings.Fields(query) {
			name, val, ok := strings.Cut(term, "=")
			if !ok || (name != "isSuspended" && name != "isAdmin") || (val != "true" && val != "false") {
				return nil, errInvalid("Invalid query: '"+term+"' is not supported by the emulator (isSuspended= and isAdmin= are)").at("parameter", "query")
			}
			filters[name] = val == "true"
		}
	}
	desc := strings.EqualFold(q.Get("sortOrder"), "DESCENDING")
	var emails []string
	domainOf := map[string]*wsDomain{}
	for _, d := range domains {
		for e, u := range d.users {
			if u.deleted != showDeleted {
				continue
			}
			if d.listedOU != "" && u.orgUnit != d.listedOU && !strings.HasPrefix(u.orgUnit, d.listedOU+"/") {
				continue
			}
			if v, ok := filters["isSuspended"]; ok && u.suspended != v {
				continue
			}
			if v, ok := filters["isAdmin"]; ok && u.admin != v {
				continue
			}
			emails = append(emails, e)
			domainOf[e] = d
		}
	}
	slices.Sort(emails)
	if desc {
		slices.Reverse(emails)
	}
	out := &dirUsers{Kind: "admin#directory#users", Etag: etagFor(s.lastTick)}
	for _, e := range emails {
		if after != "" && ((!desc && e <= after) || (desc && e >= after)) {
			continue
		}
		if len(out.Users) == maxResults {
			out.NextPageToken = dirPageToken(out.Users[len(out.Users)-1].PrimaryEmail)
			break
		}
		d := domainOf[e]
		out.Users = append(out.Users, d.users[e].body(d))
	}
	return out, nil
}

// resourceCalendarsList lists the customer's calendar resources, whatever
// the domain of the admin asking: rooms (CONFERENCE_ROOM) and the others.
func (s *Server) resourceCalendarsList(rq *request, dr directoryRequest) (any, *apiError) {
	c, aerr := customerOf(rq.calID, dr)
	if aerr != nil {
		return nil, aerr
	}
	q := rq.query
	if q.Get("query") != "" || q.Get("orderBy") != "" {
		return nil, errInvalid("query and orderBy are not supported by the emulator").at("parameter", "query")
	}
	maxResults, aerr := maxResultsParam(q)
	if aerr != nil {
		return nil, aerr
	}
	after, aerr := dirPageCursor(q)
	if aerr != nil {
		return nil, aerr
	}
	var ids []string
	for id := range c.rooms {
		ids = append(ids, id)
	}
	slices.SortFunc(ids, func(a, b string) int {
		ia, _ := strconv.ParseInt(a, 10, 64)
		ib, _ := strconv.ParseInt(b, 10, 64)
		return int(ia - ib)
	})
	out := &dirResources{Kind: "admin#directory#resources#calendars#calendarResourcesList", Etag: etagFor(s.lastTick)}
	afterN, _ := strconv.ParseInt(after, 10, 64)
	for _, id := range ids {
		if n, _ := strconv.ParseInt(id, 10, 64); after != "" && n <= afterN {
			continue
		}
		if len(out.Items) == maxResults {
			out.NextPageToken = dirPageToken(out.Items[len(out.Items)-1].ResourceID)
			break
		}
		r := c.rooms[id]
		out.Items = append(out.Items, dirResource{Kind: "admin#directory#resources#calendars#CalendarResource",
			Etags: r.etag, ResourceID: r.id, ResourceName: r.name, GeneratedResourceName: r.name,
			ResourceType: r.kind, ResourceEmail: r.email, ResourceCategory: r.category, Capacity: r.capacity})
	}
	return out, nil
}
