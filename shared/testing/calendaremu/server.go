// Package calendaremu is an in-process emulator of the Google Calendar API v3
// (events, calendars, calendarList, push channels) plus Google's OAuth2 token
// endpoint, faithful enough that code passing against it works against Google.
// See README.md for what is supported and the control API.
package calendaremu

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base32"
	"encoding/json"
	"log/slog"
	mrand "math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// DefaultUser is the user a request without an Authorization header acts as.
const DefaultUser = "default@calsync.test"

// APIPath is where the Calendar v3 surface is served.
const APIPath = "/calendar/v3/"

// Options configure a Server. The zero value is usable.
type Options struct {
	Logger *slog.Logger // nil: discard
	// DefaultUser is the identity of requests without Authorization (DefaultUser if empty).
	DefaultUser string
	// AutoApprove makes /authorize with login_hint approve at once, without
	// the consent page (tests without a browser; see authorize.go).
	AutoApprove bool
	// AllowUnknownTokens maps bearer tokens the emulator did not issue (e.g. a
	// service account's) to DefaultUser instead of answering 401.
	AllowUnknownTokens bool
	// MaxTTL caps channel lifetimes (default 604800 s, Google's default TTL).
	MaxTTL time.Duration
	// QuotaPerMinute enables per-user quota (sliding minute) when > 0; Google's is 600.
	QuotaPerMinute int
	// ProjectQuotaPerMinute enables the per-project quota (sliding minute)
	// when > 0; Google's is 10,000. The emulator is one project.
	ProjectQuotaPerMinute int
	// QuotaTooManyRequests answers quota rejections 429 rateLimitExceeded
	// instead of 403 (Google sends either).
	QuotaTooManyRequests bool
	// PushRetryBaseDelay is the first retry delay after a 5xx (default 1 s, doubled per attempt).
	PushRetryBaseDelay time.Duration
	// PushMaxAttempts bounds delivery attempts of one message (default 5).
	PushMaxAttempts int
	// PushTimeout bounds one delivery attempt (default 10 s).
	PushTimeout time.Duration
	// MessageNumberJump: message numbers grow by a random 1..N (default 3).
	MessageNumberJump int
	// AccessTokenTTL is the lifetime of issued access tokens (default 1 h).
	AccessTokenTTL time.Duration
	// TimeZone of users' primary calendars (default "UTC").
	TimeZone string
	// Seed seeds the randomness of message numbers and notification faults
	// (0: random), and picks the short pages (paging.go; 0 is one seed there).
	Seed uint64
	// HTTPClient delivers notifications (default: a plain client).
	HTTPClient *http.Client
	// Paging: short and empty pages, page token lifetime (paging.go);
	// the zero value means DefaultPaging.
	Paging Paging
}

// Server is the emulator. It is an http.Handler; all methods are safe for concurrent use.
type Server struct {
	opts Options
	log  *slog.Logger

	mu           sync.Mutex
	users        map[string]*user
	calendars    map[string]*calData
	channels     map[string]*channel
	lastTick     time.Time
	rng          *mrand.Rand
	faults       []*Fault
	nfaults      NotificationFaults
	quota        map[string]*window // per user: accepted calls of the last minute
	projectQuota map[string]*window // per quota project ("" = the default)
	stats        statsData
	oauth        oauthState
	deleg        delegationState
	// visibility delays changes in incremental lists (SetVisibilityDelay).
	visibility time.Duration
	signKey    *rsa.PrivateKey // signJwt's key (delegation.go), made on first use
	signKeyID  string
	ws         workspace    // calendar lists, sharing, Workspace domains (acl.go)
	project    projectState // enabled APIs, consent (project.go)

	done     chan struct{}
	baseCtx  context.Context // cancelled by Close: aborts deliveries in flight
	cancel   context.CancelFunc
	closeOne sync.Once
	wg       sync.WaitGroup

	respHook func(method string, status int, body []byte) // tests: observe responses
}

// New returns a Server with the default user and its primary calendar.
func New(opts Options) *Server {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.DefaultUser == "" {
		opts.DefaultUser = DefaultUser
	}
	if opts.MaxTTL <= 0 {
		opts.MaxTTL = 604800 * time.Second
	}
	if opts.PushRetryBaseDelay <= 0 {
		opts.PushRetryBaseDelay = time.Second
	}
	if opts.PushMaxAttempts <= 0 {
		opts.PushMaxAttempts = 5
	}
	if opts.PushTimeout <= 0 {
		opts.PushTimeout = 10 * time.Second
	}
	if opts.MessageNumberJump <= 0 {
		opts.MessageNumberJump = 3
	}
	if opts.AccessTokenTTL <= 0 {
		opts.AccessTokenTTL = time.Hour
	}
	if opts.TimeZone == "" {
		opts.TimeZone = "UTC"
	}
	if opts.HTTPClient == nil {
		opts.HTTPClient = &http.Client{}
	}
	if opts.Paging == (Paging{}) {
		opts.Paging = DefaultPaging
	}
	seed := opts.Seed
	if seed == 0 {
		seed = mrand.Uint64()
	}
	s := &Server{opts: opts, log: opts.Logger, rng: mrand.New(mrand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), done: make(chan struct{})}
	s.baseCtx, s.cancel = context.WithCancel(context.Background())
	s.resetLocked()
	return s
}

