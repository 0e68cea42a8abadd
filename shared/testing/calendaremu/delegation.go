package calendaremu

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Domain-wide delegation as Google runs it without a key file: the IAM
// Credentials API signs a JWT for a service account (signJwt), and Google's
// token endpoint exchanges it for an access token of the JWT's subject (the
// JWT-bearer grant, RFC 7523). Switches give the two permanent failures a
// deployment meets in production: a suspended or deleted subject
// (invalid_grant) and a revoked delegation (unauthorized_client).

// GoogleTokenAudience is the aud Google requires in JWT-bearer assertions.
const GoogleTokenAudience = "https://oauth2.googleapis.com/token"

const (
	jwtBearerGrant       = "urn:ietf:params:oauth:grant-type:jwt-bearer"
	legacyAssertionGrant = "assertion" // what google.golang.org/api/impersonate sends, with assertion_type
	legacyAssertionType  = "http://oauth.net/grant_type/jwt/1.0/bearer"
	iamPath              = "/v1/projects/"

	descInvalidSubject = "Invalid email or User ID"
	descUnauthorized   = "Client is unauthorized to retrieve access tokens using this method, or client not authorized for any of the scopes requested."
	descBadSignature   = "Invalid JWT Signature."
	descBadTime        = "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. Check your iat and exp values in the JWT claim."
)

// delegationState is the IAM and Workspace side of delegation.
type delegationState struct {
	key   *rsa.PrivateKey
	keyID string
	// denied service accounts answer signJwt 403 (no Token Creator role).
	denied map[string]bool
	// revoked service accounts (by client email) answer unauthorized_client.
	revoked map[string]bool
	// allowed, when a service account has an entry, lists the scopes an
	// administrator authorised for it; any other scope is unauthorized_client.
	allowed map[string]map[string]bool
}

func newDelegationState() delegationState {
	return delegationState{denied: map[string]bool{}, revoked: map[string]bool{}, allowed: map[string]map[string]bool{}}
}

// signingKeyLocked returns the emulator's RSA key (made on first use: key
// generation takes a noticeable moment). It survives Reset, like Google's keys.
func (s *Server) signingKeyLocked() (*rsa.PrivateKey, string) {
	if s.signKey == nil {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic("calendaremu: rsa key: " + err.Error())
		}
		s.signKey, s.signKeyID = k, randomBase32(20)
	}
	return s.signKey, s.signKeyID
}

// SuspendAccount suspends an account: delegation to it answers
// invalid_grant, and API calls with its existing tokens 401, as Google does
// for suspended (or, with DeleteAccount, deleted) accounts. ResumeAccount
// undoes it. (A Workspace directory user is suspended with SuspendUser,
// directory.go: listed suspended, delegation refused.)
func (s *Server) SuspendAccount(email string) {
	s.setUserState(email, func(u *user) { u.suspended = true })
}

// ResumeAccount lifts a suspension.
func (s *Server) ResumeAccount(email string) {
	s.setUserState(email, func(u *user) { u.suspended = false })
}

// DeleteAccount deletes an account: like a suspension, for good.
func (s *Server) DeleteAccount(email string) {
	s.setUserState(email, func(u *user) { u.deleted = true })
}

func (s *Server) setUserState(email string, f func(*user)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(s.ensureUserLocked(email))
	s.log.Info("user state changed", "user", email)
}

// RevokeDelegation removes a service account's domain-wide delegation (an
// administrator deleted its client id from the domain's API controls): the
// token endpoint answers 401 unauthorized_client.
func (s *Server) RevokeDelegation(serviceAccount string) {
	s.mu.Lock()
	s.deleg.revoked[serviceAccount] = true
	s.mu.Unlock()
}

// AuthorizeDelegation sets the scopes an administrator authorised for a
// service account (and lifts a revocation). Without a call every scope is
// authorised (the emulator's default).
func (s *Server) AuthorizeDelegation(serviceAccount string, scopes ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.deleg.revoked, serviceAccount)
	set := map[string]bool{}
	for _, sc := range scopes {
		set[sc] = true
	}
	s.deleg.allowed[serviceAccount] = set
}

