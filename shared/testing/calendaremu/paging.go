package calendaremu

import (
	"encoding/binary"
	"hash/fnv"
	"time"
)

// Paging as Google pages events.list: "the number of events in the
// resulting page may be less than this value, or none at all, even if there
// are more events matching the query" (events.list reference), and page
// tokens do not live for ever. A client that takes a short or empty page
// for the last one, or keeps a page token for later, fails against Google;
// here too.

// Paging sets how events.list pages. New applies DefaultPaging unless
// Options.Paging is set; SetPaging replaces it as given (zero: full pages,
// tokens that never expire).
type Paging struct {
	// ShortPages is the share of pages cut short, to a length from 0 (an
	// empty page) to maxResults-1, when more items follow; they still
	// carry a nextPageToken. Which pages are cut depends only on the seed
	// (Options.Seed), the page's number and the listing's mode, so a test
	// sees the same pages on every run.
	ShortPages float64 `json:"shortPages"`
	// TokenTTL: an older page token answers 410 fullSyncRequired (location
	// pageToken), like a dead sync token: start the listing again. Google
	// documents neither the lifetime nor the answer.
	TokenTTL time.Duration `json:"tokenTTL"`
}

// DefaultPaging is what New uses: a tenth of the pages short, tokens
// expiring after an hour.
var DefaultPaging = Paging{ShortPages: 0.1, TokenTTL: time.Hour}

// SetPaging replaces the paging settings.
func (s *Server) SetPaging(p Paging) {
	s.mu.Lock()
	s.opts.Paging = p
	s.mu.Unlock()
}

// pageLimitLocked is the number of items page pt may hold: maxResults, or
// less when the seed makes it a short page.
func (s *Server) pageLimitLocked(pt pageToken, maxResults int) int {
	p := s.opts.Paging.ShortPages
	if p <= 0 {
		return maxResults
	}
	h := fnv.New64a()
	var b []byte
	b = binary.AppendUvarint(b, s.opts.Seed)
	b = binary.AppendVarint(b, pt.page)
	_, _ = h.Write(append(b, pt.mode))
	v := h.Sum64()
	if float64(v%10000) >= p*10000 {
		return maxResults
	}
	return int((v >> 32) % uint64(maxResults))
}

// pageTokenExpiredLocked reports a page token older than the TTL.
func (s *Server) pageTokenExpiredLocked(t pageToken) bool {
	ttl := s.opts.Paging.TokenTTL
	return ttl > 0 && time.Since(time.UnixMilli(t.issued)) > ttl
}
