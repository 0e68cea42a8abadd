package renewer

import (
	"fmt"
	"math"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"
	"google.golang.org/api/calendar/v3"
	"google.golang.org/api/option"

	"github.com/calsync/calsync/shared/channels"
	"github.com/calsync/calsync/shared/channeltoken"
	"github.com/calsync/calsync/shared/config"
	"github.com/calsync/calsync/shared/store"
	"github.com/calsync/calsync/shared/testing/calendaremu"
)

// BenchmarkRenew renews 10,000 channels of 50 users (oauth credentials, 200
// calendars each) against calendaremu with Google's per-user quota on
// (600/min, sliding minute). It checks exactly one watch and one stop per
// channel and no 403 userRateLimitExceeded, and reports the wall time next
// to the minimum the 500/min limiter allows. RENEW_BENCH_CHANNELS and
// RENEW_BENCH_USERS scale it.
func BenchmarkRenew(b *testing.B) {
	nChan, nUser := envInt("RENEW_BENCH_CHANNELS", 10000), envInt("RENEW_BENCH_USERS", 50)
	for range b.N {
		b.StopTimer()
		e, r, perUser := benchSetup(b, nChan, nUser)
		s0 := e.emu.Stats()
		e.emu.SetQuota(600)
		b.StartTimer()
		start := time.Now()
		sum, err := r.Run(e.ctx)
		wall := time.Since(start)
		b.StopTimer()
		if err != nil {
			b.Fatal(err)
		}
		s1 := e.emu.Stats()
		watches := s1.Requests["events.watch"] - s0.Requests["events.watch"]
		stops := s1.Requests["channels.stop"] - s0.Requests["channels.stop"]
		rejected := s1.QuotaRejected - s0.QuotaRejected
		maxUser := 0
		for u, n := range s1.RequestsByUser {
			maxUser = max(maxUser, n-s0.RequestsByUser[u])
		}
		if sum.Renewed != nChan || sum.Failed != 0 || watches != nChan || stops != nChan || rejected != 0 {
			b.Fatalf("renewed %d failed %d, watches %d stops %d (want %d each), quota rejections %d", sum.Renewed, sum.Failed, watches, stops, nChan, rejected)
		}
		calls := float64(2 * perUser)
		minWall := math.Max(0, (calls-10)/(500.0/60)) // burst 10, then 500/min
		b.ReportMetric(wall.Seconds(), "wall-s")
		b.ReportMetric(minWall, "limit-min-s")
		b.ReportMetric(float64(watches)/float64(nChan), "watch/channel")
		b.ReportMetric(float64(stops)/float64(nChan), "stop/channel")
		b.ReportMetric(float64(maxUser), "max-user-requests")
		b.ReportMetric(float64(rejected), "quota-rejected")
		b.Logf("%d channels, %d users: %s wall (limit allows %.1fs), %d watch %d stop, max %d requests for one user, %d quota rejections, summary %+v",
			nChan, nUser, wall.Round(time.Millisecond), minWall, watches, stops, maxUser, rejected, sum)
	}
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

func benchSetup(b *testing.B, nChan, nUser int) (*env, *Renewer, int) {
	b.Helper()
	e := newEnv(b, calendaremu.Options{})
	ctx := e.ctx
	parts := e.renewer(nil)
	type user struct {
		email, cred string
		svc         *calendar.Service
	}
	users := make([]user, nUser)
	for i := range users {
		email := fmt.Sprintf("user%02d@bench.test", i)
		refresh := fmt.Sprintf("1//bench-%02d", i)
		if err := e.emu.CreateUser(email, refresh); err != nil {
			b.Fatal(err)
		}
		cred, err := parts.Access.Credentials.Put(ctx, email, refresh)
		if err != nil {
			b.Fatal(err)
		}
		tok := e.emu.IssueToken(email)
		svc, err := calendaremu.NewService(ctx, e.base, option.WithTokenSource(oauth2.StaticTokenSource(&oauth2.Token{AccessToken: tok.AccessToken})))
		if err != nil {
			b.Fatal(err)
		}
		users[i] = user{email, cred, svc}
	}
	keys, _ := channeltoken.Parse(tokenKeys)
	now := time.Now().UTC()
	bw := e.fs.BulkWriter(ctx)
	var mu sync.Mutex
	var firstErr error
	var wg sync.WaitGroup
	sem := make(chan struct{}, 32)
	for i := range nChan {
		u := users[i%nUser]
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			fail := func(err error) {
				mu.Lock()
				if firstErr == nil {
					firstErr = err
				}
				mu.Unlock()
			}
			c, err := u.svc.Calendars.Insert(&calendar.Calendar{Summary: fmt.Sprintf("cal %d", i)}).Do()
			if err != nil {
				fail(err)
				return
			}
			key := store.CalendarKey(c.Id)
			id := channels.RootID(channels.Namespace(e.project, "calsync"), key, "bench")
			tok, _ := keys.Mint(id, key, time.Now().Add(time.Hour))
			got, err := u.svc.Events.Watch(c.Id, &calendar.Channel{Id: id, Type: "web_hook", Address: e.hookURL, Token: tok,
				Params: map[string]string{"ttl": "3600"}}).Do()
			if err != nil {
				fail(err)
				return
			}
			exp := time.UnixMilli(got.Expiration).UTC()
			mu.Lock()
			_, err1 := bw.Create(e.st.CalendarRef(key), store.Calendar{CalendarID: c.Id, AuthMode: store.AuthOAuth,
				CredentialID: u.cred, Status: store.StatusActive, LastSyncedAt: now, CreatedAt: now, UpdatedAt: now})
			_, err2 := bw.Create(e.st.ChannelRef(id), store.Channel{ChannelID: id, Key: key, CalendarID: c.Id,
				ResourceID: got.ResourceId, ResourceURI: got.ResourceUri, Expiration: exp, State: store.ChannelActive,
				CreatedAt: now, ExpireAt: exp.Add(72 * time.Hour), TokenKeyID: keys.SigningKeyID()})
			mu.Unlock()
			if err1 != nil || err2 != nil {
				fail(fmt.Errorf("bulk: %v %v", err1, err2))
			}
		}()
	}
	wg.Wait()
	bw.End()
	if firstErr != nil {
		b.Fatal(firstErr)
	}
	r := e.renewer(func(c *config.RenewChannels) {
		c.RenewBefore = 2 * time.Hour
		c.Concurrency = 64
		c.CalendarRateLimit = 500
	})
	return e, r, nChan / nUser // channels per user
}
