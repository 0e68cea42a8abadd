package store

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"cloud.google.com/go/firestore"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/calsync/calsync/shared/testing/faultproxy"
	"github.com/calsync/calsync/shared/testing/testenv"
)

// Ambiguous outcomes (issue 21): Firestore applies a write under the lease
// and its answer is lost. With UNAVAILABLE the client retries the Commit by
// itself and meets its first attempt; with DEADLINE_EXCEEDED it does not
// retry. Every write path must come out as if the answer had arrived: the
// holder keeps what it holds, no false ErrLeaseLost, counters exact.

var lostKinds = []faultproxy.Kind{faultproxy.LostUnavailable, faultproxy.LostDeadline}

// viaProxy is a Store whose client goes through a fault proxy, and one
// straight to the emulator (what Firestore holds).
func viaProxy(t *testing.T) (*faultproxy.Proxy, *Store, *Store) {
	t.Helper()
	host := testenv.Firestore(t)
	project := testenv.ProjectID(t)
	p, err := faultproxy.Start("127.0.0.1:0", host, faultproxy.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	fs, err := faultproxy.FirestoreClient(context.Background(), project, p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fs.Close() })
	return p, New(fs), New(firestoreClient(t, project))
}

// lostOnce makes the next Commit through p apply and lose its answer, and
// checks after the test that it did.
func lostOnce(t *testing.T, p *faultproxy.Proxy, k faultproxy.Kind) {
	t.Helper()
	before := p.Counts().Faults[k][faultproxy.FirestoreCommit]
	p.FailNext(faultproxy.FirestoreCommit, 1, k)
	t.Cleanup(func() {
		if p.Counts().Faults[k][faultproxy.FirestoreCommit] != before+1 {
			t.Errorf("the commit's answer was not lost (%v): the test tested nothing", p.Counts().Faults)
		}
	})
}

func forKinds(t *testing.T, f func(t *testing.T, k faultproxy.Kind)) {
	for _, k := range lostKinds {
		t.Run(string(k), func(t *testing.T) { f(t, k) })
	}
}

func leaseOn(t *testing.T, s *Store, id string) (string, Lease) {
	t.Helper()
	return CalendarKey(id), holdLease(t, s, id)
}

