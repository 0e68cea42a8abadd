package webhook

import (
	"slices"
	"sync"
	"time"
)

// seenCapacity bounds the channels one instance remembers per generation
// (two generations are kept): about 150 bytes each, so at most ~20 MB. Only
// channels whose token verified get an entry, so a forger cannot fill it.
// seenNumbers bounds the message numbers remembered per channel.
const (
	seenCapacity = 65536
	seenNumbers  = 8
)

// seen is this instance's replay window: per channel, the message numbers
// it most recently published. A push with one of them is a replay or a
// duplicate delivery of something already published, and the sync that
// publish caused covers it. The exact numbers, never a maximum: the number
// is not signed, so a replay carrying a huge one would otherwise make every
// later real push of its channel look old. A late arrival of an older
// number is published again (one extra sync at most).
// It is an in-memory first line only: it costs nothing on the hot path and
// stops replays that reach the same instance; the SyncWorker's dedup in
// Firestore (store.Admit) is the one that holds across instances.
//
// Two generations approximate least-recently-used eviction without a list:
// when the current one is full it becomes the previous one, and a channel
// seen again is carried over.
type seen struct {
	mu        sync.Mutex
	cur, prev map[string]recentNumbers
}

// recentNumbers is a ring of the last seenNumbers numbers published (0: empty).
type recentNumbers struct {
	n    [seenNumbers]int64
	next uint8
}

func (r *recentNumbers) add(n int64) {
	if slices.Contains(r.n[:], n) {
		return
	}
	r.n[r.next] = n
	r.next = (r.next + 1) % seenNumbers
}

func newSeen() *seen { return &seen{cur: map[string]recentNumbers{}} }

// published reports whether number n of channel was already published here.
func (s *seen) published(channel string, n int64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.cur[channel]
	if !ok {
		r, ok = s.prev[channel]
	}
	return ok && n > 0 && slices.Contains(r.n[:], n)
}

// record notes that number n of channel was published (after Pub/Sub
// confirmed it: a push answered 503 must not count, Google retries it).
func (s *seen) record(channel string, n int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.cur[channel]
	if !ok {
		r = s.prev[channel] // carried over, or the zero ring
		if len(s.cur) >= seenCapacity {
			s.prev, s.cur = s.cur, make(map[string]recentNumbers, seenCapacity/4)
		}
	}
	r.add(n)
	s.cur[channel] = r
}

// unknownKeys remembers when this instance first saw each key id of the
// deployment's key history that it could not verify, to answer 503 for a
// window after that and 403 later. Only ids of that short configured list
// get an entry, so forgers cannot grow it.
type unknownKeys struct {
	mu    sync.Mutex
	first map[string]time.Time
}

// firstSeen returns when keyID was first seen (now, the first time).
func (u *unknownKeys) firstSeen(keyID string, now time.Time) time.Time {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.first == nil {
		u.first = map[string]time.Time{}
	}
	if t, ok := u.first[keyID]; ok {
		return t
	}
	u.first[keyID] = now
	return now
}
