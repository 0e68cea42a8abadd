package calendaremu

import (
	"encoding/base64"
	"encoding/binary"
	"hash/fnv"
	"math"
	"net/url"
	"sort"
)

// Sync and page tokens are opaque base64 of a small binary record.
// A sync token holds the calendar's change sequence: an incremental list is
// "every version with seq > token seq". It also names the calendar and its
// token epoch, so InvalidateSyncTokens (epoch+1) turns old tokens into 410s.
// A page token holds a cursor (the sort key of the last item sent), the mode,
// a hash of the query (the query may not change between pages) and the
// snapshot sequence taken at the first page, which becomes nextSyncToken.

type syncToken struct {
	cal, epoch uint32
	seq        int64
}

func (t syncToken) encode() string {
	b := []byte{1}
	b = binary.BigEndian.AppendUint32(b, t.cal)
	b = binary.BigEndian.AppendUint32(b, t.epoch)
	b = binary.AppendUvarint(b, uint64(t.seq))
	return base64.StdEncoding.EncodeToString(b)
}

func decodeSyncToken(s string) (syncToken, bool) {
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil || len(b) < 10 || b[0] != 1 {
		return syncToken{}, false
	}
	t := syncToken{cal: binary.BigEndian.Uint32(b[1:]), epoch: binary.BigEndian.Uint32(b[5:])}
	v, n := binary.Uvarint(b[9:])
	if n <= 0 || 9+n != len(b) || v > math.MaxInt64 {
		return syncToken{}, false
	}
	t.seq = int64(v)
	return t, true
}

const (
	modeFull byte = iota + 1
	modeSync
	modeInstances
	modeList // calendarList.list (its tokens have their own format)
)

type pageToken struct {
	mode       byte
	cal, epoch uint32
	qhash      uint32
	snap       int64
	key        itemKey
	page       int64 // number of the page it asks for (the first is 1)
	issued     int64 // Unix seconds: tokens expire (paging.go)
}

// itemKey orders list items; pages resume strictly after the last key sent.
type itemKey [3]int64

func (a itemKey) less(b itemKey) bool {
	for i := range a {
		if a[i] != b[i] {
			return a[i] < b[i]
		}
	}
	return false
}

func (t pageToken) encode() string {
	b := []byte{3, t.mode}
	b = binary.BigEndian.AppendUint32(b, t.cal)
	b = binary.BigEndian.AppendUint32(b, t.epoch)
	b = binary.BigEndian.AppendUint32(b, t.qhash)
	for _, v := range []int64{t.snap, t.key[0], t.key[1], t.key[2], t.page, t.issued} {
		b = binary.AppendVarint(b, v)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodePageToken(s string) (pageToken, bool) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(b) < 14 || b[0] != 3 {
		return pageToken{}, false
	}
	t := pageToken{mode: b[1], cal: binary.BigEndian.Uint32(b[2:]), epoch: binary.BigEndian.Uint32(b[6:]),
		qhash: binary.BigEndian.Uint32(b[10:])}
	rest := b[14:]
	vals := make([]int64, 6)
	for i := range vals {
		v, n := binary.Varint(rest)
		if n <= 0 {
			return pageToken{}, false
		}
		vals[i], rest = v, rest[n:]
	}
	if len(rest) != 0 || t.mode < modeFull || t.mode > modeInstances {
		return pageToken{}, false
	}
	t.snap, t.page, t.issued = vals[0], vals[4], vals[5]
	copy(t.key[:], vals[1:4])
	return t, true
}

// ignoredForHash are parameters that may differ between pages of one listing
// (a client may or may not repeat syncToken next to pageToken).
var ignoredForHash = map[string]bool{"pageToken": true, "syncToken": true, "maxResults": true, "alt": true, "prettyPrint": true,
	"fields": true, "key": true, "quotaUser": true, "$.xgafv": true, "maxAttendees": true, "timeZone": true}

func queryHash(q url.Values) uint32 {
	keys := make([]string, 0, len(q))
	for k := range q {
		if !ignoredForHash[k] {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	h := fnv.New32a()
	for _, k := range keys {
		vs := append([]string(nil), q[k]...)
		sort.Strings(vs)
		for _, v := range vs {
			_, _ = h.Write([]byte(k + "=" + v + "&"))
		}
	}
	return h.Sum32()
}
