package calendaremu

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"golang.org/x/oauth2"
	"google.golang.org/api/googleapi"
	"google.golang.org/api/option"
)

// An API not enabled answers every call 403 accessNotConfigured with
// Google's SERVICE_DISABLED ErrorInfo, until it is enabled; calls billed
// to another project are not affected.
func TestDisabledAPI(t *testing.T) {
	srv, base, svc := startTest(t, Options{})
	if err := srv.DisableAPI(ServiceCalendar, true); err != nil {
		t.Fatal(err)
	}
	_, err := svc.Events.List("primary").Do()
	wantErr(t, err, 403, "accessNotConfigured")
	var ge *googleapi.Error
	errors.As(err, &ge)
	var body struct {
		Error struct {
			Status  string
			Message string
			Details []struct {
				Type     string `json:"@type"`
				Reason   string
				Metadata map[string]string
			}
		}
	}
	if err := json.Unmarshal([]byte(ge.Body), &body); err != nil {
		t.Fatal(err)
	}
	if body.Error.Status != "PERMISSION_DENIED" || !strings.HasPrefix(body.Error.Message, "Google Calendar API has not been used in project "+ProjectNumber) ||
		len(body.Error.Details) == 0 || body.Error.Details[0].Reason != "SERVICE_DISABLED" || body.Error.Details[0].Metadata["service"] != ServiceCalendar {
		t.Errorf("service disabled body: %s", ge.Body)
	}
	if it := errItem(t, err); it["domain"] != "usageLimits" {
		t.Errorf("error item: %v", it)
	}
	other, _ := NewService(context.Background(), base, option.WithoutAuthentication(), option.WithQuotaProject("another-project"))
	if _, err := other.Events.List("primary").Do(); err != nil {
		t.Errorf("call billed to another project: %v", err)
	}
	// IAM Credentials answers in its own shape (google.rpc.Status, no errors[]).
	if code, _ := ctl(t, "PUT", base+controlPath+"services/"+ServiceIAMCredentials, map[string]bool{"disabled": true}); code != 200 {
		t.Fatalf("control: %d", code)
	}
	_, err = signAssertion(t, base, delegationClaims("x@corp.test", scopePrefix+"calendar"))
	if !errors.As(err, &ge) || ge.Code != 403 || !strings.Contains(ge.Body, "SERVICE_DISABLED") || !strings.Contains(ge.Message, "IAM Service Account Credentials API") {
		t.Errorf("signJwt with IAM Credentials disabled: %v", err)
	}
	if err := srv.DisableAPI(ServiceCalendar, false); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Events.List("primary").Do(); err != nil {
		t.Errorf("enabled again: %v", err)
	}
	if srv.DisableAPI("nosuch.googleapis.com", true) == nil {
		t.Error("unknown service accepted")
	}
}

// Granular consent: the user unticks a scope; the token reply's scope and
// the redirect say what was granted, and the methods that needed the
// missing scope answer 403 insufficientPermissions.
func TestPartialConsent(t *testing.T) {
	srv, base, _ := startTest(t, Options{})
	events, list := scopePrefix+"calendar.events.readonly", scopePrefix+"calendar.calendarlist.readonly"
	srv.UntickScopes(list)
	tok, svc := consent(t, base, "hana@calsync.test", events, list)
	if got, _ := tok.Extra("scope").(string); got != events {
		t.Errorf("granted scope %q, want %q", got, events)
	}
	if _, err := svc.Events.List("primary").Do(); err != nil {
		t.Fatalf("granted scope: %v", err)
	}
	_, err := svc.CalendarList.List().Do()
	wantErr(t, err, 403, "insufficientPermissions")
	// Every requested scope unticked: nothing is granted, nothing opens.
	srv.UntickScopes(events)
	_, none := consent(t, base, "hana@calsync.test", events)
	_, err = none.Events.List("primary").Do()
	wantErr(t, err, 403, "insufficientPermissions")
	if code, _ := ctl(t, "PUT", base+controlPath+"consent", map[string][]string{"untick": nil}); code != 200 {
		t.Fatalf("control: %d", code)
	}
	tok, svc = consent(t, base, "hana@calsync.test", events, list)
	if _, err := svc.CalendarList.List().Do(); err != nil || tok.Extra("scope") != events+" "+list {
		t.Errorf("full consent: %v, scope %v", err, tok.Extra("scope"))
	}
	// A refreshed token keeps the grant's scopes.
	fresh, err := (&oauth2.Config{Endpoint: oauth2.Endpoint{TokenURL: base + "/token"}}).TokenSource(context.Background(),
		&oauth2.Token{RefreshToken: tok.RefreshToken}).Token()
	if err != nil || fresh.Extra("scope") != events+" "+list {
		t.Errorf("refresh: %v, scope %v", err, fresh.Extra("scope"))
	}
}
