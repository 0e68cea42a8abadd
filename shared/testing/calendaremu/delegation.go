package calendaremu

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Domain-wide delegation at the token endpoint: the JWT bearer grant
// (RFC 7523) a service account uses to act as a Workspace user. The client
// signs a JWT (iss = the service account, sub = the user, scope, aud = the
// token URL, iat/exp) and POSTs grant_type=urn:ietf:params:oauth:grant-type:
// jwt-bearer&assertion=JWT; the answer is an access token acting as sub.
// golang.org/x/oauth2/jwt and google.JWTConfigFromJSON speak it unchanged.
//
// The emulator does not check the signature (it has no service-account
// keys); it checks the claims and, for a subject of an emulated Workspace
// domain (directory.go), what Google answers:
//
//   - a suspended, deleted or unknown user: 400 invalid_grant "Invalid email or User ID"
//   - a client the domain does not allow (SetDelegation): 401 unauthorized_client
//     "Client is unauthorized to retrieve access tokens using this method, or
//     client not authorized for any of the scopes requested."
//   - an expired or over-long assertion: 400 invalid_grant "Invalid JWT: Token
//     must be a short-lived token (60 minutes) and in a reasonable timeframe. …"
//   - an unreadable assertion: 400 invalid_grant "Invalid JWT Signature."
//
// A subject outside every emulated domain is created on first use, as users
// of /authorize are; no sub: the token acts as the service account itself.

const jwtBearerGrant = "urn:ietf:params:oauth:grant-type:jwt-bearer"

type jwtClaims struct {
	Iss   string `json:"iss"`
	Sub   string `json:"sub"`
	Scope string `json:"scope"`
	Aud   string `json:"aud"`
	Iat   int64  `json:"iat"`
	Exp   int64  `json:"exp"`
}

// serveJWTBearerLocked answers a jwt-bearer token request (s.mu held).
func (s *Server) serveJWTBearerLocked(w http.ResponseWriter, f url.Values) {
	parts := strings.Split(f.Get("assertion"), ".")
	var c jwtClaims
	if len(parts) != 3 {
		oauthError(w, 400, "invalid_grant", "Invalid JWT Signature.")
		return
	}
	raw, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil || json.Unmarshal(raw, &c) != nil || c.Iss == "" {
		oauthError(w, 400, "invalid_grant", "Invalid JWT Signature.")
		return
	}
	now := time.Now().Unix()
	if c.Exp <= now || c.Exp-c.Iat > 3600 || c.Iat > now+300 {
		oauthError(w, 400, "invalid_grant", "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. Check your iat and exp values in the JWT claim.")
		return
	}
	user := c.Iss
	if c.Sub != "" {
		user = strings.ToLower(c.Sub)
		if d := s.ws.domains[emailDomain(user)]; d != nil {
			if d.delegation != nil && !d.delegation[c.Iss] {
				oauthError(w, 401, "unauthorized_client", "Client is unauthorized to retrieve access tokens using this method, or client not authorized for any of the scopes requested.")
				return
			}
			if u := d.users[user]; u == nil || u.deleted || u.suspended {
				oauthError(w, 400, "invalid_grant", "Invalid email or User ID")
				return
			}
		}
	}
	s.ensureUserLocked(user)
	g := &grant{user: user, scope: c.Scope}
	at, _ := s.newAccessLocked(g)
	s.stats.Tokens++
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-cache, no-store, max-age=0, must-revalidate")
	_ = json.NewEncoder(w).Encode(tokenReply{AccessToken: at, ExpiresIn: int(s.opts.AccessTokenTTL/time.Second) - 1,
		TokenType: "Bearer"})
}