// DenySignJwt takes the caller's Token Creator role on a service account
// away: signJwt answers 403 PERMISSION_DENIED.
func (s *Server) DenySignJwt(serviceAccount string, deny bool) {
	s.mu.Lock()
	s.deleg.denied[serviceAccount] = deny
	s.mu.Unlock()
}

// iamError is the IAM Credentials API's error body (google.rpc.Status as JSON).
func iamError(w http.ResponseWriter, code int, status, msg string, details ...any) {
	body := map[string]any{"error": map[string]any{"code": code, "message": msg, "status": status}}
	if len(details) > 0 {
		body["error"].(map[string]any)["details"] = details
	}
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(body)
}

// serveIAM is iamcredentials.googleapis.com's projects.serviceAccounts.signJwt:
// POST /v1/projects/-/serviceAccounts/{email}:signJwt {"payload": "..."}.
func (s *Server) serveIAM(w http.ResponseWriter, r *http.Request) {
	name, ok := strings.CutSuffix(strings.TrimPrefix(r.URL.Path, iamPath), ":signJwt")
	proj, sa, found := strings.Cut(name, "/serviceAccounts/")
	if !ok || !found || proj == "" || sa == "" || r.Method != http.MethodPost {
		iamError(w, 404, "NOT_FOUND", "Method not found.")
		return
	}
	var in struct {
		Payload   string   `json:"payload"`
		Delegates []string `json:"delegates"`
	}
	data, _ := io.ReadAll(io.LimitReader(r.Body, 64<<10))
	if err := json.Unmarshal(data, &in); err != nil {
		iamError(w, 400, "INVALID_ARGUMENT", "Invalid JSON payload received.")
		return
	}
	var claims map[string]any
	if err := json.Unmarshal([]byte(in.Payload), &claims); err != nil {
		iamError(w, 400, "INVALID_ARGUMENT", "Payload must be a JSON object.")
		return
	}
	if exp, ok := claims["exp"].(float64); ok && time.Unix(int64(exp), 0).After(time.Now().Add(12*time.Hour)) {
		iamError(w, 400, "INVALID_ARGUMENT", "The expiration time can't be more than 12 hours in the future.")
		return
	}
	s.mu.Lock()
	s.stats.count("iam.signJwt", sa)
	if e := s.disabledLocked(ServiceIAMCredentials, r.Header.Get("X-Goog-User-Project")); e != nil {
		s.mu.Unlock()
		// IAM's body is a google.rpc.Status: no errors[].
		iamError(w, 403, "PERMISSION_DENIED", e.Message, e.Details...)
		return
	}
	if s.deleg.denied[sa] {
		s.mu.Unlock()
		iamError(w, 403, "PERMISSION_DENIED", "Permission 'iam.serviceAccounts.signJwt' denied on resource (or it may not exist).",
			map[string]any{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "IAM_PERMISSION_DENIED",
				"domain": "iam.googleapis.com", "metadata": map[string]string{"permission": "iam.serviceAccounts.signJwt"}})
		return
	}
	key, kid := s.signingKeyLocked()
	s.mu.Unlock()
	jwt, err := signJWT(key, kid, []byte(in.Payload))
	if err != nil {
		iamError(w, 500, "INTERNAL", "Internal error encountered.")
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	_ = json.NewEncoder(w).Encode(map[string]string{"keyId": kid, "signedJwt": jwt})
}

func signJWT(key *rsa.PrivateKey, kid string, payload []byte) (string, error) {
	hdr, _ := json.Marshal(map[string]string{"alg": "RS256", "typ": "JWT", "kid": kid})
	enc := base64.RawURLEncoding
	signing := enc.EncodeToString(hdr) + "." + enc.EncodeToString(payload)
	sum := sha256.Sum256([]byte(signing))
	sig, err := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, sum[:])
	if err != nil {
		return "", err
	}
	return signing + "." + enc.EncodeToString(sig), nil
}

