package enroll_test

import (
	"slices"
	"testing"

	"github.com/calsync/calsync/shared/calclient"
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
