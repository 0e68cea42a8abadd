package credentials

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"cloud.google.com/go/firestore"
	"github.com/sethvargo/go-envconfig"
	"google.golang.org/api/googleapi"

	"github.com/calsync/calsync/shared/config"
	"github.com/calsync/calsync/shared/sealed"
	"github.com/calsync/calsync/shared/store"
	"github.com/calsync/calsync/shared/testing/calendaremu"
	"github.com/calsync/calsync/shared/testing/testenv"
)

// Google's quotas hold across all of a deployment's processes. Two
// processes (each its own Firestore client and Access, built from the same
// config as SyncWorker and RenewChannels) calling as fast as they may for
// two users must together stay within the per-user and the per-project
// limit: the emulator, enforcing the same limits, rejects nothing. (With a
// limiter per process each spent the whole allowance: rejected.)
func TestBudgetAcrossProcesses(t *testing.T) {
	testenv.Firestore(t)
	ctx := context.Background()
	srv, base := calendaremu.Start(t, calendaremu.Options{})
	srv.SetQuotas(calendaremu.Quotas{PerUser: 10, PerProject: 15})
	priv, _, err := sealed.GenerateKey("h1")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load[config.Calendar](ctx, envconfig.MapLookuper(map[string]string{
		"CALENDAR_ENDPOINT": base, "OAUTH_TOKEN_URL": base + "/token", "CREDENTIAL_PRIVATE_KEYS": priv,
		"DELEGATION_SERVICE_ACCOUNT": "sync@p.iam.gserviceaccount.com",
		"CALENDAR_USER_RATE_LIMIT":   "10", "CALENDAR_PROJECT_RATE_LIMIT": "15",
	}))
	if err != nil {
		t.Fatal(err)
	}
	project := testenv.ProjectID(t)
	users := []string{"ann@corp.test", "ben@corp.test"}
	// Google delegates within Workspace domains only.
	if srv.CreateDomain("corp.test", users[0]) != nil || srv.AddDomainUser(users[1], false) != nil {
		t.Fatal("workspace domain")
	}
	var accepted, failed atomic.Int64
	deadline := time.Now().Add(8 * time.Second)
	var wg sync.WaitGroup
	for range 2 { // processes
		fs, err := firestore.NewClient(ctx, project)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { fs.Close() })
		access, err := NewAccess(cfg, store.New(fs), nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, u := range users {
			for range 2 { // goroutines per user and process
				wg.Add(1)
				go func() {
					defer wg.Done()
					cctx, cancel := context.WithDeadline(ctx, deadline)
					defer cancel()
					svc, err := access.Calendars.Service(cctx, store.Calendar{CalendarID: u, AuthMode: store.AuthDelegation, Subject: u})
					if err != nil {
						t.Error(err)
						return
					}
					for cctx.Err() == nil {
						_, err := svc.Events.List(u).MaxResults(1).Context(cctx).Do()
						var ge *googleapi.Error
						switch {
						case err == nil:
							accepted.Add(1)
						case errors.As(err, &ge):
							failed.Add(1) // Google's (the emulator's) answer: over a quota
						default:
							// calsync's own refusal (the budget is spent until
							// after the deadline): no call was made.
							return
						}
					}
				}()
			}
		}
	}
	wg.Wait()
	st := srv.Stats()
	if st.QuotaRejected != 0 || failed.Load() != 0 {
		t.Errorf("the emulator rejected %d calls over its quotas (%d failed): the processes together went over", st.QuotaRejected, failed.Load())
	}
	// The project's 15 a minute are all usable at once; on a loaded machine
	// the leases take a while, so only a floor that proves calls were made.
	if n := accepted.Load(); n < 6 || n > 15 {
		t.Errorf("%d calls accepted in 8 s, want 6-15", n)
	}
	for _, u := range users {
		if p := st.Peaks.User[u]; p > 10 {
			t.Errorf("%s: peak %d calls a minute, limit 10", u, p)
		}
	}
	if st.Peaks.Project > 15 {
		t.Errorf("project peak %d, limit 15", st.Peaks.Project)
	}
}
