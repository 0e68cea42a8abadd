package syncer

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"syscall"

	"golang.org/x/oauth2"
	"google.golang.org/api/googleapi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

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
func Classify(err error) Kind {
	if err == nil {
		return KindOther
	}
	if errors.Is(err, store.ErrLeaseLost) {
		return KindLeaseLost
	}
	if errors.Is(err, ErrAuthRevoked) {
		return KindAuthRevoked
	}
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		if re.ErrorCode == "invalid_grant" {
			return KindAuthRevoked
		}
		if re.Response != nil && (re.Response.StatusCode >= 500 || re.Response.StatusCode == http.StatusTooManyRequests) {
			return KindTransient
		}
		return KindOther
	}
	var ge *googleapi.Error
	if errors.As(err, &ge) {
		reason := ""
		if len(ge.Errors) > 0 {
			reason = ge.Errors[0].Reason
		}
		switch {
		case ge.Code == http.StatusGone && reason == "fullSyncRequired":
			return KindSyncTokenGone
		case ge.Code == http.StatusGone, ge.Code == http.StatusNotFound:
			return KindNotFound
		case ge.Code == http.StatusUnauthorized:
			return KindAuthRevoked
		case ge.Code == http.StatusForbidden && (reason == "rateLimitExceeded" || reason == "userRateLimitExceeded"):
			return KindTransient
		case ge.Code == http.StatusForbidden && reason == "quotaExceeded":
			return KindQuota
		case ge.Code == http.StatusTooManyRequests, ge.Code >= 500:
			return KindTransient
		}
		return KindOther
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
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
	var ue *url.Error
	var ne net.Error
	if errors.As(err, &ue) || errors.As(err, &ne) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ECONNREFUSED) {
		return KindTransient
	}
	return KindOther
}
