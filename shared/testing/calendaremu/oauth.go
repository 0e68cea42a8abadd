package calendaremu

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// OAuth2 grants and tokens: Google's token endpoint (authorization_code and
// refresh_token grants) and its revoke endpoint. The authorization endpoint
// and its consent page are in authorize.go. A revoked grant answers
// invalid_grant at /token and 401 authError on API calls.

type user struct {
	email  string
	grants []*grant
	// A suspended or deleted Workspace user: delegation to it answers
	// invalid_grant and its tokens stop working (delegation.go).
	suspended, deleted bool
}

type grant struct {
	user    string
	client  string // the OAuth client it was granted to ("" for seeded grants)
	refresh string // "" without offline access
	scope   string // space-separated
	// any: no scope was asked for (an /authorize without one): every method
	// is open, as for requests without a token.
	any     bool
	revoked bool
	// delegatedBy is the service account of a domain-wide delegation grant.
	delegatedBy string
}

type accessToken struct {
	g      *grant
	expiry time.Time
}

type authCode struct {
	user, client, redirect, challenge, method, scope string
	any                                              bool // no scope asked for
	offline, forceConsent                            bool // access_type=offline, prompt=consent
	expiry                                           time.Time
}

type oauthState struct {
	codes   map[string]*authCode
	refresh map[string]*grant
	access  map[string]*accessToken
	clients map[string]*OAuthClient    // RegisterClient (clients.go)
	pending map[string]*pendingConsent // consent pages awaiting an answer (authorize.go)
}

func newOAuthState() oauthState {
	return oauthState{codes: map[string]*authCode{}, refresh: map[string]*grant{}, access: map[string]*accessToken{},
		clients: map[string]*OAuthClient{}, pending: map[string]*pendingConsent{}}
}

// ensureUserLocked creates a user and its primary calendar (id = email).
func (s *Server) ensureUserLocked(email string) *user {
	if u := s.users[email]; u != nil {
		return u
	}
	u := &user{email: email}
	s.users[email] = u
	if s.calendars[email] == nil {
		s.calendars[email] = newCalendar(email, email, email, s.opts.TimeZone, true, s.tick(), s.rng.Uint32())
	}
	return u
}

// anyScope stands for "every scope" (requests without a token).
const anyScope = "*"

// authenticateLocked returns the user a request acts as and the scopes of
// its token (anyScope for requests without one).
func (s *Server) authenticateLocked(h string) (string, string, *apiError) {
	if h == "" {
		return s.opts.DefaultUser, anyScope, nil
	}
	scheme, tok, _ := strings.Cut(h, " ")
	if !strings.EqualFold(scheme, "Bearer") || tok == "" {
		return "", "", errAuth()
	}
	at := s.oauth.access[strings.TrimSpace(tok)]
	if at == nil {
		if s.opts.AllowUnknownTokens {
			return s.opts.DefaultUser, anyScope, nil
		}
		return "", "", errAuth()
	}
	if u := s.users[at.g.user]; at.g.revoked || time.Now().After(at.expiry) || (u != nil && (u.suspended || u.deleted)) {
		return at.g.user, "", errAuth()
	}
	if at.g.any {
		return at.g.user, anyScope, nil
	}
	return at.g.user, at.g.scope, nil
}

// Token is what IssueToken returns.
type Token struct {
	AccessToken  string    `json:"access_token"`
	RefreshToken string    `json:"refresh_token"`
	Expiry       time.Time `json:"expiry"`
}

// IssueToken creates a grant for user (created if needed) and returns its tokens,
// as if the user had completed the consent flow.
func (s *Server) IssueToken(email string) Token {
	s.mu.Lock()
	defer s.mu.Unlock()
	g := s.newGrantLocked(email, "", "https://www.googleapis.com/auth/calendar")
	at, exp := s.newAccessLocked(g)
	return Token{AccessToken: at, RefreshToken: g.refresh, Expiry: exp}
}

func (s *Server) newGrantLocked(email, refresh, scope string) *grant {
	u := s.ensureUserLocked(email)
	if refresh == "" {
		refresh = "1//" + randomBase32(30)
	}
	g := &grant{user: email, refresh: refresh, scope: scope}
	u.grants = append(u.grants, g)
	s.oauth.refresh[refresh] = g
	return g
}

func (s *Server) newAccessLocked(g *grant) (string, time.Time) {
	tok := "ya29." + randomBase32(40)
	exp := time.Now().Add(s.opts.AccessTokenTTL)
	s.oauth.access[tok] = &accessToken{g: g, expiry: exp}
	return tok, exp
}

