package channels

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/calsync/calsync/shared/store"
)

// Unit tests of ensure's pure core (decide.go): the records as a run reads
// them, no emulator.
func TestPlanChannels(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	const timeout, renewBefore = 2 * time.Minute, 26 * time.Hour
	// rec is channel id in state, created ago, expiring in left, signed by k1.
	rec := func(id, state string, ago, left time.Duration) store.Channel {
		return store.Channel{ChannelID: id, State: state, CreatedAt: now.Add(-ago), Expiration: now.Add(left), TokenKeyID: "k1"}
	}
	live := func(id string, ago, left time.Duration) store.Channel { return rec(id, store.ChannelActive, ago, left) }
	week := 7 * 24 * time.Hour
	on := wanted{active: true, renewBefore: renewBefore, signingKey: "k1"}
	for _, tc := range []struct {
		name  string
		chans []store.Channel
		w     wanted
		want  string // the plan in short (summary)
	}{
		{"no channel: create a chain", nil, on, "create after \"\""},
		{"one live, not due: keep", []store.Channel{live("a", time.Hour, week)}, on, "keep a"},
		{"one live, due: renew it", []store.Channel{live("a", 6*24*time.Hour, 20*time.Hour)}, on, "keep a; renew after a"},
		{"due within the hour: renew, expiring soon", []store.Channel{live("a", week, time.Hour)}, on, "keep a; renew after a; expiring soon"},
		{"not due but within 6 h (short window): expiring soon",
			[]store.Channel{live("a", week, 3*time.Hour)}, wanted{active: true, renewBefore: time.Hour, signingKey: "k1"}, "keep a; expiring soon"},
		{"signed by a retired key: renewed now", []store.Channel{live("a", time.Hour, week)},
			wanted{active: true, renewBefore: renewBefore, signingKey: "k2"}, "keep a; renew after a; rekey"},
		{"a version 1 token (no key id): renewed now",
			[]store.Channel{{ChannelID: "a", State: store.ChannelActive, CreatedAt: now, Expiration: now.Add(week)}}, on, "keep a; renew after a; rekey"},
		{"two live: keep the newest, stop the other",
			[]store.Channel{live("old", 2*time.Hour, week), live("new", time.Hour, week)}, on, "stop old; keep new"},
		{"two live made at once: the later in chain order is kept",
			[]store.Channel{live("b", time.Hour, week), live("c", time.Hour, week), live("a", time.Hour, week)}, on, "stop b,a; keep c"},
		{"an expired one: closed, the chain goes on after it",
			[]store.Channel{live("a", week, -time.Minute)}, on, "expired a; create after \"a\""},
		{"a stopped record still names the chain's latest",
			[]store.Channel{rec("a", store.ChannelStopped, time.Hour, week)}, on, "create after \"a\""},
		{"a pending record of a run at work: leave it alone",
			[]store.Channel{rec("b", store.ChannelPending, time.Minute, 0), live("a", week, time.Hour)}, on, "busy"},
		{"an abandoned pending record: stopped with the calendar's resource id, and a new channel",
			[]store.Channel{{ChannelID: "a", State: store.ChannelStopped, ResourceID: "r1", CreatedAt: now.Add(-week)},
				rec("b", store.ChannelPending, time.Hour, 0)}, on, "abandoned b@r1; create after \"b\""},
		{"not active: every live channel stopped", []store.Channel{live("a", time.Hour, week), live("b", 2*time.Hour, week)},
			wanted{renewBefore: renewBefore, signingKey: "k1"}, "stop a,b"},
		{"not active, though another run is at it: stopped all the same",
			[]store.Channel{live("a", time.Hour, week), rec("b", store.ChannelPending, time.Second, 0)},
			wanted{renewBefore: renewBefore, signingKey: "k1"}, "stop a"},
		{"polled: no channel wanted", []store.Channel{live("a", time.Hour, week)},
			wanted{active: true, pollOnly: true, renewBefore: renewBefore, signingKey: "k1"}, "stop a"},
	} {
		r := sortRecords(tc.chans, now, timeout)
		if got := summary(r, planChannels(r, tc.w, now)); got != tc.want {
			t.Errorf("%s:\n got %s\nwant %s", tc.name, got, tc.want)
		}
	}
}

// summary is a records' plan in short.
func summary(r records, p channelPlan) string {
	var parts []string
	ids := func(chans []store.Channel, withResource bool) string {
		var s []string
		for _, ch := range chans {
			if withResource {
				s = append(s, ch.ChannelID+"@"+ch.ResourceID)
			} else {
				s = append(s, ch.ChannelID)
			}
		}
		return strings.Join(s, ",")
	}
	if len(r.expired) > 0 {
		parts = append(parts, "expired "+ids(r.expired, false))
	}
	if len(r.abandoned) > 0 {
		parts = append(parts, "abandoned "+ids(r.abandoned, true))
	}
	if p.busy {
		parts = append(parts, "busy")
	}
	if len(p.stop) > 0 {
		parts = append(parts, "stop "+ids(p.stop, false))
	}
	if p.keep.ChannelID != "" {
		parts = append(parts, "keep "+p.keep.ChannelID)
	}
	switch p.watch {
	case watchCreate:
		parts = append(parts, fmt.Sprintf("create after %q", p.after))
	case watchRenew:
		parts = append(parts, "renew after "+p.after)
		if p.rekey {
			parts = append(parts, "rekey")
		}
	}
	if p.expiringSoon {
		parts = append(parts, "expiring soon")
	}
	return strings.Join(parts, "; ")
}
