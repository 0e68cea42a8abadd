package calendaremu

import (
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
)

// The authorization endpoint (/authorize, /o/oauth2/auth, /o/oauth2/v2/auth),
// as Google's behaves for a browser ("Using OAuth 2.0 for Web Server
// Applications", developers.google.com/identity/protocols/oauth2/web-server):
// a bad request (no client_id, a redirect_uri the client did not register,
// response_type other than code, ...) gets an error page and is never
// redirected; a good one gets the consent page (consentpage.go), whose
// Allow redirects to redirect_uri with code, scope and state, and whose
// Cancel redirects with error=access_denied and state.
//
// The emulator's shortcut for tests without a browser: with login_hint
// naming the account AND auto-approval switched on (Options.AutoApprove,
// or the query parameter emulator_auto_approve=true that Consent sends),
// it approves at once, granting the requested scopes minus UntickScopes.

// AutoApproveParam is the query parameter that, with login_hint, skips the
// consent page (Google has no such parameter).
const AutoApproveParam = "emulator_auto_approve"

// consentTTL bounds a consent page's life, and an authorization code's
// (Google's codes are short-lived and single-use).
const consentTTL = 10 * time.Minute

// authRequest is a validated authorization request.
type authRequest struct {
	client, redirect, state, loginHint string
	scopes                             []string // requested, in order, without duplicates
	any                                bool     // no scope asked for: every method (emulator leniency)
	challenge, method                  string   // PKCE
	offline                            bool     // access_type=offline: a refresh token
	forceConsent                       bool     // prompt=consent: a new refresh token every time
	includeGranted                     bool     // include_granted_scopes=true: incremental authorization
}

// authError is an error page's Google error code and description.
type authError struct{ code, desc string }

func badAuth(code, desc string) *authError { return &authError{code, desc} }

// parseAuthRequestLocked validates an authorization request as Google
// does before it shows anything to the user.
func (s *Server) parseAuthRequestLocked(q url.Values) (authRequest, *authError) {
	req := authRequest{client: q.Get("client_id"), redirect: q.Get("redirect_uri"), state: q.Get("state"),
		challenge: q.Get("code_challenge"), method: q.Get("code_challenge_method")}
	if req.client == "" {
		return req, badAuth("invalid_request", "Missing required parameter: client_id")
	}
	if req.redirect == "" {
		return req, badAuth("invalid_request", "Missing required parameter: redirect_uri")
	}
	if u, err := url.Parse(req.redirect); err != nil || u.Scheme == "" || u.Host == "" || u.Fragment != "" {
		return req, badAuth("invalid_request", "Invalid parameter value for redirect_uri: "+req.redirect)
	}
	if !s.redirectAllowedLocked(req.client, req.redirect) {
		return req, badAuth("redirect_uri_mismatch", "You can't sign in to this app because it doesn't comply with Google's OAuth 2.0 policy. "+
			"The redirect URI in the request, "+req.redirect+", does not match the ones authorized for the OAuth client.")
	}
	switch rt := q.Get("response_type"); rt {
	case "code":
	case "":
		return req, badAuth("invalid_request", "Missing required parameter: response_type")
	default:
		return req, badAuth("unsupported_response_type", "Invalid response_type: "+rt)
	}
	switch at := q.Get("access_type"); at {
	case "offline":
		req.offline = true
	case "", "online":
	default:
		return req, badAuth("invalid_request", "Invalid access_type: "+at)
	}
	switch {
	case req.challenge == "" && req.method != "":
		return req, badAuth("invalid_request", "Missing required parameter: code_challenge")
	case req.challenge != "" && req.method == "":
		// Google's guide for installed apps: S256 or plain, plain when
		// omitted (RFC 7636's default).
		req.method = "plain"
	case req.method != "" && req.method != "plain" && req.method != "S256":
		return req, badAuth("invalid_request", "Invalid code_challenge_method: "+req.method)
	}
	req.forceConsent = slices.Contains(strings.Fields(q.Get("prompt")), "consent")
	req.includeGranted = q.Get("include_granted_scopes") == "true"
	for _, sc := range strings.Fields(q.Get("scope")) {
		if !slices.Contains(req.scopes, sc) {
			req.scopes = append(req.scopes, sc)
		}
	}
	req.any = len(req.scopes) == 0
	req.loginHint = q.Get("login_hint")
	if req.loginHint == "" {
		req.loginHint = q.Get("user") // the emulator's older name for it
	}
	return req, nil
}

func (s *Server) serveAuthorize(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodPost:
		s.serveConsentAnswer(w, r)
		return
	case http.MethodGet, http.MethodHead:
	default:
		w.Header().Set("Allow", "GET, POST")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	q := r.URL.Query()
	s.mu.Lock()
	req, bad := s.parseAuthRequestLocked(q)
	if bad != nil {
		s.mu.Unlock()
		s.log.Info("oauth authorize refused", "client", req.client, "error", bad.code)
		renderAuthError(w, bad, req)
		return
	}
	if req.loginHint != "" && (s.opts.AutoApprove || q.Get(AutoApproveParam) == "true") {
		loc := s.approveLocked(req, req.loginHint, s.consentedLocked(strings.Join(req.scopes, " ")))
		s.mu.Unlock()
		http.Redirect(w, r, loc, http.StatusFound)
		return
	}
	s.expirePendingLocked()
	id := randomBase32(20)
	s.oauth.pending[id] = &pendingConsent{req: req, expiry: time.Now().Add(consentTTL)}
	view := s.consentViewLocked(id, req, nil)
	s.mu.Unlock()
	renderConsent(w, http.StatusOK, view)
}

