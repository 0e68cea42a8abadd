package enroll

import (
	"context"
	"math/rand/v2"
	"path"
	"time"

	"google.golang.org/api/calendar/v3"

	"github.com/calsync/calsync/shared/calclient"
	"github.com/calsync/calsync/shared/messages"
)

// roleRank orders Google's access roles.
var roleRank = map[string]int{"freeBusyReader": 1, "reader": 2, "writerWithoutPrivateAccess": 3, "writer": 3, "owner": 4}

// minRole is the filters' minimum access role, reader by default: below it
// Google gives free/busy only, nothing to mirror.
func minRole(f messages.Filters) string {
	if f.MinAccessRole == "" {
		return "reader"
	}
	return f.MinAccessRole
}

// keeps reports whether the filters enroll a calendar list entry: at least
// the minimum role (Google filters too; checked again here), primary when
// PrimaryOnly, matching an Include pattern (when there are any) and no
// Exclude pattern (shell patterns over the calendar id, path.Match).
func keeps(f messages.Filters, en *calendar.CalendarListEntry) bool {
	if roleRank[en.AccessRole] < roleRank[minRole(f)] {
		return false
	}
	if f.PrimaryOnly && !en.Primary {
		return false
	}
	if len(f.Include) > 0 && !matchAny(f.Include, en.Id) {
		return false
	}
	return !matchAny(f.Exclude, en.Id)
}

func matchAny(patterns []string, id string) bool {
	for _, p := range patterns {
		if ok, _ := path.Match(p, id); ok {
			return true
		}
	}
	return false
}

// retryCalendar runs one Calendar (or Directory) call with jittered
// exponential backoff while it fails with a retryable error (rate limits,
// 5xx), at most 5 tries.
func retryCalendar(ctx context.Context, f func() error) error {
	delay := 250 * time.Millisecond
	for i := 1; ; i++ {
		err := f()
		if err == nil || i >= 5 || !calclient.IsRetryable(err) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(delay/2 + rand.N(delay)):
		}
		delay *= 2
	}
}
