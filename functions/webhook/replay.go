package webhook

import (
	"sync"
	"time"
)

// seenCapacity bounds the channels one instance remembers per generation
// (two generations are kept): about 100 bytes each, so at most ~13 MB. Only
// channels whose token verified get an entry, so a forger cannot fill it.
const seenCapacity = 65536

// seen is this instance's replay window: per channel, the highest message
// number it published. Google's message numbers only grow per channel, so a
// push numbered at or below it is a replay or a duplicate delivery of
// something already published, and the sync that publish caused covers it.
// It is an in-memory first line only: it costs nothing on the hot path and
// stops replays that reach the same instance; the SyncWorker's dedup in
// Firestore (store.Admit) is the one that holds across instances.
//
// Two generations approximate least-recently-used eviction without a list:
// when the current one is full it becomes the previous one, and a channel
// seen again is carried over.
type seen struct {
	mu        sync.Mutex
	cur, prev map[string]int64
}

func newSeen() *seen { return &seen{cur: map[string]int64{}} }

// published reports whether number n of channel was already published here.
func (s *seen) published(channel string, n int64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	top, ok := s.cur[channel]
	if !ok {
		top, ok = s.prev[channel]
	}
	return ok && n <= top
}

// record notes that number n of channel was published (after Pub/Sub
// confirmed it: a push answered 503 must not count, Google retries it).
func (s *seen) record(channel string, n int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if top, ok := s.cur[channel]; ok {
		s.cur[channel] = max(top, n)
		return
	}
	if top, ok := s.prev[channel]; ok {
		n = max(top, n)
	}
	if len(s.cur) >= seenCapacity {
		s.prev, s.cur = s.cur, make(map[string]int64, seenCapacity/4)
	}
	s.cur[channel] = n
}

// unknownKeyCapacity bounds the unknown key ids remembered: forgers can
// name any number of them, and the window only needs the few a rotation
// mistake produces.
const unknownKeyCapacity = 64

// unknownKeys remembers when this instance first saw each key id it could
// not verify, to answer 503 for a window after that and 403 later.
type unknownKeys struct {
	mu    sync.Mutex
	first map[string]time.Time
}

// firstSeen returns when keyID was first seen (now, the first time). When
// full, the oldest entry makes room: the worst a forger can do by naming
// many ids is restart a real id's window, which keeps Google retrying.
func (u *unknownKeys) firstSeen(keyID string, now time.Time) time.Time {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.first == nil {
		u.first = map[string]time.Time{}
	}
	if t, ok := u.first[keyID]; ok {
		return t
	}
	if len(u.first) >= unknownKeyCapacity {
		oldest, at := "", now
		for id, t := range u.first {
			if t.Before(at) || oldest == "" {
				oldest, at = id, t
			}
		}
		delete(u.first, oldest)
	}
	u.first[keyID] = now
	return now
}