// pendingConsent is a consent page waiting for the user's answer; the
// form carries only its id, so nothing the page posts can change where
// the answer goes.
type pendingConsent struct {
	req    authRequest
	expiry time.Time
}

func (s *Server) expirePendingLocked() {
	now := time.Now()
	for id, p := range s.oauth.pending {
		if now.After(p.expiry) {
			delete(s.oauth.pending, id)
		}
	}
}

// serveConsentAnswer handles the consent page's form: Allow or Cancel.
func (s *Server) serveConsentAnswer(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		renderAuthError(w, badAuth("invalid_request", "Malformed form."), authRequest{})
		return
	}
	f := r.PostForm
	s.mu.Lock()
	id := f.Get("request")
	p := s.oauth.pending[id]
	if p == nil || time.Now().After(p.expiry) {
		delete(s.oauth.pending, id)
		s.mu.Unlock()
		renderAuthError(w, badAuth("invalid_request", "This sign-in request has expired or was already answered. Start again from the app."), authRequest{})
		return
	}
	switch f.Get("action") {
	case "cancel":
		delete(s.oauth.pending, id)
		s.mu.Unlock()
		s.log.Info("oauth consent denied", "client", p.req.client)
		http.Redirect(w, r, redirectWith(p.req.redirect, url.Values{"error": {"access_denied"}}, p.req.state), http.StatusSeeOther)
	case "allow":
		email, problem := s.chosenAccountLocked(f)
		if problem != "" {
			view := s.consentViewLocked(id, p.req, f)
			view.Error = problem
			s.mu.Unlock()
			renderConsent(w, http.StatusBadRequest, view)
			return
		}
		delete(s.oauth.pending, id)
		loc := s.approveLocked(p.req, email, grantedByForm(p.req.scopes, f["scope"]))
		s.mu.Unlock()
		http.Redirect(w, r, loc, http.StatusSeeOther)
	default:
		s.mu.Unlock()
		renderAuthError(w, badAuth("invalid_request", "Choose Allow or Cancel."), p.req)
	}
}

// chosenAccountLocked is the account the form chose: a listed one, or
// the typed email ("Use another account"); problem says what is wrong.
func (s *Server) chosenAccountLocked(f url.Values) (email, problem string) {
	email = f.Get("account")
	if email == "" || email == otherAccount {
		email = strings.TrimSpace(f.Get("other_email"))
	}
	if email == "" {
		return "", "Choose an account, or type an email address."
	}
	if at := strings.IndexByte(email, '@'); at < 1 || at == len(email)-1 || strings.ContainsAny(email, " \t\r\n<>\"") {
		return "", "Enter a valid email address."
	}
	if u := s.users[email]; u != nil && (u.suspended || u.deleted) {
		return "", "This account is suspended or deleted: choose another one."
	}
	return email, ""
}

// grantedByForm is what the user granted: the requested sign-in scopes
// (never optional under granular consent) and the requested others whose
// box stayed ticked.
func grantedByForm(requested, ticked []string) string {
	var out []string
	for _, sc := range requested {
		if signInScope(sc) || slices.Contains(ticked, sc) {
			out = append(out, sc)
		}
	}
	return strings.Join(out, " ")
}

// approveLocked issues a single-use code for the request, as email, with
// the granted scopes (plus the client's earlier grants of the user with
// include_granted_scopes), and returns where to redirect the browser.
func (s *Server) approveLocked(req authRequest, email, granted string) string {
	s.ensureUserLocked(email)
	if req.includeGranted {
		granted = s.withEarlierScopesLocked(email, req.client, granted)
	}
	code := "4/" + randomBase32(30)
	s.oauth.codes[code] = &authCode{user: email, client: req.client, redirect: req.redirect, challenge: req.challenge, method: req.method,
		scope: granted, any: req.any, offline: req.offline, forceConsent: req.forceConsent, expiry: time.Now().Add(consentTTL)}
	v := url.Values{"code": {code}}
	if granted != "" {
		v.Set("scope", granted)
	}
	s.log.Info("oauth authorize", "user", email, "client", req.client)
	return redirectWith(req.redirect, v, req.state)
}

// withEarlierScopesLocked adds to granted the scopes of the user's live
// grants to client (incremental authorization).
func (s *Server) withEarlierScopesLocked(email, client, granted string) string {
	all := strings.Fields(granted)
	if u := s.users[email]; u != nil {
		for _, g := range u.grants {
			if g.client != client || g.revoked {
				continue
			}
			for _, sc := range strings.Fields(g.scope) {
				if !slices.Contains(all, sc) {
					all = append(all, sc)
				}
			}
		}
	}
	return strings.Join(all, " ")
}

// redirectWith adds params and state to the redirect URI's own query.
func redirectWith(redirect string, params url.Values, state string) string {
	u, _ := url.Parse(redirect) // validated by parseAuthRequestLocked
	q := u.Query()
	for k, vs := range params {
		q[k] = vs
	}
	if state != "" {
		q.Set("state", state)
	}
	u.RawQuery = q.Encode()
	return u.String()
}
