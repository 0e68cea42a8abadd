// Package connect is the Connect function: the public pages through which
// a product's end user connects their Google account. The product's
// backend gives the user a connect link (shared/connectlink); the user sees
// which product asks for what (read-only access to their calendars), goes
// through Google's consent (a web OAuth client, offline access, exactly
// calsync's scopes, PKCE, a one-time state), and comes back to the
// product's return URL with the outcome. In between calsync checks the
// scopes Google granted, seals the refresh token to the deployment's public
// key and publishes an enroll control message on the tenant's control
// topic: the SyncWorker opens the box, stores and enrolls the grant, and
// answers on the lifecycle topic as for any control message. This public
// function never holds the key that opens users' tokens.
package connect

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"golang.org/x/oauth2"

	"github.com/calsync/calsync/shared/calclient"
	"github.com/calsync/calsync/shared/connectlink"
	"github.com/calsync/calsync/shared/credentials"
	"github.com/calsync/calsync/shared/logging"
	"github.com/calsync/calsync/shared/messages"
	"github.com/calsync/calsync/shared/oauthgrant"
	"github.com/calsync/calsync/shared/sealed"
	"github.com/calsync/calsync/shared/store"
	"github.com/calsync/calsync/shared/tenant"
)

// Handler serves the Connect pages: GET / (a link's page), POST /start
// (to Google's consent), GET /callback (Google's answer).
type Handler struct {
	Store *store.Store
	// Seal is the deployment's public key (CREDENTIAL_PUBLIC_KEY).
	Seal *sealed.PublicKey
	// Control publishes a control message on a tenant's control topic.
	Control func(ctx context.Context, tenantName string, data []byte, attrs map[string]string) error
	Tenants tenant.Set
	Links   connectlink.Keys
	// OAuth is the web OAuth client; its RedirectURL is this function's
	// /callback.
	OAuth  *oauth2.Config
	Logger *slog.Logger
	Now    func() time.Time
}

// SessionLifetime bounds a consent in flight: the time a user may take on
// Google's pages.
const SessionLifetime = 15 * time.Minute

// Outcomes sent to the return URL (calsync_status) and shown.
const (
	StatusConnected = "connected"
	StatusDenied    = "denied" // the user cancelled at Google
	StatusError     = "error"  // with calsync_reason
	// StatusDisconnected: a disconnect link was followed; the grants are
	// revoked and the credentials deleted by the SyncWorker (lifecycle
	// topic: control.accepted, identity.unenrolled).
	StatusDisconnected = "disconnected"
)

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// The link page's form may go to this function and, by its redirect,
	// to Google's consent page, nowhere else (a disconnect page's, back to
	// the product: csp).
	w.Header().Set("Content-Security-Policy", csp(origin(h.OAuth.Endpoint.AuthURL)))
	w.Header().Set("Referrer-Policy", "no-referrer")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Cache-Control", "no-store")
	switch {
	case r.URL.Path == "/" && r.Method == http.MethodGet:
		h.landing(w, r)
	case r.URL.Path == "/start" && r.Method == http.MethodPost:
		h.start(w, r)
	case r.URL.Path == "/disconnect" && r.Method == http.MethodPost:
		h.disconnect(w, r)
	case r.URL.Path == "/callback" && r.Method == http.MethodGet:
		h.callback(w, r)
	default:
		h.page(w, http.StatusNotFound, pageError{Title: "Not found", Message: "There is no such page."})
	}
}

// link verifies a link and that its tenant may send users to its return
// URL; the error is what the user is told.
func (h *Handler) link(token string) (connectlink.Link, tenant.Tenant, string) {
	l, err := connectlink.Verify(token, h.Links, h.now())
	switch {
	case errors.Is(err, connectlink.ErrExpired):
		return l, tenant.Tenant{}, "This link has expired. Ask the service that sent you here for a new one."
	case err != nil:
		return l, tenant.Tenant{}, "This link is not valid. Ask the service that sent you here for a new one."
	}
	t, ok := h.Tenants.Get(l.Tenant)
	if !ok || !t.ReturnAllowed(l.ReturnURL) {
		return l, t, "This link is not valid for this service. Ask the service that sent you here for a new one."
	}
	return l, t, ""
}