// CreateUser creates a user with a primary calendar. A non-empty refreshToken
// becomes a valid grant for that user (for tests that seed stored tokens).
func (s *Server) CreateUser(email, refreshToken string) error {
	if email == "" {
		return errors.New("calendaremu: empty user")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ensureUserLocked(email)
	if refreshToken != "" {
		if g := s.oauth.refresh[refreshToken]; g != nil {
			if g.user != email {
				return errors.New("calendaremu: refresh token belongs to another user")
			}
			return nil
		}
		s.newGrantLocked(email, refreshToken, "https://www.googleapis.com/auth/calendar")
	}
	return nil
}

// RevokeGrant revokes every grant of the user, as when the user removes the app's
// access: refreshes answer invalid_grant and API calls with its tokens 401.
func (s *Server) RevokeGrant(email string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.users[email]
	if u == nil {
		return errors.New("calendaremu: unknown user " + email)
	}
	for _, g := range u.grants {
		g.revoked = true
	}
	s.log.Info("grant revoked", "user", email)
	return nil
}

type tokenReply struct {
	AccessToken  string `json:"access_token"`
	ExpiresIn    int    `json:"expires_in"`
	RefreshToken string `json:"refresh_token,omitempty"`
	Scope        string `json:"scope,omitempty"`
	TokenType    string `json:"token_type"`
	IDToken      string `json:"id_token,omitempty"`
}

func oauthError(w http.ResponseWriter, code int, errCode, desc string) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": errCode, "error_description": desc})
}

const revokedDesc = "Token has been expired or revoked."

func (s *Server) serveToken(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		oauthError(w, 405, "invalid_request", "Method not allowed")
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		oauthError(w, 400, "invalid_request", "Bad Request")
		return
	}
	f := r.PostForm
	cid, secret := clientCredentials(r, f)
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.clientSecretOKLocked(cid, secret) {
		oauthError(w, 401, "invalid_client", "Unauthorized")
		return
	}
	var g *grant
	var newRefresh string
	switch gt := f.Get("grant_type"); gt {
	case "authorization_code":
		c := s.oauth.codes[f.Get("code")]
		if c == nil || time.Now().After(c.expiry) {
			oauthError(w, 400, "invalid_grant", "Bad Request")
			return
		}
		delete(s.oauth.codes, f.Get("code")) // codes are single-use
		if ru := f.Get("redirect_uri"); ru != "" && ru != c.redirect {
			oauthError(w, 400, "redirect_uri_mismatch", "Bad Request")
			return
		}
		if s.oauth.clients[c.client] != nil && cid != c.client { // a code works only for the client it was issued to
			oauthError(w, 400, "invalid_grant", "Bad Request")
			return
		}
		if c.challenge != "" && f.Get("code_verifier") == "" {
			oauthError(w, 400, "invalid_grant", "Missing code verifier.")
			return
		}
		if c.challenge != "" && !pkceOK(c.challenge, c.method, f.Get("code_verifier")) {
			oauthError(w, 400, "invalid_grant", "Invalid code verifier.")
			return
		}
		g = s.grantForCodeLocked(c)
		newRefresh = g.refresh
	case "refresh_token":
		g = s.oauth.refresh[f.Get("refresh_token")]
		if g == nil {
			oauthError(w, 400, "invalid_grant", "Bad Request")
			return
		}
		if s.oauth.clients[g.client] != nil && cid != g.client {
			oauthError(w, 400, "unauthorized_client", "Unauthorized")
			return
		}
		if g.revoked {
			oauthError(w, 400, "invalid_grant", revokedDesc)
			return
		}
	case jwtBearerGrant, legacyAssertionGrant:
		if gt == legacyAssertionGrant && f.Get("assertion_type") != legacyAssertionType {
			oauthError(w, 400, "unsupported_grant_type", "Invalid grant_type: "+gt)
			return
		}
		if g = s.jwtBearerLocked(w, r, f); g == nil {
			return
		}
	default:
		oauthError(w, 400, "unsupported_grant_type", "Invalid grant_type: "+gt)
		return
	}
	at, _ := s.newAccessLocked(g)
	s.stats.Tokens++
	reply := tokenReply{AccessToken: at, ExpiresIn: int(s.opts.AccessTokenTTL/time.Second) - 1,
		RefreshToken: newRefresh, Scope: g.scope, TokenType: "Bearer"}
	if hasScope(g.scope, "openid") {
		reply.IDToken = s.idTokenLocked(g, clientID(r, f))
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-cache, no-store, max-age=0, must-revalidate")
	_ = json.NewEncoder(w).Encode(reply)
}

