// Package calclient builds Google Calendar API clients for calsync's calendars.
// A Factory turns a store.Calendar into a *calendar.Service according to the
// calendar's auth mode (adc, delegation, oauth) and puts every request of one
// user identity behind one rate limiter, shared by all calendars and
// goroutines of the process: that is how calsync stays under Google's 600
// requests a minute per user.
package calclient

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/google"
	"golang.org/x/time/rate"
	"google.golang.org/api/calendar/v3"
	"google.golang.org/api/option"

	"github.com/calsync/calsync/shared/config"
	"github.com/calsync/calsync/shared/store"
	"github.com/calsync/calsync/shared/tenant"
)

// Scope covers calsync's calls on events: events.list, events.watch and
// channels.stop all accept calendar.events.readonly (the discovery document
// of calendar/v3 lists the scopes of each method), the narrowest that does.
const Scope = calendar.CalendarEventsReadonlyScope

// ListScope covers calendarList.list and calendarList.watch, which
// enrollment follows an identity's list with (the events scope does not).
const ListScope = calendar.CalendarCalendarlistReadonlyScope

// Scopes are the two read-only scopes every token calsync asks for carries;
// neither reads settings, ACLs or anything else of the user's. Domain-wide
// delegation must authorise exactly these (with the Directory's for
// domains, shared/enroll).
var Scopes = []string{Scope, ListScope}

// ConnectScopes is what `calsync connect` asks a user for: Scopes, and
// openid with email so the token endpoint's ID token says whose grant it is.
var ConnectScopes = append(append([]string{}, Scopes...), "openid", "email")

// DefaultRatePerMinute is the per-user limit when none is configured: under
// Google's 600/min with room for other callers of the same user.
const DefaultRatePerMinute = 500

// RefreshTokens gives the decrypted refresh token of a stored credential
// (implemented by credentials.Vault).
type RefreshTokens interface {
	RefreshToken(ctx context.Context, credentialID string) (string, error)
}

// Options configure a Factory.
type Options struct {
	// Tenants say which subjects each tenant may have read by delegation:
	// a delegation token is signed only for those (the zero Set allows the
	// default tenant alone).
	Tenants tenant.Set
	// Endpoint overrides Google's base URL (e.g. the emulator's
	// "http://127.0.0.1:PORT"; "/calendar/v3/" is appended when missing).
	// With it, adc and delegation calendars send no credentials (the emulator's
	// default user answers); oauth calendars still send their user's token.
	Endpoint string
	// RatePerMinute is each user's request budget (DefaultRatePerMinute if 0).
	RatePerMinute int
	// Burst is how many requests a user may send at once (default 10). Any
	// sliding minute then sees at most Burst+RatePerMinute requests.
	Burst int
	// OAuth is the client (id, secret, token URL) refreshing users' tokens.
	OAuth *oauth2.Config
	// RevokeURL is Google's token revocation endpoint (RevokeGrant).
	RevokeURL string
	// Tokens reads refresh tokens for oauth calendars.
	Tokens RefreshTokens
	// DelegationServiceAccount, when set, is the service account impersonated
	// (IAM Credentials signJwt) with Subject for domain-wide delegation; the
	// caller's ADC needs roles/iam.serviceAccountTokenCreator on it (on Cloud
	// Functions: the function's own account on itself). When empty, delegation
	// needs ADC to be a service-account JSON key (a JWT config with Subject).
	DelegationServiceAccount string
	// DirectoryDelegationServiceAccount signs instead for the Directory
	// API's scopes (DelegatedTokenSource): a second account, authorised for
	// those scopes only, that only the functions reading a directory may
	// impersonate. Empty: DelegationServiceAccount signs for both.
	DirectoryDelegationServiceAccount string
	// IAMEndpoint overrides the IAM Credentials endpoint signJwt goes to
	// (Google's when empty; with Endpoint set, Endpoint's base, where the
	// emulator serves it). The assertion is exchanged at OAuth's token URL.
	IAMEndpoint string
	// Budget, when set, admits every call (SharedBudget: the deployment's
	// quotas across processes); RatePerMinute and Burst then do not apply.
	// Nil: a limiter per identity in this process.
	Budget Budget
	// Base is the underlying transport (http.DefaultTransport if nil).
	Base http.RoundTripper
	// Timeout bounds one HTTP request once it has its call from the budget
	// (default 60 s): the wait for the budget is not the server being slow.
	Timeout time.Duration
	// MaxClients bounds the Calendar clients kept, the most recently used
	// (DefaultMaxClients if 0): OAuth clients hold refresh tokens in clear.
	MaxClients int
}

