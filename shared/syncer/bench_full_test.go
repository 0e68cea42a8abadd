package syncer_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"cloud.google.com/go/firestore"
	"google.golang.org/api/calendar/v3"

	"github.com/calsync/calsync/shared/lifecycle"
	"github.com/calsync/calsync/shared/messages"
	"github.com/calsync/calsync/shared/store"
	"github.com/calsync/calsync/shared/syncer"
	"github.com/calsync/calsync/shared/testing/calendaremu"
	"github.com/calsync/calsync/shared/testing/syncertest"
	"github.com/calsync/calsync/shared/testing/testenv"
)

// BenchmarkFullSync: a full sync of 10,000 and 100,000 events into the
// Firestore emulator, calsync against the same sync without fencing
// (fenced_vs_unfenced: the target is at least 0.9) and a one-write-per-event
// loop (the loop only at 10,000: at 100,000 it takes many minutes). The Calendar emulator
// runs in its own process (scripts/calendar-emulator) so the peak RSS
// reported is the syncing process's alone (VmHWM after clear_refs). Change
// feed off on both sides.
//
//	go test -run '^$' -bench 'FullSync/10k' -benchtime 1x -timeout 30m ./shared/syncer/
//	go test -run '^$' -bench 'FullSync/100k' -benchtime 1x -timeout 60m ./shared/syncer/
func BenchmarkFullSync(b *testing.B) {
	for _, tc := range []struct {
		name     string
		n        int
		baseline bool
	}{{"10k", 10_000, true}, {"100k", 100_000, false}} {
		b.Run(tc.name, func(b *testing.B) {
			base := externalEmulator(b)
			ctx := context.Background()
			svc, err := calendaremu.NewService(ctx, base)
			if err != nil {
				b.Fatal(err)
			}
			seedEvents(b, svc, tc.n)
			testenv.Firestore(b)
			var calsyncRate, unfencedRate, loopRate, peakMB float64
			for i := 0; i < b.N; i++ {
				// The same sync without fencing (store.Unfenced), on a
				// Firestore of its own, first: what fencing costs.
				unfencedRate = fullSyncRate(b, ctx, svc, tc.n, true)
				fs, err := firestore.NewClient(ctx, testenv.ProjectID(b))
				if err != nil {
					b.Fatal(err)
				}
				st := store.New(fs)
				key, err := lifecycle.Register(ctx, st, store.Calendar{CalendarID: calendaremu.DefaultUser, AuthMode: store.AuthADC})
				if err != nil {
					b.Fatal(err)
				}
				s := syncer.New(syncer.Options{Store: st, Logger: quietLogger(),
					Services: syncer.ServicesFunc(func(context.Context, store.Grant) (*calendar.Service, error) { return svc, nil })})
				debug.FreeOSMemory()
				resetPeakRSS(b)
				t0 := time.Now()
				if err := s.HandleNotification(ctx, messages.Notification{CalendarKey: key, ResourceState: messages.StateSync}); err != nil {
					b.Fatal(err)
				}
				d := time.Since(t0)
				peakMB = peakRSSMB(b)
				calsyncRate = float64(tc.n) / d.Seconds()
				if i == 0 {
					if diff, err := syncertest.Diff(ctx, st, svc, calendaremu.DefaultUser); err != nil || diff != "" {
						b.Fatalf("mirror not exact: %v %s", err, diff)
					}
				}
				if tc.baseline {
					key2 := store.CalendarKey("loop")
					t0 = time.Now()
					err := svc.Events.List(calendaremu.DefaultUser).ShowDeleted(true).MaxResults(2500).Pages(ctx, func(p *calendar.Events) error {
						for _, ev := range p.Items {
							doc, err := store.EventDoc(ev, nil, time.Now())
							if err != nil {
								return err
							}
							if _, err := st.Events(key2).Doc(ev.Id).Set(ctx, doc); err != nil {
								return err
							}
						}
						return nil
					})
					if err != nil {
						b.Fatal(err)
					}
					loopRate = float64(tc.n) / time.Since(t0).Seconds()
				}
				fs.Close()
			}
			b.ReportMetric(calsyncRate, "calsync_events/s")
			b.ReportMetric(unfencedRate, "unfenced_events/s")
			b.ReportMetric(calsyncRate/unfencedRate, "fenced_vs_unfenced")
			if tc.baseline {
				b.ReportMetric(loopRate, "loop_events/s")
				b.ReportMetric(calsyncRate/loopRate, "speedup")
			}
			b.ReportMetric(peakMB, "calsync_peak_rss_MB")
			b.ReportMetric(0, "ns/op")
		})
	}
}

