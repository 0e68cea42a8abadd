// Package oauthgrant turns an OAuth authorization code into what calsync
// stores of a user's grant: the code exchanged with its PKCE verifier, the
// refresh token required, every scope calsync needs checked as granted
// (granular consent lets a user untick one), and the user's verified email
// from the ID token. The CLI's loopback `connect` and the Connect function's
// callback both end with Exchange.
package oauthgrant

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"golang.org/x/oauth2"

	"github.com/calsync/calsync/shared/calclient"
)

// Grant is a user's consent, ready to store.
type Grant struct {
	Email        string
	RefreshToken string
	Scopes       []string // what Google granted: every one of calclient.Scopes
}

// ErrNoRefreshToken: the answer had no refresh token (no offline access,
// or consent not asked again for a user who granted before).
var ErrNoRefreshToken = errors.New("oauthgrant: no refresh token in the answer (offline access with prompt=consent is needed)")

// Exchange exchanges code (with the PKCE verifier) at cfg's token endpoint
// and checks what came back. calclient.ErrScopesMissing when a scope was
// not granted: such a grant would only ever answer 403, so it is never
// stored.
func Exchange(ctx context.Context, cfg *oauth2.Config, code, verifier string) (Grant, error) {
	tok, err := cfg.Exchange(ctx, code, oauth2.VerifierOption(verifier))
	if err != nil {
		return Grant{}, fmt.Errorf("exchange the code: %w", err)
	}
	if tok.RefreshToken == "" {
		return Grant{}, ErrNoRefreshToken
	}
	granted, _ := tok.Extra("scope").(string)
	scopes, err := calclient.CheckScopes(granted)
	if err != nil {
		return Grant{}, err
	}
	email, err := IDTokenEmail(tok)
	if err != nil {
		return Grant{}, err
	}
	return Grant{Email: email, RefreshToken: tok.RefreshToken, Scopes: scopes}, nil
}

// AuthOptions are the authorization request's options calsync always
// sends: offline access (a refresh token), consent asked again (a new
// refresh token each time), PKCE with the verifier, and the user's earlier
// grants included (incremental authorisation).
func AuthOptions(verifier string) []oauth2.AuthCodeOption {
	return []oauth2.AuthCodeOption{oauth2.AccessTypeOffline, oauth2.ApprovalForce, oauth2.S256ChallengeOption(verifier),
		oauth2.SetAuthURLParam("include_granted_scopes", "true")}
}

// IDTokenEmail reads the verified email of the ID token the token endpoint
// returned with the scopes openid and email. It came straight from Google's
// token endpoint over TLS, so, as Google's OpenID Connect guide says, its
// signature need not be checked.
func IDTokenEmail(tok *oauth2.Token) (string, error) {
	raw, _ := tok.Extra("id_token").(string)
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		return "", errors.New("no ID token in the answer: the OAuth client must allow the scopes openid and email")
	}
	payload, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil {
		return "", fmt.Errorf("ID token: %w", err)
	}
	var claims struct {
		Email    string `json:"email"`
		Verified bool   `json:"email_verified"`
	}
	if err := json.Unmarshal(payload, &claims); err != nil {
		return "", fmt.Errorf("ID token: %w", err)
	}
	if claims.Email == "" || !claims.Verified {
		return "", errors.New("the ID token has no verified email")
	}
	return claims.Email, nil
}
