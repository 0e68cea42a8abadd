package enroll_test

import (
	"slices"
	"testing"

	"github.com/calsync/calsync/shared/calclient"
	"github.com/calsync/calsync/shared/config"
	"github.com/calsync/calsync/shared/enroll"
)

// Domain-wide delegation authorised for exactly the documented scopes (the
// code's lists, which terraform/scopes_test.go holds every doc and output
// to) enrolls a domain end to end on the emulator: users, their calendar
// lists, rooms, channels. With any one of them missing, Google's token
// endpoint refuses and the domain is not enrolled: none is superfluous.
// What the docs said before (calendar.readonly for the Calendar) fails too:
// Google matches delegated scopes exactly.
func TestDelegationWithExactlyTheDocumentedScopes(t *testing.T) {
	documented := slices.Concat(calclient.Scopes, enroll.DirectoryScopes)
	former := slices.Concat([]string{"https://www.googleapis.com/auth/calendar.readonly"}, enroll.DirectoryScopes)
	for missing := -2; missing < len(documented); missing++ {
		name := "all"
		switch {
		case missing == -2:
			name = "the former docs"
		case missing >= 0:
			name = "without " + documented[missing]
		}
		t.Run(name, func(t *testing.T) {
			v := newEnv(t)
			if err := v.emu.CreateDomain("corp.test", "admin@corp.test"); err != nil {
				t.Fatal(err)
			}
			if err := v.emu.AddDomainUser("ann@corp.test", false); err != nil {
				t.Fatal(err)
			}
			if _, err := v.emu.AddRoom("corp.test", "Room 1"); err != nil {
				t.Fatal(err)
			}
			authorised := slices.Clone(documented)
			switch {
			case missing == -2:
				authorised = former
			case missing >= 0:
				authorised = slices.Delete(authorised, missing, missing+1)
			}
			v.emu.AuthorizeDelegation(calclient.EmulatorDelegationClient, authorised...)
			res, err := v.e.EnrollDomain(v.ctx, enroll.DomainSpec{Domain: "corp.test", Admin: "admin@corp.test", Rooms: true}, nil)
			complete := err == nil && res.Failed == 0 && res.Enrolled == 2 && res.RoomsEnrolled == 1
			if missing == -1 && !complete {
				t.Fatalf("with the documented scopes: %+v %v", res, err)
			}
			if missing != -1 && complete {
				t.Fatalf("enrolled with %v authorised: %+v", authorised, res)
			}
			if missing == -1 {
				if live := v.liveChannels(); live["ann@corp.test"] != 1 || len(live) < 3 {
					t.Errorf("channels after enrollment: %v", live)
				}
			}
			t.Logf("%+v %v", res, err)
		})
	}
}

// Each API's scopes are authorised for its own delegation account (the
// Admin console steps, terraform/README.md): a domain enrolls end to end
// with DELEGATION_SERVICE_ACCOUNT signing the Calendar's scopes and
// DIRECTORY_DELEGATION_SERVICE_ACCOUNT the Directory's, through the
// functions' own config path. With the directory account left unset, the
// Calendar's account signs the Directory's scopes, which Google refuses
// (its client id is authorised for the Calendar's only): nothing enrolled.
func TestDomainEnrollmentWithAnAccountPerAPI(t *testing.T) {
	const calendarSA, directorySA = "calsync-calendar@p.iam.gserviceaccount.com", "calsync-directory@p.iam.gserviceaccount.com"
	for _, directory := range []string{directorySA, ""} {
		t.Run("directory account "+directory, func(t *testing.T) {
			v := newEnv(t)
			if err := v.emu.CreateDomain("corp.test", "admin@corp.test"); err != nil {
				t.Fatal(err)
			}
			if err := v.emu.AddDomainUser("ann@corp.test", false); err != nil {
				t.Fatal(err)
			}
			v.emu.AuthorizeDelegation(calendarSA, calclient.Scopes...)
			v.emu.AuthorizeDelegation(directorySA, enroll.DirectoryScopes...)
			access := newAccess(t, v.base, v.st, v.e.Logger, func(c *config.Calendar) {
				c.DelegationServiceAccount, c.DirectoryDelegationServiceAccount = calendarSA, directory
			})
			access.Lifecycle.Stopper = v.e.Channels
			e := *v.e
			e.Calendars, e.Lifecycle = access.Calendars, access.Lifecycle
			e.Directory = enroll.DirectoryClients{Tokens: access.Calendars, Endpoint: v.base}
			res, err := e.EnrollDomain(v.ctx, enroll.DomainSpec{Domain: "corp.test", Admin: "admin@corp.test"}, nil)
			complete := err == nil && res.Failed == 0 && res.Enrolled == 2
			if directory != "" && !complete {
				t.Fatalf("each API through its own account: %+v %v", res, err)
			}
			if directory == "" && (complete || res.Enrolled != 0) {
				t.Fatalf("the Directory's scopes signed by the Calendar's account were accepted: %+v %v", res, err)
			}
			if by := v.emu.Stats().RequestsByUser; directory != "" && (by[directorySA] == 0 || by[calendarSA] == 0) {
				t.Errorf("signJwt calls by account: %s %d, %s %d; want both", directorySA, by[directorySA], calendarSA, by[calendarSA])
			}
			t.Logf("%+v %v", res, err)
		})
	}
}