func (h *Handler) landing(w http.ResponseWriter, r *http.Request) {
	token := r.URL.Query().Get("link")
	l, t, problem := h.link(token)
	if problem != "" {
		h.log(r).Warn("connect link refused", logging.KeyEvent, logging.EventConnect, logging.KeyOutcome, "bad_link")
		h.page(w, http.StatusBadRequest, pageError{Title: "Link not valid", Message: problem})
		return
	}
	if used, err := h.Store.LinkUsed(r.Context(), l.Nonce); err != nil {
		h.unavailable(w, r, err)
		return
	} else if used {
		h.page(w, http.StatusBadRequest, pageError{Title: "Link already used", Message: "This link was used already. Ask " + t.Display() + " for a new one."})
		return
	}
	if l.Action == connectlink.ActionDisconnect {
		w.Header().Set("Content-Security-Policy", csp(origin(l.ReturnURL)))
		h.page(w, http.StatusOK, pageDisconnect{Product: t.Display(), Link: token})
		return
	}
	h.page(w, http.StatusOK, pageConnect{Product: t.Display(), Link: token})
}

// posted reads a link page's form: the link, verified, for action. ok
// false: the user was shown why not.
func (h *Handler) posted(w http.ResponseWriter, r *http.Request, action string) (connectlink.Link, tenant.Tenant, bool) {
	if err := r.ParseForm(); err != nil {
		h.page(w, http.StatusBadRequest, pageError{Title: "Link not valid", Message: "The request could not be read."})
		return connectlink.Link{}, tenant.Tenant{}, false
	}
	l, t, problem := h.link(r.PostForm.Get("link"))
	if problem == "" && l.Action != action {
		problem = "This link is not valid for this step. Ask the service that sent you here for a new one."
	}
	if problem != "" {
		h.page(w, http.StatusBadRequest, pageError{Title: "Link not valid", Message: problem})
		return l, t, false
	}
	return l, t, true
}

// spend records the link used, once its step's work is done, so a step
// that failed leaves it usable; ok false: it was used already (the user was
// told).
func (h *Handler) spend(w http.ResponseWriter, r *http.Request, l connectlink.Link, t tenant.Tenant) bool {
	err := h.Store.SpendConnectLink(r.Context(), l.Nonce, t.Name, l.Expires.Add(24*time.Hour))
	if errors.Is(err, store.ErrLinkUsed) {
		h.log(r).Warn("connect link used again", logging.KeyEvent, logging.EventConnect, logging.KeyTenant, t.Name, logging.KeyOutcome, "link_used")
		h.page(w, http.StatusBadRequest, pageError{Title: "Link already used", Message: "This link was used already. Ask " + t.Display() + " for a new one."})
		return false
	}
	if err != nil {
		h.unavailable(w, r, err)
		return false
	}
	return true
}

func (h *Handler) start(w http.ResponseWriter, r *http.Request) {
	l, t, ok := h.posted(w, r, connectlink.ActionConnect)
	if !ok {
		return
	}
	ctx := r.Context()
	state, verifier := random(), oauth2.GenerateVerifier()
	if err := h.Store.PutConnectSession(ctx, state, store.ConnectSession{Tenant: t.Name, ExternalID: l.ExternalID, ReturnURL: l.ReturnURL,
		Nonce: l.Nonce, Verifier: verifier, ExpireAt: h.now().Add(SessionLifetime)}); err != nil {
		h.unavailable(w, r, err)
		return
	}
	// Spent once the session is stored: a failure before leaves the link
	// usable (a session of a link used meanwhile expires unused).
	if !h.spend(w, r, l, t) {
		return
	}
	http.Redirect(w, r, h.OAuth.AuthCodeURL(state, oauthgrant.AuthOptions(verifier)...), http.StatusSeeOther)
}