// FromConfig returns the Options of a function's Calendar config.
func FromConfig(c config.Calendar, tokens RefreshTokens) Options {
	return Options{
		Endpoint:      c.CalendarEndpoint,
		RatePerMinute: c.CalendarRateLimit,
		OAuth: &oauth2.Config{
			ClientID:     c.OAuthClientID,
			ClientSecret: c.OAuthClientSecret,
			Endpoint:     oauth2.Endpoint{AuthURL: c.OAuthAuthURL, TokenURL: c.OAuthTokenURL, AuthStyle: oauth2.AuthStyleInParams},
			Scopes:       ConnectScopes,
		},
		Tokens:                            tokens,
		DelegationServiceAccount:          c.DelegationServiceAccount,
		DirectoryDelegationServiceAccount: c.DirectoryDelegationServiceAccount,
		IAMEndpoint:                       c.IAMEndpoint,
		Tenants:                           tenants(c),
		RevokeURL:                         c.OAuthRevokeURL,
	}
}

// tenants is c's TENANTS (config.Load validated it; a broken one here
// leaves the default tenant alone, refusing every other's delegation).
func tenants(c config.Calendar) tenant.Set {
	s, _ := c.TenantSet("")
	return s
}

// Factory makes Calendar clients; safe for concurrent use. Clients are cached
// per user identity (the MaxClients most recently used), so token caches and
// limiters are shared.
type Factory struct {
	opts Options

	mu       sync.Mutex
	limiters map[string]*rate.Limiter
	services *clientCache
}

// New returns a Factory.
func New(opts Options) *Factory {
	if opts.RatePerMinute <= 0 {
		opts.RatePerMinute = DefaultRatePerMinute
	}
	if opts.Burst <= 0 {
		opts.Burst = 10
	}
	if opts.Base == nil {
		opts.Base = http.DefaultTransport
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 60 * time.Second
	}
	if opts.Endpoint != "" {
		base := strings.TrimSuffix(strings.TrimRight(opts.Endpoint, "/"), "/calendar/v3")
		opts.Endpoint = base + "/calendar/v3/"
		if opts.IAMEndpoint == "" {
			opts.IAMEndpoint = base + "/"
		}
	}
	if opts.MaxClients <= 0 {
		opts.MaxClients = DefaultMaxClients
	}
	return &Factory{opts: opts, limiters: map[string]*rate.Limiter{}, services: newClientCache(opts.MaxClients)}
}

// Limiter returns the shared limiter of a user identity.
func (f *Factory) Limiter(identity string) *rate.Limiter {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.limiterLocked(identity)
}

func (f *Factory) limiterLocked(identity string) *rate.Limiter {
	l, ok := f.limiters[identity]
	if !ok {
		l = rate.NewLimiter(rate.Limit(float64(f.opts.RatePerMinute)/60), f.opts.Burst)
		f.limiters[identity] = l
	}
	return l
}

