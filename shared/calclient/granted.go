package calclient

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"golang.org/x/oauth2"
)

// Granular consent lets a user untick any scope on Google's consent screen:
// the token reply's `scope` says what was granted, and every call needing a
// missing scope answers 403 insufficientPermissions for as long as the grant
// lives. A grant is checked when it is stored, not found out at each sync.

// ErrScopesMissing: a grant lacks one of Scopes.
var ErrScopesMissing = errors.New("calclient: scopes not granted")

// covering are the scopes that include each of Scopes (the discovery
// document's broader ones: full access, all read-only, read-write of the
// same resource). A grant of one of them reads as much.
var covering = map[string][]string{
	Scope:     {calendarScope("calendar"), calendarScope("calendar.readonly"), calendarScope("calendar.events")},
	ListScope: {calendarScope("calendar"), calendarScope("calendar.readonly"), calendarScope("calendar.calendarlist")},
}

func calendarScope(name string) string { return "https://www.googleapis.com/auth/" + name }

// CheckScopes returns the granted scopes (a token reply's space-separated
// `scope`) as a list, or an error wrapping ErrScopesMissing that names
// each of Scopes the grant lacks (neither it nor a scope covering it).
func CheckScopes(granted string) ([]string, error) {
	have := strings.Fields(granted)
	var missing []string
	for _, s := range Scopes {
		if !slices.Contains(have, s) && !slices.ContainsFunc(covering[s], func(c string) bool { return slices.Contains(have, c) }) {
			missing = append(missing, s)
		}
	}
	if len(missing) > 0 {
		return have, fmt.Errorf("%w: %s (granted: %q); connect again and tick every box on the consent screen",
			ErrScopesMissing, strings.Join(missing, ", "), granted)
	}
	return have, nil
}

// GrantedScopes refreshes refreshToken once at the OAuth client's token
// endpoint and checks the scopes Google says the grant has (CheckScopes):
// how a refresh token a product supplied, sealed, is checked before it is
// stored. The access token is dropped.
func (f *Factory) GrantedScopes(ctx context.Context, refreshToken string) ([]string, error) {
	if f.opts.OAuth == nil {
		return nil, errors.New("calclient: no OAuth client to check a grant's scopes with")
	}
	tok, err := f.opts.OAuth.TokenSource(ctx, &oauth2.Token{RefreshToken: refreshToken}).Token()
	if err != nil {
		return nil, fmt.Errorf("calclient: refresh to read the granted scopes: %w", err)
	}
	granted, _ := tok.Extra("scope").(string)
	return CheckScopes(granted)
}