func (h *Handler) callback(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	ctx := r.Context()
	s, err := h.Store.TakeConnectSession(ctx, q.Get("state"))
	if errors.Is(err, store.ErrNotFound) {
		// A stale tab, a replayed answer, or someone else's: nothing to do.
		h.page(w, http.StatusBadRequest, pageError{Title: "Sign-in not recognised", Message: "This sign-in has expired or was completed already. Go back to the service that sent you and start again."})
		return
	} else if err != nil {
		h.unavailable(w, r, err)
		return
	}
	t, _ := h.Tenants.Get(s.Tenant)
	log := h.log(r).With(logging.KeyEvent, logging.EventConnect, logging.KeyTenant, t.Name)
	back := func(status, reason string, extra url.Values) string {
		u, _ := url.Parse(s.ReturnURL)
		v := u.Query()
		v.Set("calsync_status", status)
		if reason != "" {
			v.Set("calsync_reason", reason)
		}
		for k := range extra {
			v.Set(k, extra.Get(k))
		}
		u.RawQuery = v.Encode()
		return u.String()
	}
	if e := q.Get("error"); e != "" {
		log.Info("the user did not consent", logging.KeyOutcome, StatusDenied, logging.KeyReason, logging.Untrusted(e))
		http.Redirect(w, r, back(StatusDenied, "access_denied", nil), http.StatusSeeOther)
		return
	}
	g, err := oauthgrant.Exchange(ctx, h.OAuth, q.Get("code"), s.Verifier)
	if errors.Is(err, calclient.ErrScopesMissing) {
		log.Warn("consent without every scope; nothing stored", logging.KeyOutcome, StatusError, logging.KeyReason, messages.ReasonScopesMissing)
		h.page(w, http.StatusBadRequest, pageError{Title: "Permission needed",
			Message: t.Display() + " needs to see your calendars, and that permission was not given. Nothing was stored.",
			Back:    back(StatusError, messages.ReasonScopesMissing, nil), BackName: t.Display()})
		return
	}
	if err != nil {
		log.Warn("Google's answer could not be used; nothing stored", logging.KeyOutcome, StatusError, logging.KeyError, err.Error())
		h.page(w, http.StatusBadGateway, pageError{Title: "Could not connect", Message: "Google's answer could not be used. Nothing was stored.",
			Back: back(StatusError, "exchange_failed", nil), BackName: t.Display()})
		return
	}
	identity, requestID, err := h.enroll(ctx, t, s, g)
	if err != nil {
		// The link and the consent are spent and nothing was handed over:
		// the product must give the user a new link.
		log.Error("the grant could not be handed to calsync; nothing stored", logging.KeyOutcome, "unavailable", logging.KeyError, err.Error())
		h.page(w, http.StatusServiceUnavailable, pageError{Title: "Could not connect", Message: "Something went wrong on our side; nothing was stored. Go back and start again.",
			Back: back(StatusError, "unavailable", nil), BackName: t.Display()})
		return
	}
	log.Info("account connected; its enroll published", logging.KeyOutcome, StatusConnected, logging.KeyIdentityKey, identity,
		logging.KeyRequestID, requestID)
	http.Redirect(w, r, back(StatusConnected, "", url.Values{"calsync_identity": {identity}, "calsync_request": {requestID}}), http.StatusSeeOther)
}

// disconnect follows a disconnect link: every identity of the tenant with
// the link's externalId gets a disconnect control message on the tenant's
// control topic (the SyncWorker unenrolls it, revokes an OAuth grant at
// Google and deletes its credential), and the user goes back to the product.
func (h *Handler) disconnect(w http.ResponseWriter, r *http.Request) {
	l, t, ok := h.posted(w, r, connectlink.ActionDisconnect)
	if !ok {
		return
	}
	ctx := r.Context()
	log := h.log(r).With(logging.KeyEvent, logging.EventConnect, logging.KeyTenant, t.Name)
	if used, err := h.Store.LinkUsed(ctx, l.Nonce); err != nil {
		h.unavailable(w, r, err)
		return
	} else if used {
		h.page(w, http.StatusBadRequest, pageError{Title: "Link already used", Message: "This link was used already. Ask " + t.Display() + " for a new one."})
		return
	}
	ids, err := h.Store.IdentitiesOfExternalID(ctx, t.Name, l.ExternalID)
	if err != nil {
		h.unavailable(w, r, err)
		return
	}
	n := 0
	for key, id := range ids {
		if id.Status == store.StatusUnenrolled {
			continue
		}
		c := messages.Control{Version: messages.ControlVersion, Action: messages.ActionDisconnect, IssuedAt: h.now().UTC(),
			RequestID: "disconnect:" + l.Nonce + ":" + key, Subject: id.Subject}
		if id.AuthMode == store.AuthOAuth {
			c.Subject, c.CredentialID = "", id.CredentialID
		}
		data, err := json.Marshal(c)
		if err == nil {
			err = h.Control(ctx, t.Name, data, c.Attributes())
		}
		if err != nil {
			h.unavailable(w, r, err)
			return
		}
		n++
	}
	// Spent once every disconnect is published (their request ids are the
	// link's: a retry after a failure publishes duplicates, done once).
	if !h.spend(w, r, l, t) {
		return
	}
	log.Info("disconnect link followed; disconnects published", logging.KeyOutcome, StatusDisconnected, "identities", n)
	u, _ := url.Parse(l.ReturnURL)
	v := u.Query()
	v.Set("calsync_status", StatusDisconnected)
	u.RawQuery = v.Encode()
	http.Redirect(w, r, u.String(), http.StatusSeeOther)
}

