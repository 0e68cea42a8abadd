package channels

import (
	"cmp"
	"slices"
	"time"

	"github.com/calsync/calsync/shared/store"
)

// The pure core of ensure (ensure.go): what to do with a target's channel
// records, decided from the records alone, with no I/O. A change to what a
// run does with channels belongs here, and its test in decide_test.go; a
// change to how it calls Google or Firestore, in ensure.go.

// records is a target's channel records sorted by what they call for.
type records struct {
	live      []store.Channel // active and not expired, newest first (chain order)
	expired   []store.Channel // active but past their expiration: closed as expired
	abandoned []store.Channel // pending past the pending timeout: a dead run's, stopped (best effort) and closed
	busy      bool            // a pending record within the timeout: another run is at work
	latest    string          // the newest record's id, any state: a new channel follows it in the chain
}

// sortRecords sorts chans as of now. An abandoned record gets the
// calendar's resourceId from the others (Google's is per calendar), so it
// can be stopped.
func sortRecords(chans []store.Channel, now time.Time, pendingTimeout time.Duration) records {
	var r records
	var latest *store.Channel
	resourceID := ""
	for i := range chans {
		ch := chans[i]
		if latest == nil || ch.CreatedAt.After(latest.CreatedAt) || (ch.CreatedAt.Equal(latest.CreatedAt) && ch.ChannelID > latest.ChannelID) {
			latest = &chans[i]
		}
		if ch.ResourceID != "" {
			resourceID = ch.ResourceID
		}
		switch ch.State {
		case store.ChannelActive:
			if ch.Expiration.After(now) {
				r.live = append(r.live, ch)
			} else {
				r.expired = append(r.expired, ch)
			}
		case store.ChannelPending:
			if now.Sub(ch.CreatedAt) < pendingTimeout {
				r.busy = true
			}
		}
	}
	for _, ch := range chans {
		if ch.State == store.ChannelPending && now.Sub(ch.CreatedAt) >= pendingTimeout {
			ch.ResourceID = resourceID
			r.abandoned = append(r.abandoned, ch)
		}
	}
	if latest != nil {
		r.latest = latest.ChannelID
	}
	// Keep the newest (latest in its chain) first.
	slices.SortStableFunc(r.live, func(a, b store.Channel) int {
		if c := b.CreatedAt.Compare(a.CreatedAt); c != 0 {
			return c
		}
		return cmp.Compare(b.ChannelID, a.ChannelID)
	})
	return r
}

// watchAction is the watch call a run makes for a target.
type watchAction int

const (
	watchNone   watchAction = iota
	watchCreate             // no live channel: a new one, after records.latest in the chain
	watchRenew              // the kept channel is due (or signed by another key): its successor, then stop it
)

// channelPlan is what ensure does once the dead records are closed.
type channelPlan struct {
	stop         []store.Channel // live channels to stop: all when none is wanted, else the duplicates of keep
	keep         store.Channel   // the live channel kept (watch none or renew)
	watch        watchAction
	after        string // the chain id a new channel follows
	busy         bool   // another run holds the target's next channel: leave it alone
	expiringSoon bool   // keep expires within ExpiringSoonWindow (reported unless renewed)
	rekey        bool   // renewed because another key than the signing one signed its token
}

// wanted is what a target wants, as the run knows it.
type wanted struct {
	active      bool // followed: wants exactly one channel
	pollOnly    bool // polled, not pushed: wants none
	renewBefore time.Duration
	signingKey  string // the key id new tokens are signed with
}

// planChannels decides, from the records, what a run does: stop every live
// channel of a target that wants none; leave a target another run is at
// alone; create the missing channel; keep the newest and stop the others,
// renewing it when it expires within renewBefore or another key signed it.
func planChannels(r records, w wanted, now time.Time) channelPlan {
	if !w.active || w.pollOnly {
		return channelPlan{stop: r.live}
	}
	if r.busy {
		return channelPlan{busy: true}
	}
	if len(r.live) == 0 {
		return channelPlan{watch: watchCreate, after: r.latest}
	}
	p := channelPlan{keep: r.live[0], stop: r.live[1:]}
	left := p.keep.Expiration.Sub(now)
	p.expiringSoon = left < ExpiringSoonWindow
	// A channel whose token another key signed (or one minted before key
	// ids were recorded, a version 1 token) is renewed now, whatever its
	// expiry: that is step 3 of a key rotation (README.md), done by the
	// first run after the new key signs.
	p.rekey = p.keep.TokenKeyID != w.signingKey
	if left < w.renewBefore || p.rekey {
		p.watch, p.after = watchRenew, p.keep.ChannelID
	}
	return p
}
