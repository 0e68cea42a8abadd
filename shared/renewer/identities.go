package renewer

import (
	"context"
	"errors"
	"time"

	"github.com/calsync/calsync/shared/channels"
	"github.com/calsync/calsync/shared/enroll"
	"github.com/calsync/calsync/shared/lifecycle"
	"github.com/calsync/calsync/shared/logging"
	"github.com/calsync/calsync/shared/messages"
	"github.com/calsync/calsync/shared/store"
)

// The enrollment part of a run: identities' calendar-list channels are
// renewed, repaired and stopped like calendars' (shared/channels, the same
// chains), a list quiet for RECONCILE_AFTER is looked at again (Google drops
// a few notifications, list pushes too), and each Workspace domain's
// directory is diffed when its last diff is older than
// DIRECTORY_SYNC_INTERVAL (users added, suspended or deleted; rooms).

// identities ensures every identity's list channel; lists holds the open
// list channel records by identity key.
func (r *Renewer) identities(ctx context.Context, lists map[string][]store.Channel, sum *Summary) {
	if ctx.Err() != nil {
		return
	}
	ids, err := r.Store.AllIdentities(ctx)
	if err != nil {
		sum.Failed++
		r.failure(ctx, "", "identities", err)
		return
	}
	now := r.now()
	for key, id := range ids {
		if id.Status != store.StatusActive && len(lists[key]) == 0 {
			continue
		}
		sum.Identities++
		out, err := r.Channels.EnsureList(ctx, key, &id, lists[key], r.RenewBefore)
		r.count(sum, out)
		if err != nil {
			sum.Failed++
			res, lerr := r.lifecycle().Report(ctx, lifecycle.Identity(key, id), lifecycle.OpListWatch, err)
			if lerr != nil {
				r.failure(ctx, key, "status", lerr)
			}
			if res.Next == lifecycle.RetryLater {
				r.failure(ctx, key, "list_channel", err)
			}
			continue
		}
		if id.Status != store.StatusActive {
			continue
		}
		// A new channel or a quiet list: look at the list again (the
		// SyncWorker does, on a calendarList reconcile request).
		if out.Created || (r.ReconcileAfter > 0 && now.Sub(id.ListedAt) >= r.ReconcileAfter) {
			data, attrs, err := messages.ListRequest(key, messages.StateReconcile, now)
			if err == nil && r.Publisher != nil {
				err = r.Publisher.Publish(ctx, data, attrs, "")
			}
			if err != nil {
				sum.Failed++
				r.failure(ctx, key, "publish", err)
				continue
			}
			sum.ListReconciles++
		}
	}
	for key, chans := range lists {
		if _, ok := ids[key]; !ok {
			// The identity is gone: its channels are orphans.
			out, err := r.Channels.EnsureList(ctx, key, nil, chans, r.RenewBefore)
			r.count(sum, out)
			if err != nil {
				sum.Failed++
				r.failure(ctx, key, "list_channel", err)
			}
		}
	}
}

// count adds a channel outcome to the summary.
func (r *Renewer) count(sum *Summary, out channels.Outcome) {
	sum.Stopped += out.Stopped
	sum.Expired += out.Expired
	if out.Renewed {
		sum.Renewed++
	}
	if out.Rekeyed {
		sum.Rekeyed++
	}
	if out.Created {
		sum.Created++
	}
	if out.Busy {
		sum.Busy++
	}
	if out.ExpiringSoon {
		sum.ExpiringSoon++
	}
}

// directoryDiffClaim is how long a diff that began and has not finished
// keeps RenewChannels from starting another of the same domain; a diff
// that died is taken up after it.
const directoryDiffClaim = 15 * time.Minute

// directories diffs the directory of every active domain whose last diff is
// older than DirectorySyncInterval.
func (r *Renewer) directories(ctx context.Context, sum *Summary) {
	if r.Enroll == nil || ctx.Err() != nil {
		return
	}
	domains, err := r.Store.AllDomains(ctx)
	if err != nil {
		sum.Failed++
		r.failure(ctx, "", "domains", err)
		return
	}
	every := r.DirectorySyncInterval
	if every <= 0 {
		every = 24 * time.Hour
	}
	for _, d := range domains {
		// A domain whose directory was refused (its status) is tried every
		// run: the first read clears the status.
		if d.Status == store.StatusUnenrolled || (d.Status == store.StatusActive && r.now().Sub(d.LastDirectorySyncAt) < every) {
			continue
		}
		if d.Status == store.StatusActive && d.DiffInProgress(r.now(), directoryDiffClaim) {
			// An operator's enrollment (or another run) is diffing it now.
			r.log(ctx).InfoContext(ctx, "directory diff skipped: another diff of the domain is running",
				logging.KeyEvent, logging.EventDirectorySync, logging.KeyDomain, d.Domain,
				"startedAt", d.DirectorySyncStartedAt, logging.KeyReason, "diff_in_progress")
			continue
		}
		res, err := r.Enroll.SyncDirectory(ctx, d.Domain, nil)
		sum.Directories++
		sum.Failed += res.Failed
		switch {
		case errors.Is(err, enroll.ErrDirectoryRefused):
			sum.Failed++ // shared/lifecycle logged the refusal once, as the domain's status
		case err != nil:
			sum.Failed++
			r.failure(ctx, store.DomainKey(d.Domain), "directory", err)
		}
	}
}
