package channels

import (
	"sort"
	"time"

	"github.com/calsync/calsync/shared/store"
)

// UnrecordedKey stands for channels whose records have no tokenKeyId: made
// before key ids were recorded, so their tokens are version 1 (no signed
// expiration). RenewChannels renews them like channels of a retired key.
const UnrecordedKey = "(v1, unrecorded)"

// KeyUsage is how many live channels a channel-token key signed.
type KeyUsage struct {
	KeyID string `json:"keyId"`
	Live  int    `json:"liveChannels"`
	// LastExpiry is when the last of them expires anyway: the latest a
	// rotation must wait without renewing.
	LastExpiry time.Time `json:"lastExpiry"`
}

// UsageByKey counts the live channels (active, not expired at now) of recs
// per signing key id, sorted by key id.
func UsageByKey(recs []store.Channel, now time.Time) []KeyUsage {
	by := map[string]*KeyUsage{}
	for _, ch := range recs {
		if ch.State != store.ChannelActive || !ch.Expiration.After(now) {
			continue
		}
		id := ch.TokenKeyID
		if id == "" {
			id = UnrecordedKey
		}
		u := by[id]
		if u == nil {
			u = &KeyUsage{KeyID: id}
			by[id] = u
		}
		u.Live++
		if ch.Expiration.After(u.LastExpiry) {
			u.LastExpiry = ch.Expiration
		}
	}
	out := make([]KeyUsage, 0, len(by))
	for _, u := range by {
		out = append(out, *u)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].KeyID < out[j].KeyID })
	return out
}