// enroll hands the grant to calsync: its refresh token sealed under a new
// credential id, in an enroll control message (request id "connect:" + the
// link's nonce) on the tenant's control topic. It returns the identity key
// the grant will have; the SyncWorker's answer (control.accepted or
// rejected, identity.enrolled) comes on the lifecycle topic.
func (h *Handler) enroll(ctx context.Context, t tenant.Tenant, s store.ConnectSession, g oauthgrant.Grant) (identity, requestID string, err error) {
	id, err := h.credentialFor(ctx, t, s.ExternalID, g.Email)
	if err != nil {
		return "", "", err
	}
	box, err := h.Seal.Seal(credentials.AAD(id), []byte(g.RefreshToken))
	if err != nil {
		return "", "", err
	}
	c := messages.Control{Version: messages.ControlVersion, Action: messages.ActionEnroll, RequestID: "connect:" + s.Nonce,
		IssuedAt: h.now().UTC(), CredentialID: id, SealedRefreshToken: box, Email: g.Email, ExternalID: s.ExternalID}
	data, err := json.Marshal(c)
	if err != nil {
		return "", "", err
	}
	if err := h.Control(ctx, t.Name, data, c.Attributes()); err != nil {
		return "", "", err
	}
	return store.Grant{AuthMode: store.AuthOAuth, CredentialID: id}.IdentityKey(), c.RequestID, nil
}

// credentialFor is the credential id the grant is sealed under: the one of
// the tenant's OAuth identity for the same product user and the same Google
// account, if there is one (a reconnect: the new grant replaces the old,
// its calendars catch up incrementally), else a new one.
func (h *Handler) credentialFor(ctx context.Context, t tenant.Tenant, externalID, email string) (string, error) {
	ids, err := h.Store.IdentitiesOfExternalID(ctx, t.Name, externalID)
	if err != nil {
		return "", err
	}
	for _, id := range ids {
		if id.AuthMode == store.AuthOAuth && strings.EqualFold(id.Email, email) {
			return id.CredentialID, nil
		}
	}
	return credentials.NewID(), nil
}

func (h *Handler) unavailable(w http.ResponseWriter, r *http.Request, err error) {
	h.log(r).Error("connect step failed; the user may try again", logging.KeyEvent, logging.EventConnect, logging.KeyOutcome, "unavailable", logging.KeyError, err.Error())
	h.page(w, http.StatusServiceUnavailable, pageError{Title: "Please try again", Message: "Something went wrong on our side. Please try again in a minute."})
}

func (h *Handler) now() time.Time {
	if h.Now != nil {
		return h.Now()
	}
	return time.Now()
}

func (h *Handler) log(r *http.Request) *slog.Logger {
	if h.Logger != nil {
		return h.Logger
	}
	return logging.FromContext(r.Context())
}

// csp is the pages' Content-Security-Policy: nothing loaded but inline
// style, no framing, and forms that go to this function and, by its
// redirect, to next (an origin) only.
func csp(next string) string {
	return "default-src 'none'; style-src 'unsafe-inline'; form-action 'self' " + next + "; frame-ancestors 'none'"
}

// origin is a URL's scheme and host.
func origin(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return ""
	}
	return p.Scheme + "://" + p.Host
}

func random() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}