// resetLocked drops all state and recreates the default user. Caller holds mu
// (or has exclusive access).
func (s *Server) resetLocked() {
	for _, ch := range s.channels {
		ch.stopLocked()
	}
	s.users = map[string]*user{}
	s.calendars = map[string]*calData{}
	s.channels = map[string]*channel{}
	s.faults = nil
	s.nfaults = NotificationFaults{}
	s.stats = newStats()
	s.resetQuotaLocked()
	s.oauth = newOAuthState()
	s.deleg = newDelegationState()
	s.visibility = 0
	s.ws = newWorkspace()
	s.project = newProjectState()
	s.ensureUserLocked(s.opts.DefaultUser)
}

// Close stops notification delivery. The handler keeps answering.
func (s *Server) Close() {
	s.closeOne.Do(func() {
		s.mu.Lock()
		for _, ch := range s.channels {
			ch.stopLocked()
		}
		s.mu.Unlock()
		close(s.done)
		s.cancel()
	})
	s.wg.Wait()
}

// tick returns the server time, strictly increasing at microsecond
// granularity so every change gets its own etag.
func (s *Server) tick() time.Time {
	now := time.Now().UTC().Truncate(time.Microsecond)
	if !now.After(s.lastTick) {
		now = s.lastTick.Add(time.Microsecond)
	}
	s.lastTick = now
	return now
}

var b32hex = base32.HexEncoding.WithPadding(base32.NoPadding)

// randomBase32 returns a random lowercase base32hex string, like Google's ids.
func randomBase32(nbytes int) string {
	b := make([]byte, nbytes)
	_, _ = rand.Read(b)
	return strings.ToLower(b32hex.EncodeToString(b))
}

// ServeHTTP dispatches to the Calendar API, the OAuth endpoints and the control API.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p := r.URL.Path
	switch {
	case strings.HasPrefix(p, APIPath):
		s.serveAPI(w, r)
	case p == "/token":
		s.serveToken(w, r)
	case p == "/authorize" || p == "/o/oauth2/auth" || p == "/o/oauth2/v2/auth":
		s.serveAuthorize(w, r)
	case p == "/revoke" || p == "/o/oauth2/revoke":
		s.serveRevoke(w, r)
	case strings.HasPrefix(p, iamPath):
		s.serveIAM(w, r)
	case strings.HasPrefix(p, controlPath):
		s.serveControl(w, r)
	case strings.HasPrefix(p, DirectoryPath):
		s.serveDirectory(w, r)
	default:
		writeAPIError(w, errNotFound())
	}
}

// request is the context of one API call.
type request struct {
	s      *Server
	r      *http.Request
	method string // e.g. "events.list"
	user   string
	calID  string // raw path value (may be "primary")
	evID   string
	query  url.Values
}

type handlerFunc func(rq *request) (int, any, *apiError)

type route struct {
	method string
	fn     handlerFunc
}

// routeAPI maps path segments after /calendar/v3/ to a method.
func (s *Server) routeAPI(httpMethod string, seg []string) (route, string, string, bool) {
	n := len(seg)
	switch {
	case n >= 3 && seg[0] == "users" && seg[1] == "me" && seg[2] == "calendarList":
		return s.routeCalendarList(httpMethod, seg) // calendarlist.go
	case n == 1 && seg[0] == "calendars" && httpMethod == "POST":
		return route{"calendars.insert", s.calendarsInsertListed}, "", "", true
	case n == 2 && seg[0] == "channels" && seg[1] == "stop" && httpMethod == "POST":
		return route{"channels.stop", s.channelsStop}, "", "", true
	case n == 2 && seg[0] == "calendars":
		switch httpMethod {
		case "GET":
			return route{"calendars.get", s.calendarsGet}, seg[1], "", true
		case "DELETE":
			return route{"calendars.delete", s.calendarsDeleteListed}, seg[1], "", true
		}
	case n == 3 && seg[0] == "calendars" && seg[2] == "events":
		switch httpMethod {
		case "GET":
			return route{"events.list", s.eventsList}, seg[1], "", true
		case "POST":
			return route{"events.insert", s.eventsInsert}, seg[1], "", true
		}
	case n == 4 && seg[0] == "calendars" && seg[2] == "events" && seg[3] == "watch" && httpMethod == "POST":
		return route{"events.watch", s.eventsWatch}, seg[1], "", true
	case n == 4 && seg[0] == "calendars" && seg[2] == "events":
		switch httpMethod {
		case "GET":
			return route{"events.get", s.eventsGet}, seg[1], seg[3], true
		case "PUT":
			return route{"events.update", s.eventsUpdate}, seg[1], seg[3], true
		case "PATCH":
			return route{"events.patch", s.eventsPatch}, seg[1], seg[3], true
		case "DELETE":
			return route{"events.delete", s.eventsDelete}, seg[1], seg[3], true
		}
	case n == 5 && seg[0] == "calendars" && seg[2] == "events" && seg[4] == "instances" && httpMethod == "GET":
		return route{"events.instances", s.eventsInstances}, seg[1], seg[3], true
	}
	return route{}, "", "", false
}