// fullSyncRate runs one full sync of the emulator's calendar into a fresh
// Firestore project and returns its events/s.
func fullSyncRate(b *testing.B, ctx context.Context, svc *calendar.Service, n int, unfenced bool) float64 {
	b.Helper()
	fs, err := firestore.NewClient(ctx, testenv.ProjectID(b))
	if err != nil {
		b.Fatal(err)
	}
	defer fs.Close()
	st := store.New(fs)
	st.Unfenced = unfenced
	key, err := lifecycle.Register(ctx, st, store.Calendar{CalendarID: calendaremu.DefaultUser, AuthMode: store.AuthADC})
	if err != nil {
		b.Fatal(err)
	}
	s := syncer.New(syncer.Options{Store: st, Logger: quietLogger(),
		Services: syncer.ServicesFunc(func(context.Context, store.Grant) (*calendar.Service, error) { return svc, nil })})
	t0 := time.Now()
	if err := s.HandleNotification(ctx, messages.Notification{CalendarKey: key, ResourceState: messages.StateSync}); err != nil {
		b.Fatal(err)
	}
	return float64(n) / time.Since(t0).Seconds()
}

// externalEmulator runs scripts/calendar-emulator in its own process.
func externalEmulator(b *testing.B) string {
	b.Helper()
	root, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		b.Fatal(err)
	}
	bin := filepath.Join(b.TempDir(), "calemu")
	build := exec.Command("go", "build", "-o", bin, "./scripts/calendar-emulator")
	build.Dir = filepath.Dir(strings.TrimSpace(string(root)))
	if out, err := build.CombinedOutput(); err != nil {
		b.Fatalf("build emulator: %v\n%s", err, out)
	}
	cmd := exec.Command(bin, "--addr", "127.0.0.1:0")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); _ = cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		b.Fatal(err)
	}
	base, ok := strings.CutPrefix(strings.TrimSpace(line), "listening on ")
	if !ok {
		b.Fatalf("emulator said %q", line)
	}
	return base
}

func seedEvents(b *testing.B, svc *calendar.Service, n int) {
	b.Helper()
	var wg sync.WaitGroup
	work := make(chan int, 1024)
	errs := make(chan error, 16)
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				_, err := svc.Events.Insert(calendaremu.DefaultUser, &calendar.Event{
					Summary:     fmt.Sprintf("event %d", i),
					Description: "a typical description of a meeting, a few lines long, with a link https://example.com/x",
					Location:    "Room 4",
					Start:       &calendar.EventDateTime{DateTime: time.Date(2026, 1, 1, 9, 0, 0, 0, time.UTC).Add(time.Duration(i) * time.Hour).Format(time.RFC3339)},
					End:         &calendar.EventDateTime{DateTime: time.Date(2026, 1, 1, 10, 0, 0, 0, time.UTC).Add(time.Duration(i) * time.Hour).Format(time.RFC3339)},
					Attendees:   []*calendar.EventAttendee{{Email: "a@example.com"}, {Email: "b@example.com"}},
				}).Do()
				if err != nil {
					select {
					case errs <- err:
					default:
					}
					return
				}
			}
		}()
	}
	for i := 0; i < n; i++ {
		work <- i
	}
	close(work)
	wg.Wait()
	select {
	case err := <-errs:
		b.Fatal(err)
	default:
	}
}

func resetPeakRSS(b *testing.B) {
	if err := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0); err != nil {
		b.Logf("cannot reset peak RSS: %v", err)
	}
}

func peakRSSMB(b *testing.B) float64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			return kb / 1024
		}
	}
	return 0
}
