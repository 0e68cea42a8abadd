package calendaremu

import (
	"errors"
	"net/url"
	"slices"
)

// OAuth clients, as registered in Google's console: a name the consent page
// shows, a secret the token endpoint checks, and the redirect URIs
// /authorize accepts (Google: the redirect_uri "must exactly match one of the
// authorized redirect URIs for the OAuth 2.0 client", else Error 400
// redirect_uri_mismatch, shown to the user, never redirected to).
// A client id never registered is accepted with any redirect URI and secret,
// as before registration existed, so tests that need no client keep working.

// OAuthClient is a registered OAuth client.
type OAuthClient struct {
	ID           string   `json:"id"`
	Name         string   `json:"name,omitempty"`   // shown on the consent page (the id if empty)
	Secret       string   `json:"secret,omitempty"` // empty: any secret is accepted
	RedirectURIs []string `json:"redirectUris"`
}

// RegisterClient registers (or replaces) an OAuth client.
func (s *Server) RegisterClient(c OAuthClient) error {
	if c.ID == "" {
		return errors.New("calendaremu: client without an id")
	}
	if len(c.RedirectURIs) == 0 {
		return errors.New("calendaremu: client " + c.ID + " without redirect URIs")
	}
	for _, r := range c.RedirectURIs {
		if u, err := url.Parse(r); err != nil || u.Scheme == "" || u.Host == "" || u.Fragment != "" {
			return errors.New("calendaremu: client " + c.ID + ": bad redirect URI " + r)
		}
	}
	c.RedirectURIs = slices.Clone(c.RedirectURIs)
	s.mu.Lock()
	s.oauth.clients[c.ID] = &c
	s.mu.Unlock()
	return nil
}

// redirectAllowedLocked says whether /authorize may redirect to uri for
// client: exact match for a registered client, anything for another.
func (s *Server) redirectAllowedLocked(client, uri string) bool {
	c := s.oauth.clients[client]
	return c == nil || slices.Contains(c.RedirectURIs, uri)
}

// clientSecretOKLocked checks a token request's secret against a
// registered client's; unregistered clients and clients without a
// secret accept any.
func (s *Server) clientSecretOKLocked(client, secret string) bool {
	c := s.oauth.clients[client]
	return c == nil || c.Secret == "" || c.Secret == secret
}

// clientNameLocked is what the consent page calls the app.
func (s *Server) clientNameLocked(client string) string {
	if c := s.oauth.clients[client]; c != nil && c.Name != "" {
		return c.Name
	}
	return client
}