// jwtClaims are the claims of a JWT-bearer assertion.
type jwtClaims struct {
	Iss   string `json:"iss"`
	Sub   string `json:"sub"`
	Scope string `json:"scope"`
	Aud   string `json:"aud"`
	Iat   int64  `json:"iat"`
	Exp   int64  `json:"exp"`
}

// verifyAssertion checks an assertion the emulator signed (signJwt).
func (s *Server) verifyAssertionLocked(assertion string) (jwtClaims, string) {
	var c jwtClaims
	parts := strings.Split(assertion, ".")
	if len(parts) != 3 {
		return c, descBadSignature
	}
	enc := base64.RawURLEncoding
	hdrRaw, err1 := enc.DecodeString(parts[0])
	payload, err2 := enc.DecodeString(parts[1])
	sig, err3 := enc.DecodeString(parts[2])
	var hdr struct{ Alg, Kid string }
	if err1 != nil || err2 != nil || err3 != nil || json.Unmarshal(hdrRaw, &hdr) != nil || json.Unmarshal(payload, &c) != nil {
		return c, descBadSignature
	}
	key, kid := s.signingKeyLocked()
	sum := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if hdr.Alg != "RS256" || hdr.Kid != kid || rsa.VerifyPKCS1v15(&key.PublicKey, crypto.SHA256, sum[:], sig) != nil {
		return c, descBadSignature
	}
	now := time.Now().Unix()
	if c.Exp <= now || c.Exp-c.Iat > 3600 || c.Iat > now+300 {
		return c, descBadTime
	}
	return c, ""
}

// jwtBearerLocked is the token endpoint's JWT-bearer grant. It returns the
// grant to issue an access token for, or writes Google's error.
func (s *Server) jwtBearerLocked(w http.ResponseWriter, r *http.Request, f url.Values) *grant {
	c, bad := s.verifyAssertionLocked(f.Get("assertion"))
	if bad != "" {
		oauthError(w, 400, "invalid_grant", bad)
		return nil
	}
	if c.Aud != GoogleTokenAudience && c.Aud != tokenURLOf(r) {
		oauthError(w, 400, "invalid_grant", "Invalid JWT: Failed audience check. The right audience is "+GoogleTokenAudience)
		return nil
	}
	if strings.TrimSpace(c.Scope) == "" {
		oauthError(w, 400, "invalid_scope", "Invalid OAuth scope or ID token audience provided.")
		return nil
	}
	if c.Sub == "" {
		// The service account's own token.
		return &grant{user: c.Iss, scope: c.Scope}
	}
	if s.deleg.revoked[c.Iss] {
		oauthError(w, 401, "unauthorized_client", descUnauthorized)
		return nil
	}
	if allowed, ok := s.deleg.allowed[c.Iss]; ok {
		for _, sc := range strings.Fields(c.Scope) {
			if !allowed[sc] {
				oauthError(w, 401, "unauthorized_client", descUnauthorized)
				return nil
			}
		}
	}
	sub := strings.ToLower(c.Sub)
	d := s.ws.domains[emailDomain(sub)]
	if d == nil {
		// No Workspace administrator there could have authorised this
		// client (a consumer account, another organisation): Google refuses
		// delegation as for a client the domain does not allow.
		oauthError(w, 401, "unauthorized_client", descUnauthorized)
		return nil
	}
	// The domain's delegation allowlist (SetDelegation) and its directory users.
	if d.delegation != nil && !d.delegation[c.Iss] {
		oauthError(w, 401, "unauthorized_client", descUnauthorized)
		return nil
	}
	if u := d.users[sub]; u == nil || u.deleted || u.suspended {
		oauthError(w, 400, "invalid_grant", descInvalidSubject)
		return nil
	}
	if u := s.users[sub]; u != nil && (u.suspended || u.deleted) {
		oauthError(w, 400, "invalid_grant", descInvalidSubject)
		return nil
	}
	s.ensureUserLocked(sub)
	return &grant{user: sub, scope: c.Scope, delegatedBy: c.Iss}
}

// tokenURLOf is this emulator's own token URL as the request reached it.
func tokenURLOf(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host + "/token"
}
