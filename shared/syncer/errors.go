package syncer

import (
	"context"
	"errors"

	"golang.org/x/oauth2"
	"google.golang.org/api/googleapi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/calsync/calsync/shared/calclient"
	"github.com/calsync/calsync/shared/store"
)

// ErrAuthRevoked marks an error of a Services implementation that means the
// calendar's grant is gone (e.g. its stored credential is already revoked).
var ErrAuthRevoked = errors.New("syncer: grant revoked")

// Kind is how the worker reacts to an error.
type Kind int

// Error kinds.
const (
	// KindOther: unexpected (a bug, a 400): redelivered by Pub/Sub, then dead-lettered.
	KindOther Kind = iota
	// KindTransient: retried in process with jittered exponential backoff up
	// to the retry budget, then redelivered by Pub/Sub.
	KindTransient
	// KindQuota: 403 quotaExceeded; quick retries do not cure it: redelivered.
	KindQuota
	// KindSyncTokenGone: 410 fullSyncRequired: do a full resync.
	KindSyncTokenGone
	// KindNotFound: the calendar itself is gone (404, 410 deleted): status not_found, ack.
	KindNotFound
	// KindAuthRevoked: invalid_grant or 401: status auth_revoked, ack.
	KindAuthRevoked
	// KindLeaseLost: another worker took the calendar over: stop, ack.
	KindLeaseLost
)

func (k Kind) String() string {
	return [...]string{"other", "transient", "quota", "sync_token_gone", "not_found", "auth_revoked", "lease_lost"}[k]
}

// Classify sorts an error from the Calendar API, OAuth, Firestore or Pub/Sub.
// Calendar and OAuth errors are read with shared/calclient's classifiers, so
// the worker and RenewChannels agree on what is transient or permanent.
func Classify(err error) Kind {
	var ge *googleapi.Error
	var re *oauth2.RetrieveError
	switch {
	case err == nil:
		return KindOther
	case errors.Is(err, store.ErrLeaseLost):
		return KindLeaseLost
	case errors.Is(err, ErrAuthRevoked), calclient.IsAuthRevoked(err):
		return KindAuthRevoked
	case calclient.IsGone(err) && calclient.Reason(err) == "fullSyncRequired":
		return KindSyncTokenGone
	case calclient.IsGone(err), calclient.IsNotFound(err):
		return KindNotFound
	case calclient.IsQuotaExceeded(err):
		return KindQuota
	case calclient.IsRetryable(err):
		return KindTransient
	case errors.As(err, &ge), errors.As(err, &re):
		return KindOther // any other API or token-endpoint answer is not cured by retrying
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		// Our own context ended (or a server deadline passed): worth another try
		// if there is time left; the retry loop stops when the context is done.
		return KindTransient
	}
	if s, ok := status.FromError(err); ok && s.Code() != codes.OK && s.Code() != codes.Unknown {
		switch s.Code() {
		case codes.Aborted, codes.Unavailable, codes.DeadlineExceeded, codes.ResourceExhausted, codes.Internal:
			return KindTransient
		}
		return KindOther
	}
	return KindOther
}