func (s *Server) serveAPI(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	raw := strings.Trim(strings.TrimPrefix(r.URL.EscapedPath(), APIPath), "/")
	var seg []string
	for _, p := range strings.Split(raw, "/") {
		u, err := url.PathUnescape(p)
		if err != nil {
			writeAPIError(w, errNotFound())
			return
		}
		seg = append(seg, u)
	}
	rt, calID, evID, ok := s.routeAPI(r.Method, seg)
	if !ok {
		e := newErr(501, "global", "notImplemented", "The emulator does not implement "+r.Method+" "+r.URL.Path)
		writeAPIError(w, e)
		return
	}
	rq := &request{s: s, r: r, method: rt.method, calID: calID, evID: evID, query: r.URL.Query()}
	status, body, aerr := s.dispatch(rq, rt.fn)
	var out []byte
	if aerr != nil {
		status = aerr.Code
		out = writeAPIError(w, aerr)
	} else if body == nil {
		w.WriteHeader(status)
	} else {
		out, _ = json.Marshal(body)
		w.Header().Set("Content-Type", "application/json; charset=UTF-8")
		w.WriteHeader(status)
		_, _ = w.Write(out)
	}
	if s.respHook != nil {
		s.respHook(rt.method, status, out)
	}
	attrs := []slog.Attr{slog.String("method", rt.method), slog.String("user", rq.user), slog.Int("status", status),
		slog.Duration("latency", time.Since(start))}
	if calID != "" {
		attrs = append(attrs, slog.String("calendar", calID))
	}
	if aerr != nil {
		attrs = append(attrs, slog.String("reason", aerr.Reason))
	}
	s.log.LogAttrs(r.Context(), slog.LevelInfo, "calendar api call", attrs...)
}

// dispatch authenticates, counts, applies injected faults and quota, then runs fn.
func (s *Server) dispatch(rq *request, fn handlerFunc) (int, any, *apiError) {
	s.mu.Lock()
	user, scope, aerr := s.authenticateLocked(rq.r.Header.Get("Authorization"))
	rq.user = user
	s.stats.count(rq.method, user)
	if aerr == nil {
		aerr = s.disabledLocked(ServiceCalendar, rq.r.Header.Get("X-Goog-User-Project"))
	}
	if aerr == nil {
		aerr = scopeLocked(rq.method, scope)
	}
	if aerr == nil {
		aerr = s.faultLocked(rq)
	}
	if aerr == nil {
		aerr = s.quotaLocked(rq.r.Header.Get("X-Goog-User-Project"), user)
	}
	s.mu.Unlock()
	if aerr != nil {
		return 0, nil, aerr
	}
	return fn(rq)
}

// calendarLocked resolves a calendar id ("primary" included) the user may access.
func (s *Server) calendarLocked(user, id string) (*calData, *apiError) {
	if id == "primary" {
		id = user
	}
	c := s.calendars[id]
	if c == nil || !s.canSeeLocked(c, user) {
		return nil, errNotFound()
	}
	return c, nil
}

// Start runs a Server on a loopback listener for a test and stops it at
// cleanup. It returns the server and its base URL (e.g. http://127.0.0.1:PORT);
// the Calendar endpoint is baseURL+APIPath.
func Start(tb TB, opts Options) (*Server, string) {
	tb.Helper()
	s := New(opts)
	base, stop, err := s.Listen(context.Background(), "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("calendaremu: listen: %v", err)
	}
	tb.Cleanup(func() { stop(); s.Close() })
	return s, base
}

// TB is the part of testing.TB that Start needs (so this package does not import testing).
type TB interface {
	Helper()
	Fatalf(format string, args ...any)
	Cleanup(func())
}
