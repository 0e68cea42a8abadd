package calendaremu

import (
	"context"
	"fmt"
	"net/http"
	"net/url"

	"golang.org/x/oauth2"
)

// Consent runs the emulator's consent flow at base for user without a
// browser (login_hint names the account and AutoApproveParam skips the
// page; the grant is the requested scopes minus those UntickScopes
// unticked), with offline access and prompt=consent so there is always a
// refresh token. It returns the token reply, whose Extra("scope") is what
// was granted, and the config whose TokenSource refreshes it.
func Consent(ctx context.Context, base, user string, scopes ...string) (*oauth2.Token, *oauth2.Config, error) {
	cfg := &oauth2.Config{ClientID: "cid", ClientSecret: "secret", RedirectURL: "http://127.0.0.1:1/cb", Scopes: scopes,
		Endpoint: oauth2.Endpoint{AuthURL: base + "/authorize", TokenURL: base + "/token", AuthStyle: oauth2.AuthStyleInParams}}
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, cfg.AuthCodeURL("s", oauth2.AccessTypeOffline, oauth2.ApprovalForce,
		oauth2.SetAuthURLParam("login_hint", user), oauth2.SetAuthURLParam(AutoApproveParam, "true")), nil)
	if err != nil {
		return nil, nil, err
	}
	resp, err := noFollow.Do(req)
	if err != nil {
		return nil, nil, err
	}
	resp.Body.Close()
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || loc.Query().Get("code") == "" {
		return nil, nil, fmt.Errorf("calendaremu: consent for %s: no code in the redirect (%d %q)", user, resp.StatusCode, resp.Header.Get("Location"))
	}
	tok, err := cfg.Exchange(ctx, loc.Query().Get("code"))
	return tok, cfg, err
}
