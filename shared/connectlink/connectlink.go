// Package connectlink makes and checks connect links: the signed,
// single-use, expiring URLs a product backend gives its end user to connect
// their Google account through calsync's Connect function. A link names
// the tenant, the product's externalId for the user and the return URL;
// it is signed with the tenant's link key (HMAC-SHA256), a secret the
// tenant's backend and the Connect function share, so nobody else can make
// one, and its nonce is spent on first use (the Connect function records
// it). Products call New; the Connect function calls Verify.
package connectlink

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/google/uuid"
)

// Link is what a connect link says.
type Link struct {
	Tenant     string    `json:"t"`
	ExternalID string    `json:"x"`
	ReturnURL  string    `json:"r"`
	Expires    time.Time `json:"e"`
	// Nonce names the link: spent on first use.
	Nonce string `json:"n"`
	// KeyID is the key that signed it (a tenant's key is rotated by adding
	// a new one first).
	KeyID string `json:"k"`
	// Action is what the link does: ActionConnect ("" in links made before
	// there were others) or ActionDisconnect.
	Action string `json:"a,omitempty"`
}

// Link actions.
const (
	ActionConnect    = ""
	ActionDisconnect = "disconnect"
)

// Key is one of a tenant's link keys.
type Key struct {
	ID     string
	Secret []byte // at least 32 bytes
}

// Errors Verify returns; each is a page the user sees, none changes
// anything.
var (
	ErrMalformed = errors.New("connectlink: not a connect link")
	ErrSignature = errors.New("connectlink: the link's signature does not verify (altered, or not made for this deployment)")
	ErrExpired   = errors.New("connectlink: the link has expired")
)

// MaxLifetime bounds a link's lifetime: a link is a bearer credential to
// connect an account to the product's user.
const MaxLifetime = 7 * 24 * time.Hour

const prefix = "cl1."

// New signs a link for tenant's user externalID, returning to returnURL,
// valid for ttl (at most MaxLifetime), with key. It returns the token to
// put in the Connect function's URL: CONNECT_URL + "/?link=" + token.
func New(key Key, tenant, externalID, returnURL string, ttl time.Duration, now time.Time) (string, error) {
	return NewFor(ActionConnect, key, tenant, externalID, returnURL, ttl, now)
}

// NewFor is New for a link of another action: ActionDisconnect sends the
// user to a page where they disconnect their Google account from the
// product (the grant revoked at Google, the credential deleted).
func NewFor(action string, key Key, tenant, externalID, returnURL string, ttl time.Duration, now time.Time) (string, error) {
	if action != ActionConnect && action != ActionDisconnect {
		return "", fmt.Errorf("connectlink: unknown action %q", action)
	}
	if ttl <= 0 || ttl > MaxLifetime {
		return "", fmt.Errorf("connectlink: lifetime %s is not within (0, %s]", ttl, MaxLifetime)
	}
	if len(key.Secret) < 32 || key.ID == "" || strings.Contains(key.ID, ".") {
		return "", errors.New("connectlink: a key needs an id without '.' and at least 32 bytes of secret")
	}
	if tenant == "" || externalID == "" || len(externalID) > 128 {
		return "", errors.New("connectlink: a tenant and an externalId of 1 to 128 characters are needed")
	}
	if u, err := url.Parse(returnURL); err != nil || u.Scheme != "https" && !(u.Scheme == "http" && isLoopback(u.Hostname())) || u.Host == "" {
		return "", fmt.Errorf("connectlink: return URL %q is not an https URL", returnURL)
	}
	l := Link{Tenant: tenant, ExternalID: externalID, ReturnURL: returnURL, Expires: now.Add(ttl).UTC().Truncate(time.Second),
		Nonce: uuid.NewString(), KeyID: key.ID, Action: action}
	payload, err := json.Marshal(l)
	if err != nil {
		return "", err
	}
	body := base64.RawURLEncoding.EncodeToString(payload)
	return prefix + body + "." + base64.RawURLEncoding.EncodeToString(sign(key.Secret, body)), nil
}

// Keys returns a tenant's link keys by id (nil: no such tenant).
type Keys func(tenant string) map[string][]byte

// Verify checks a link's form, its signature with its tenant's key and its
// expiry. Whether it was used before is the caller's (its nonce).
func Verify(token string, keys Keys, now time.Time) (Link, error) {
	var l Link
	rest, ok := strings.CutPrefix(token, prefix)
	body, sig, ok2 := strings.Cut(rest, ".")
	if !ok || !ok2 || len(token) > 4096 {
		return l, ErrMalformed
	}
	payload, err := base64.RawURLEncoding.DecodeString(body)
	if err != nil {
		return l, ErrMalformed
	}
	mac, err := base64.RawURLEncoding.DecodeString(sig)
	if err != nil {
		return l, ErrMalformed
	}
	dec := json.NewDecoder(strings.NewReader(string(payload)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&l); err != nil || l.Nonce == "" || (l.Action != ActionConnect && l.Action != ActionDisconnect) {
		return Link{}, ErrMalformed
	}
	secret := keys(l.Tenant)[l.KeyID]
	if secret == nil || !hmac.Equal(mac, sign(secret, body)) {
		return Link{}, ErrSignature
	}
	if !now.Before(l.Expires) {
		return l, ErrExpired
	}
	return l, nil
}

func sign(secret []byte, body string) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte("calsync connect link v1\n" + body))
	return m.Sum(nil)
}

func isLoopback(host string) bool { return host == "localhost" || host == "127.0.0.1" || host == "::1" }