func calendarOf(t *testing.T, s *Store, key string) Calendar {
	t.Helper()
	c, err := s.GetCalendar(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// Admit: the lease taken, the answer lost. The caller holds the lease and
// can write under it.
func TestAmbiguousAdmit(t *testing.T) {
	forKinds(t, func(t *testing.T, k faultproxy.Kind) {
		p, via, direct := viaProxy(t)
		ctx := context.Background()
		key, err := direct.RegisterCalendar(ctx, Calendar{CalendarID: "admit@x", AuthMode: AuthADC}, activate)
		if err != nil {
			t.Fatal(err)
		}
		lostOnce(t, p, k)
		a, err := via.Admit(ctx, key, Request{ReceivedAt: time.Now(), MessageID: "m1"}, Lease{Owner: "A/1", Duration: time.Minute}, Coalesce)
		if err != nil || a.Outcome != OutcomeSync {
			t.Fatalf("admit: %v %v; want the lease (Firestore holds it for A/1: %+v)", a.Outcome, err, calendarOf(t, direct, key).LeaseOwner)
		}
		if _, err := via.WriteEvents(ctx, key, a.Lease, []EventWrite{{ID: "e1", Doc: doc("e1", `"1"`), Delta: 1}}); err != nil {
			t.Fatalf("write under the lease: %v", err)
		}
	})
}

// Admit during another's sync: dirty set, the answer lost. The notification
// is settled (the holder goes round once more) and the calendar is dirty.
func TestAmbiguousAdmitMarksDirty(t *testing.T) {
	forKinds(t, func(t *testing.T, k faultproxy.Kind) {
		p, via, direct := viaProxy(t)
		key, _ := leaseOn(t, direct, "dirty@x")
		lostOnce(t, p, k)
		a, err := via.Admit(context.Background(), key, Request{ReceivedAt: time.Now(), ChannelID: "ch", MessageNumber: 7}, Lease{Owner: "B/1", Duration: time.Minute}, Coalesce)
		if err != nil || (a.Outcome != OutcomeMarkedDirty && a.Outcome != OutcomeAlreadyDirty && a.Outcome != OutcomeDuplicate) {
			t.Fatalf("admit: %v %v; want the notification settled by the dirty flag", a.Outcome, err)
		}
		if c := calendarOf(t, direct, key); !c.Dirty || !slices.Equal(c.ChannelMessages["ch"].Numbers, []int64{7}) {
			t.Errorf("dirty %v, channel messages %v", c.Dirty, c.ChannelMessages["ch"].Numbers)
		}
	})
}

// Heartbeat: the lease extended, the answer lost.
func TestAmbiguousHeartbeat(t *testing.T) {
	forKinds(t, func(t *testing.T, k faultproxy.Kind) {
		p, via, direct := viaProxy(t)
		key, l := leaseOn(t, via, "heartbeat@x")
		lostOnce(t, p, k)
		until, err := via.Heartbeat(context.Background(), key, l)
		if err != nil {
			t.Fatalf("heartbeat: %v", err)
		}
		if c := calendarOf(t, direct, key); !c.LeaseUntil.Equal(until.Truncate(time.Microsecond)) { // Firestore keeps microseconds
			t.Errorf("leaseUntil %v, heartbeat said %v", c.LeaseUntil, until)
		}
	})
}

// StartRound: dirty cleared and the full resync request taken, the answer
// lost. The round the caller gets is the one Firestore recorded: full, and
// covering the notification that made the calendar dirty.
func TestAmbiguousStartRound(t *testing.T) {
	forKinds(t, func(t *testing.T, k faultproxy.Kind) {
		p, via, direct := viaProxy(t)
		ctx := context.Background()
		key, l := leaseOn(t, via, "start@x")
		since := time.Now().Add(-time.Minute).UTC().Truncate(time.Millisecond)
		if _, err := direct.CalendarRef(key).Update(ctx, []firestore.Update{{Path: "syncToken", Value: "tok"},
			{Path: "fullResyncRequested", Value: true}, {Path: "dirty", Value: true}, {Path: "dirtySince", Value: since}}); err != nil {
			t.Fatal(err)
		}
		lostOnce(t, p, k)
		rd, err := via.StartRound(ctx, key, l, false)
		if err != nil { // the syncer retries StartRound
			rd, err = via.StartRound(ctx, key, l, false)
		}
		if err != nil {
			t.Fatal(err)
		}
		if !rd.Full || !rd.DirtySince.Equal(since) {
			t.Errorf("round full=%v dirtySince=%v; want the full round asked for, covering dirtySince %v", rd.Full, rd.DirtySince, since)
		}
		if c := calendarOf(t, direct, key); c.Dirty || c.FullResyncRequested {
			t.Errorf("after the round start: dirty %v, fullResyncRequested %v", c.Dirty, c.FullResyncRequested)
		}
	})
}

// Complete: the token committed (the lease kept for another round when the
// calendar is dirty, released otherwise), the answer lost. The caller learns
// the round completed; syncCount counts it once.
func TestAmbiguousComplete(t *testing.T) {
	for _, dirty := range []bool{false, true} {
		name := "released"
		if dirty {
			name = "kept"
		}
		t.Run(name, func(t *testing.T) {
			forKinds(t, func(t *testing.T, k faultproxy.Kind) {
				p, via, direct := viaProxy(t)
				ctx := context.Background()
				key, l := leaseOn(t, via, "complete@x")
				rd, err := via.StartRound(ctx, key, l, false)
				if err != nil {
					t.Fatal(err)
				}
				if dirty {
					if _, err := direct.CalendarRef(key).Update(ctx, []firestore.Update{{Path: "dirty", Value: true}}); err != nil {
						t.Fatal(err)
					}
				}
				lostOnce(t, p, k)
				done := Completion{Round: rd, Token: "t2", EventCount: 0}
				again, err := via.Complete(ctx, key, l, done)
				if err != nil { // the syncer retries Complete
					again, err = via.Complete(ctx, key, l, done)
				}
				if err != nil || again != dirty {
					t.Fatalf("complete: again=%v %v; want again=%v and no error", again, err, dirty)
				}
				c := calendarOf(t, direct, key)
				if c.SyncToken != "t2" || c.SyncCount != 1 || c.FullSyncCount != 1 {
					t.Errorf("token %q, syncCount %d, fullSyncCount %d; want t2, 1, 1", c.SyncToken, c.SyncCount, c.FullSyncCount)
				}
				if (c.LeaseOwner == l.Owner) != dirty {
					t.Errorf("leaseOwner %q after completing a round (dirty %v)", c.LeaseOwner, dirty)
				}
			})
		})
	}
}

// Release: the lease given up, the answer lost.
func TestAmbiguousRelease(t *testing.T) {
	forKinds(t, func(t *testing.T, k faultproxy.Kind) {
		p, via, direct := viaProxy(t)
		key, l := leaseOn(t, via, "release@x")
		lostOnce(t, p, k)
		if err := via.Release(context.Background(), key, l, true); err != nil {
			t.Fatalf("release: %v", err)
		}
		if c := calendarOf(t, direct, key); c.LeaseOwner != "" || !c.Dirty {
			t.Errorf("after release: owner %q dirty %v", c.LeaseOwner, c.Dirty)
		}
	})
}

// Event batches: written with their counters, the answer lost. The call
// succeeds and the counters count each document once.
func TestAmbiguousEventBatch(t *testing.T) {
	forKinds(t, func(t *testing.T, k faultproxy.Kind) {
		p, via, direct := viaProxy(t)
		ctx := context.Background()
		key, l := leaseOn(t, via, "events@x")
		if _, err := via.WriteEvents(ctx, key, l, []EventWrite{{ID: "old", Doc: doc("old", `"1"`), Delta: 1}, {ID: "gone", Doc: doc("gone", `"1"`), Delta: 1}}); err != nil {
			t.Fatal(err)
		}
		stored, err := via.GetEvents(ctx, key, []string{"old"})
		if err != nil {
			t.Fatal(err)
		}
		steps := []struct {
			name   string
			writes []EventWrite
		}{
			{"create", []EventWrite{{ID: "new1", Doc: doc("new1", `"1"`), Delta: 1}, {ID: "new2", Doc: doc("new2", `"1"`), Delta: 1}}},
			{"update", []EventWrite{{ID: "old", Doc: doc("old", `"2"`), Replaces: stored["old"]}}},
			{"delete", []EventWrite{{ID: "gone", Delta: -1}}},
		}
		changes := int64(2)
		for _, st := range steps {
			p.FailNext(faultproxy.FirestoreCommit, 1, k)
			if _, err := via.WriteEvents(ctx, key, l, st.writes); err != nil {
				t.Errorf("%s: %v", st.name, err)
			}
			changes += int64(len(st.writes))
		}
		if n := p.Counts().Faults[k][faultproxy.FirestoreCommit]; n != len(steps) {
			t.Fatalf("%d answers lost, want %d", n, len(steps))
		}
		m, _ := direct.GetEvents(ctx, key, []string{"old", "gone", "new1", "new2"})
		if m["old"].Etag != `"2"` || m["gone"].Exists || !m["new1"].Exists || !m["new2"].Exists {
			t.Errorf("mirror %+v", m)
		}
		if c := calendarOf(t, direct, key); c.EventCount != 3 || c.ChangeCount != changes {
			t.Errorf("eventCount %d changeCount %d; want 3 and %d", c.EventCount, c.ChangeCount, changes)
		}
	})
}

// A batch Firestore refuses for contention (ABORTED, nothing applied) is
// committed again: a few refusals cost a pause, not the round; refused every
// time, the write fails with ABORTED and nothing of it is stored or counted.
func TestContendedEventBatch(t *testing.T) {
	p, via, direct := viaProxy(t)
	ctx := context.Background()
	key, l := leaseOn(t, via, "contended@x")
	p.FailNext(faultproxy.FirestoreCommit, 3, faultproxy.Contention)
	if _, err := via.WriteEvents(ctx, key, l, []EventWrite{{ID: "a", Doc: doc("a", `"1"`), Delta: 1}}); err != nil {
		t.Fatalf("three contended commits, then one through: %v", err)
	}
	p.FailNext(faultproxy.FirestoreCommit, 5, faultproxy.Contention)
	_, err := via.WriteEvents(ctx, key, l, []EventWrite{{ID: "b", Doc: doc("b", `"1"`), Delta: 1}})
	if status.Code(err) != codes.Aborted {
		t.Fatalf("contended five times: %v, want ABORTED", err)
	}
	if n := p.Counts().Faults[faultproxy.Contention][faultproxy.FirestoreCommit]; n != 8 {
		t.Fatalf("%d commits refused, want 8", n)
	}
	m, _ := direct.GetEvents(ctx, key, []string{"a", "b"})
	if c := calendarOf(t, direct, key); !m["a"].Exists || m["b"].Exists || c.EventCount != 1 || c.ChangeCount != 1 {
		t.Errorf("mirror %+v, eventCount %d changeCount %d; want a only, 1 and 1", m, c.EventCount, c.ChangeCount)
	}
}

// Checkpoints and announcing markers: written, the answer lost. The call
// succeeds and Firestore holds what was written.
func TestAmbiguousCheckpointAndAnnouncing(t *testing.T) {
	forKinds(t, func(t *testing.T, k faultproxy.Kind) {
		p, via, direct := viaProxy(t)
		ctx := context.Background()
		key, l := leaseOn(t, via, "checkpoint@x")
		cp := Checkpoint{StartedAt: time.Now().UTC().Truncate(time.Millisecond), Full: true, PageToken: "p2", Chunks: 1, Pages: 1}
		p.FailNext(faultproxy.FirestoreCommit, 1, k)
		if err := via.SaveCheckpoint(ctx, key, l, cp, &Chunk{IDs: []string{"a", "b"}}); err != nil {
			t.Errorf("checkpoint: %v", err)
		}
		if ch, err := direct.Chunks(ctx, key, 1); err != nil || !slices.Equal(ch[0].IDs, []string{"a", "b"}) {
			t.Errorf("chunks %v %v", ch, err)
		}
		p.FailNext(faultproxy.FirestoreCommit, 1, k)
		if err := via.MarkAnnouncing(ctx, key, l, []string{"x", "y"}); err != nil {
			t.Errorf("mark announcing: %v", err)
		}
		p.FailNext(faultproxy.FirestoreCommit, 1, k)
		if err := via.UnmarkAnnouncing(ctx, key, l, []string{"x"}); err != nil {
			t.Errorf("unmark announcing: %v", err)
		}
		if ids, _ := direct.Announcing(ctx, key); !slices.Equal(ids, []string{"y"}) {
			t.Errorf("announcing %v, want [y]", ids)
		}
	})
}

// A replacement lands only over the version it was planned from: the stored
// document, changed since it was read, stays (and is not counted), and the
// error is not a lost lease. A replacement removes the fields the new
// version lacks.
func TestReplacementOnlyOverItsVersion(t *testing.T) {
	ctx := context.Background()
	s := testStore(t)
	key, l := leaseOn(t, s, "replace@x")
	v1 := doc("e", `"1"`)
	v1["location"] = "Room 1"
	if _, err := s.WriteEvents(ctx, key, l, []EventWrite{{ID: "e", Doc: v1, Delta: 1}}); err != nil {
		t.Fatal(err)
	}
	read, _ := s.GetEvents(ctx, key, []string{"e"})
	if _, err := s.WriteEvents(ctx, key, l, []EventWrite{{ID: "e", Doc: doc("e", `"2"`), Replaces: read["e"]}}); err != nil {
		t.Fatal(err)
	}
	snap, err := s.Events(key).Doc("e").Get(ctx)
	if err != nil || snap.Data()["etag"] != `"2"` || snap.Data()["location"] != nil {
		t.Fatalf("replaced: %v %v; want etag 2 without location", snap.Data(), err)
	}
	// Planned from v1, but v2 is stored now.
	_, err = s.WriteEvents(ctx, key, l, []EventWrite{{ID: "e", Doc: doc("e", `"3"`), Replaces: read["e"]}})
	if err == nil || errors.Is(err, ErrLeaseLost) {
		t.Fatalf("a replacement over another version: %v; want an error, not ErrLeaseLost", err)
	}
	m, _ := s.GetEvents(ctx, key, []string{"e"})
	if c := calendarOf(t, s, key); m["e"].Etag != `"2"` || c.ChangeCount != 2 {
		t.Errorf("etag %s changeCount %d; want 2 and 2", m["e"].Etag, c.ChangeCount)
	}
}

// LetGo: the lease released and the calendar left dirty, the answer lost.
// The stopping session learns the cover Firestore recorded.
func TestAmbiguousLetGo(t *testing.T) {
	forKinds(t, func(t *testing.T, k faultproxy.Kind) {
		p, via, direct := viaProxy(t)
		key, l := leaseOn(t, via, "letgo@x")
		lostOnce(t, p, k)
		cv, err := via.LetGo(context.Background(), key, l, Request{ReceivedAt: time.Now(), MessageID: "m1"})
		if err != nil || !cv.Pending || cv.Holder != "" || cv.Held {
			t.Fatalf("let go: %+v %v; want a sync owed, no holder", cv, err)
		}
		if c := calendarOf(t, direct, key); c.LeaseOwner != "" || !c.Dirty {
			t.Errorf("after letting go: owner %q dirty %v", c.LeaseOwner, c.Dirty)
		}
	})
}

// The quota budget's give-back (a leaser that raced past the limit returns
// the excess) with its answer lost: applied once, whatever the client's
// retry does, so the budget never grants more than its limit. An increment
// of -n retried by the client was applied twice and granted the excess
// again.
func TestAmbiguousQuotaGiveBack(t *testing.T) {
	forKinds(t, func(t *testing.T, k faultproxy.Kind) {
		p, via, direct := viaProxy(t)
		ctx := context.Background()
		bucket := "giveback-" + string(k)
		const limit = 10
		// via's increment reaches Firestore late; meanwhile direct takes
		// the whole budget. via then reads 15 of 10 and gives 5 back, and
		// that answer is lost.
		p.FailNext(faultproxy.FirestoreCommit, 1, faultproxy.Latency)
		lostOnce(t, p, k)
		type res struct {
			n   int
			err error
		}
		done := make(chan res, 1)
		go func() {
			n, _, err := via.LeaseQuota(ctx, bucket, 5, limit, time.Minute)
			done <- res{n, err}
		}()
		for p.Counts().Calls[faultproxy.FirestoreCommit] == 0 {
			time.Sleep(5 * time.Millisecond)
		}
		if n, _, err := direct.LeaseQuota(ctx, bucket, limit, limit, time.Minute); err != nil || n != limit {
			t.Fatalf("direct leased %d of %d: %v", n, limit, err)
		}
		r := <-done
		if r.err != nil || r.n != 0 {
			t.Errorf("via leased %d from a full budget (%v); want 0 and no error", r.n, r.err)
		}
		q, err := direct.readQuota(ctx, direct.Client.Collection(CollQuota).Doc(bucket), time.Now(), time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if q.used != limit {
			t.Errorf("the budget counts %d calls granted; %d were", q.used, limit)
		}
		if n, _, err := direct.LeaseQuota(ctx, bucket, 1, limit, time.Minute); err != nil || n != 0 {
			t.Errorf("a full budget granted %d more (%v)", n, err)
		}
	})
}