func hasScope(scopes, want string) bool {
	for _, s := range strings.Fields(scopes) {
		if s == want {
			return true
		}
	}
	return false
}

func clientID(r *http.Request, f url.Values) string {
	id, _ := clientCredentials(r, f)
	return id
}

// clientCredentials are the client id and secret of a token request:
// HTTP Basic or the form's client_id and client_secret.
func clientCredentials(r *http.Request, f url.Values) (id, secret string) {
	if id, secret, ok := r.BasicAuth(); ok {
		return id, secret
	}
	return f.Get("client_id"), f.Get("client_secret")
}

// grantForCodeLocked makes the grant an authorization code stands for.
// A refresh token comes only with access_type=offline, and, as Google's
// web-server guide says, only the first time the user authorizes the
// client unless the request said prompt=consent (then a new one each time).
func (s *Server) grantForCodeLocked(c *authCode) *grant {
	var g *grant
	if c.offline && (c.forceConsent || !s.hasRefreshLocked(c.user, c.client)) {
		g = s.newGrantLocked(c.user, "", c.scope)
	} else {
		u := s.ensureUserLocked(c.user)
		g = &grant{user: c.user, scope: c.scope}
		u.grants = append(u.grants, g)
	}
	g.client, g.any = c.client, c.any
	return g
}

// hasRefreshLocked says whether the user already gave client a live
// refresh token.
func (s *Server) hasRefreshLocked(email, client string) bool {
	if u := s.users[email]; u != nil {
		for _, g := range u.grants {
			if g.client == client && g.refresh != "" && !g.revoked {
				return true
			}
		}
	}
	return false
}

// idTokenLocked is the OpenID Connect ID token Google returns with the
// openid scope: signed (RS256) by the emulator's key, with the email claim
// when the grant has the email scope.
func (s *Server) idTokenLocked(g *grant, aud string) string {
	now := time.Now()
	sum := sha256.Sum256([]byte(g.user))
	claims := map[string]any{"iss": "https://accounts.google.com", "aud": aud, "azp": aud,
		"sub": fmt.Sprintf("1%019d", binary.BigEndian.Uint64(sum[:8])%1e19), "iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}
	if hasScope(g.scope, "email") || hasScope(g.scope, "https://www.googleapis.com/auth/userinfo.email") {
		claims["email"], claims["email_verified"] = g.user, true
	}
	payload, _ := json.Marshal(claims)
	key, kid := s.signingKeyLocked()
	tok, _ := signJWT(key, kid, payload)
	return tok
}

func pkceOK(challenge, method, verifier string) bool {
	want := verifier
	if method == "S256" {
		sum := sha256.Sum256([]byte(verifier))
		want = base64.RawURLEncoding.EncodeToString(sum[:])
	}
	return subtle.ConstantTimeCompare([]byte(want), []byte(challenge)) == 1
}

// serveRevoke is Google's https://oauth2.googleapis.com/revoke ("Revoking
// a token" in Google's web-server guide): POST
// token=<access or refresh token> (form body; the query works too, as in
// Google's own curl example). It answers 200 with an empty body, or 400
// {"error":"invalid_token"} for a token that is unknown, expired or
// already revoked. Revoking removes the app's access: the token's grant
// and the user's other grants to the same client stop working (refresh
// invalid_grant, API calls 401), as RevokeGrant does for every client.
func (s *Server) serveRevoke(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost && r.Method != http.MethodGet {
		oauthError(w, 405, "invalid_request", "Method not allowed")
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		oauthError(w, 400, "invalid_request", "Bad Request")
		return
	}
	tok := r.Form.Get("token")
	if tok == "" {
		oauthError(w, 400, "invalid_request", "Missing required parameter: token")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var g *grant
	if at := s.oauth.access[tok]; at != nil && time.Now().Before(at.expiry) {
		g = at.g
	} else if at == nil {
		g = s.oauth.refresh[tok]
	}
	if g == nil || g.revoked {
		oauthError(w, 400, "invalid_token", "Token expired or revoked")
		return
	}
	g.revoked = true
	if u := s.users[g.user]; u != nil && g.client != "" {
		for _, other := range u.grants {
			if other.client == g.client {
				other.revoked = true
			}
		}
	}
	s.log.Info("grant revoked", "user", g.user, "client", g.client)
	w.WriteHeader(http.StatusOK)
}