// Service returns the Calendar client of grant g (cached per grant key:
// the user Google's per-user quota counts against).
func (f *Factory) Service(ctx context.Context, g store.Grant) (*calendar.Service, error) {
	id := g.Key()
	switch g.AuthMode {
	case store.AuthADC, "":
	case store.AuthDelegation:
		if g.Subject == "" {
			return nil, errors.New("calclient: delegation grant without subject")
		}
		if t, ok := f.opts.Tenants.Get(g.Tenant); !ok || !t.MayDelegate(g.Subject) {
			return nil, fmt.Errorf("%w: tenant %q may not read %s (TENANTS: its domains and subjects)", ErrTenantForbidden, tenant.Of(g.Tenant), g.Subject)
		}
	case store.AuthOAuth:
		if g.CredentialID == "" {
			return nil, errors.New("calclient: oauth grant without credentialId")
		}
	default:
		return nil, fmt.Errorf("calclient: unknown auth mode %q", g.AuthMode)
	}
	f.mu.Lock()
	if s, ok := f.services.get(id); ok {
		f.mu.Unlock()
		return s, nil
	}
	var take func(ctx context.Context) error
	if b := f.opts.Budget; b != nil {
		take = func(ctx context.Context) error { return b.Take(ctx, id) }
	} else {
		lim := f.limiterLocked(id)
		take = func(ctx context.Context) error {
			if err := lim.Wait(ctx); err != nil && ctx.Err() == nil {
				// The wait would outlast the deadline: the same as missing it.
				return fmt.Errorf("calclient: user rate limit: %w (%v)", context.DeadlineExceeded, err)
			}
			return ctx.Err()
		}
	}
	f.mu.Unlock()

	ts, err := f.tokenSource(ctx, g)
	if err != nil {
		return nil, err
	}
	var rt http.RoundTripper = &limitedTransport{take: take, base: f.opts.Base, timeout: f.opts.Timeout}
	if ts != nil {
		rt = &authTransport{src: ts, base: rt}
	}
	rt = busyBlocks{base: rt} // busy.go: busy blocks are not events
	// No http.Client timeout: it would count the wait for the call budget
	// (minutes when a quota is spent); limitedTransport times the request.
	opts := []option.ClientOption{option.WithHTTPClient(&http.Client{Transport: rt})}
	if f.opts.Endpoint != "" {
		opts = append(opts, option.WithEndpoint(f.opts.Endpoint))
	}
	svc, err := calendar.NewService(context.WithoutCancel(ctx), opts...)
	if err != nil {
		return nil, fmt.Errorf("calclient: %w", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if s, ok := f.services.get(id); ok { // another goroutine won
		return s, nil
	}
	f.services.put(id, svc)
	return svc, nil
}

// Forget drops the cached client of grant g (after its credential changed
// or was revoked); the limiter stays.
func (f *Factory) Forget(g store.Grant) {
	f.mu.Lock()
	f.services.remove(g.Key())
	f.mu.Unlock()
}

// tokenSource returns the credentials of g, or nil to send none (emulator).
func (f *Factory) tokenSource(ctx context.Context, g store.Grant) (*cachingSource, error) {
	// Token sources outlive the request that made them.
	bg := context.WithoutCancel(ctx)
	switch g.AuthMode {
	case store.AuthOAuth:
		if f.opts.Tokens == nil || f.opts.OAuth == nil {
			return nil, errors.New("calclient: oauth calendars need a credential store and an OAuth client")
		}
		refresh, err := f.opts.Tokens.RefreshToken(ctx, g.CredentialID)
		if err != nil {
			return nil, err
		}
		cfg := f.opts.OAuth
		return newCachingSource(func() (*oauth2.Token, error) {
			// A fresh source each time: a forced refresh after a 401 must reach
			// the token endpoint, not a cached access token.
			return cfg.TokenSource(bg, &oauth2.Token{RefreshToken: refresh}).Token()
		}), nil
	case store.AuthDelegation:
		ts, err := f.DelegatedTokenSource(bg, g.Subject, Scopes...)
		if err != nil || ts == nil {
			return nil, err
		}
		return newCachingSource(ts.Token), nil
	default: // adc
		if f.opts.Endpoint != "" {
			return nil, nil
		}
		ts, err := google.DefaultTokenSource(bg, Scopes...)
		if err != nil {
			return nil, fmt.Errorf("calclient: application default credentials: %w", err)
		}
		return newCachingSource(ts.Token), nil
	}
}

// DelegatedTokenSource impersonates subject by domain-wide delegation with
// scopes (the Calendar's, or the Directory's for shared/enroll's domains):
// through IAM Credentials signJwt and the JWT-bearer grant when a delegation
// service account is configured (works on Cloud Functions, no key), else
// with a JWT config from an ADC service-account key file. The account is the
// scopes' own (delegationAccount): the Directory's scopes are signed by
// DirectoryDelegationServiceAccount when set. Against the emulator (Endpoint
// set) with no service account configured, the emulator's own client
// (EmulatorDelegationClient) signs at the emulator's signJwt, so each subject
// acts as itself there; with no token URL it is nil: no credentials, the
// emulator's default user.
func (f *Factory) DelegatedTokenSource(ctx context.Context, subject string, scopes ...string) (oauth2.TokenSource, error) {
	sa, err := f.delegationAccount(scopes)
	if err != nil {
		return nil, err
	}
	tokenURL := ""
	if f.opts.OAuth != nil {
		tokenURL = f.opts.OAuth.Endpoint.TokenURL
	}
	if f.opts.Endpoint != "" && sa == "" {
		if tokenURL == "" {
			return nil, nil
		}
		sa = EmulatorDelegationClient
	}
	if sa != "" {
		// Token requests are not Calendar calls: no rate limit on them.
		client := &http.Client{Transport: f.opts.Base, Timeout: f.opts.Timeout}
		ts, err := newDelegatedSource(ctx, sa, subject, scopes, f.opts.IAMEndpoint, f.opts.Endpoint != "", tokenURL, client)
		if err != nil {
			return nil, err
		}
		return ts, nil
	}
	creds, err := google.FindDefaultCredentialsWithParams(ctx, google.CredentialsParams{Scopes: scopes, Subject: subject})
	if err != nil {
		return nil, fmt.Errorf("calclient: delegation: %w", err)
	}
	var kind struct {
		Type string `json:"type"`
	}
	if len(creds.JSON) == 0 || json.Unmarshal(creds.JSON, &kind) != nil || kind.Type != "service_account" {
		// Metadata-server credentials would silently ignore Subject.
		return nil, errors.New("calclient: delegation needs DELEGATION_SERVICE_ACCOUNT or a service-account key as ADC")
	}
	return creds.TokenSource, nil
}

// directoryScopePrefix begins every scope of the Admin SDK Directory API
// (shared/enroll DirectoryScopes are two of them).
const directoryScopePrefix = "https://www.googleapis.com/auth/admin.directory."

// delegationAccount is the service account that signs for scopes: each API
// has its own, which a Workspace admin authorises for that API's scopes only
// (Google checks the signing client id's authorised scopes), so a token
// mixing both APIs' scopes is refused here rather than by Google.
func (f *Factory) delegationAccount(scopes []string) (string, error) {
	dir := 0
	for _, s := range scopes {
		if strings.HasPrefix(s, directoryScopePrefix) {
			dir++
		}
	}
	switch {
	case dir == 0:
		return f.opts.DelegationServiceAccount, nil
	case dir < len(scopes):
		return "", fmt.Errorf("calclient: delegation: %q mixes the Directory's scopes with others; each API has its own delegation account", scopes)
	case f.opts.DirectoryDelegationServiceAccount != "":
		return f.opts.DirectoryDelegationServiceAccount, nil
	}
	return f.opts.DelegationServiceAccount, nil
}

// EmulatorDelegationClient is the service account (JWT iss) delegation
// against the emulator signs as when none is configured.
const EmulatorDelegationClient = "calsync-emulator@calsync.iam.gserviceaccount.com"

// cachingSource caches an access token and can be told to drop it.
type cachingSource struct {
	fetch func() (*oauth2.Token, error)
	mu    sync.Mutex
	tok   *oauth2.Token
}

func newCachingSource(fetch func() (*oauth2.Token, error)) *cachingSource {
	return &cachingSource{fetch: fetch}
}

func (c *cachingSource) token(force bool, stale string) (*oauth2.Token, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if force && c.tok != nil && c.tok.AccessToken != stale {
		force = false // another request refreshed it already
	}
	if !force && c.tok.Valid() {
		return c.tok, nil
	}
	t, err := c.fetch()
	if err != nil {
		return nil, err
	}
	c.tok = t
	return t, nil
}

// authTransport adds the bearer token and, on a 401, refreshes the token once
// and retries: a 401 that survives a refresh, or a refresh answered
// invalid_grant, is a dead grant (see IsAuthRevoked).
type authTransport struct {
	src  *cachingSource
	base http.RoundTripper
}

func (t *authTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	tok, err := t.src.token(false, "")
	if err != nil {
		closeBody(req)
		return nil, err
	}
	resp, err := t.base.RoundTrip(withToken(req, tok))
	if err != nil || resp.StatusCode != http.StatusUnauthorized {
		return resp, err
	}
	if req.Body != nil && req.GetBody == nil {
		return resp, nil // cannot replay the body
	}
	retry := req.Clone(req.Context())
	if req.GetBody != nil {
		if retry.Body, err = req.GetBody(); err != nil {
			return resp, nil
		}
	}
	tok2, err := t.src.token(true, tok.AccessToken)
	if err != nil {
		resp.Body.Close()
		return nil, err
	}
	resp.Body.Close()
	return t.base.RoundTrip(withToken(retry, tok2))
}

func withToken(req *http.Request, tok *oauth2.Token) *http.Request {
	r := req.Clone(req.Context())
	tok.SetAuthHeader(r)
	return r
}

func closeBody(req *http.Request) {
	if req.Body != nil {
		req.Body.Close()
	}
}

// limitedTransport takes one call from the user's budget (or limiter)
// before every request, then bounds the request itself by timeout.
type limitedTransport struct {
	take    func(ctx context.Context) error
	base    http.RoundTripper
	timeout time.Duration
}

// errRequestTimeout: the server took longer than Options.Timeout (a network
// timeout: retryable), as opposed to the caller's own deadline.
type errRequestTimeout struct{ after time.Duration }

func (e errRequestTimeout) Error() string {
	return fmt.Sprintf("calclient: no answer within %s", e.after)
}
func (errRequestTimeout) Timeout() bool   { return true }
func (errRequestTimeout) Temporary() bool { return true }

func (t *limitedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if err := t.take(req.Context()); err != nil {
		closeBody(req)
		if cerr := req.Context().Err(); cerr != nil {
			return nil, cerr
		}
		return nil, err
	}
	if t.timeout <= 0 {
		return t.base.RoundTrip(req)
	}
	ctx, cancel := context.WithTimeout(req.Context(), t.timeout)
	resp, err := t.base.RoundTrip(req.WithContext(ctx))
	if err != nil {
		timedOut := ctx.Err() != nil && req.Context().Err() == nil
		cancel()
		if timedOut {
			return nil, errRequestTimeout{t.timeout}
		}
		return nil, err
	}
	resp.Body = &cancelOnClose{ReadCloser: resp.Body, cancel: cancel}
	return resp, nil
}

// cancelOnClose ends a request's timeout when its body is closed.
type cancelOnClose struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (b *cancelOnClose) Close() error {
	err := b.ReadCloser.Close()
	b.cancel()
	return err
}
