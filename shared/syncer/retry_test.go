package syncer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"syscall"
	"testing"

	"golang.org/x/oauth2"
	"google.golang.org/api/googleapi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/calsync/calsync/shared/calclient"
	"github.com/calsync/calsync/shared/store"
)

func TestClassify(t *testing.T) {
	gerr := func(code int, reason string) error {
		return &googleapi.Error{Code: code, Errors: []googleapi.ErrorItem{{Reason: reason}}}
	}
	invalidGrant := &url.Error{Op: "Get", URL: "https://x", Err: &oauth2.RetrieveError{
		Response: &http.Response{StatusCode: 400}, ErrorCode: "invalid_grant"}}
	for _, tc := range []struct {
		err  error
		want Kind
	}{
		{gerr(403, "rateLimitExceeded"), KindRateLimited},
		{gerr(403, "userRateLimitExceeded"), KindRateLimited},
		{gerr(429, "rateLimitExceeded"), KindRateLimited},
		{&googleapi.Error{Code: 429, Body: "<html>"}, KindRateLimited},
		{fmt.Errorf("x: %w", &calclient.BudgetError{Bucket: "user"}), KindRateLimited},
		{&googleapi.Error{Code: 502, Body: "<html>"}, KindTransient},
		{&googleapi.Error{Code: 403}, KindOther},
		{gerr(500, "backendError"), KindTransient},
		{gerr(503, ""), KindTransient},
		{gerr(403, "quotaExceeded"), KindQuota},
		{gerr(403, "forbidden"), KindOther},
		{gerr(403, "insufficientPermissions"), KindAuthDenied},
		{gerr(403, "accessNotConfigured"), KindAuthDenied},
		{&oauth2.RetrieveError{Response: &http.Response{StatusCode: 400}, ErrorCode: "admin_policy_enforced"}, KindAuthDenied},
		{&oauth2.RetrieveError{Response: &http.Response{StatusCode: 400}, ErrorCode: "access_denied"}, KindAuthDenied},
		{gerr(400, "invalid"), KindOther},
		{gerr(410, "fullSyncRequired"), KindSyncTokenGone},
		{fmt.Errorf("page 2: %w", gerr(410, "fullSyncRequired")), KindSyncTokenGone},
		{gerr(410, "deleted"), KindSyncTokenGone},
		{&googleapi.Error{Code: 410}, KindSyncTokenGone},
		{gerr(404, "notFound"), KindNotFound},
		{gerr(401, "authError"), KindAuthDenied},
		{invalidGrant, KindAuthDenied},
		{&url.Error{Op: "Get", URL: "https://x", Err: &oauth2.RetrieveError{Response: &http.Response{StatusCode: 401}, ErrorCode: "unauthorized_client"}}, KindAuthDenied},
		{&oauth2.RetrieveError{Response: &http.Response{StatusCode: 400}, ErrorCode: "invalid_grant", ErrorDescription: "Invalid JWT Signature."}, KindOther},
		{&url.Error{Op: "Get", URL: "https://x", Err: errors.New(`impersonate: status code 400: {"error":"invalid_grant"}`)}, KindOther},
		{&oauth2.RetrieveError{Response: &http.Response{StatusCode: 503}, ErrorCode: "x"}, KindTransient},
		{fmt.Errorf("wrapped: %w", calclient.ErrAuthRevoked), KindAuthDenied},
		{store.ErrLeaseLost, KindLeaseLost},
		{status.Error(codes.Aborted, "contention"), KindTransient},
		{status.Error(codes.Unavailable, "down"), KindTransient},
		{fmt.Errorf("commit: %w", status.Error(codes.Aborted, "x")), KindTransient},
		{status.Error(codes.InvalidArgument, "too big"), KindOther},
		{status.Error(codes.PermissionDenied, "no"), KindOther},
		{&url.Error{Op: "Get", URL: "https://x", Err: syscall.ECONNRESET}, KindTransient},
		{io.ErrUnexpectedEOF, KindTransient},
		{context.DeadlineExceeded, KindTransient},
		{errors.New("mystery"), KindOther},
	} {
		if got := Classify(tc.err); got != tc.want {
			t.Errorf("Classify(%v) = %s, want %s", tc.err, got, tc.want)
		}
	}
}
