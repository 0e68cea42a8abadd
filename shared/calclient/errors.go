package calclient

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"syscall"

	"golang.org/x/oauth2"
	"google.golang.org/api/googleapi"
)

// ErrAuthRevoked: the calendar's grant is known to be dead (e.g. its stored
// credential is already marked auth_revoked), so no request was made.
var ErrAuthRevoked = errors.New("calclient: grant revoked")

// IsAuthRevoked is THE test for a dead grant, for every caller: the token
// endpoint answered invalid_grant (a *oauth2.RetrieveError, often inside a
// *url.Error), the API answered 401 although the transport had just refreshed
// the token (a Factory client retries a 401 once with a fresh token, so a 401
// reaching the caller has survived a refresh), or the grant was already known
// dead (ErrAuthRevoked).
func IsAuthRevoked(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, ErrAuthRevoked) {
		return true
	}
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		switch tokenErrorCode(re) {
		case "invalid_grant", "unauthorized_client":
			// unauthorized_client: domain-wide delegation withdrawn (also permanent).
			return true
		}
		return false
	}
	var ge *googleapi.Error
	return errors.As(err, &ge) && ge.Code == http.StatusUnauthorized
}

// tokenErrorCode is the token endpoint's error code: golang.org/x/oauth2/jwt
// (domain-wide delegation with a key) leaves RetrieveError.ErrorCode empty
// and only keeps the body, {"error": "...", "error_description": "..."}.
func tokenErrorCode(re *oauth2.RetrieveError) string {
	if re.ErrorCode != "" {
		return re.ErrorCode
	}
	var body struct {
		Error string `json:"error"`
	}
	_ = json.Unmarshal(re.Body, &body)
	return body.Error
}

// IsRetryable reports errors worth retrying with exponential backoff: 403
// rateLimitExceeded / userRateLimitExceeded, 429, 5xx (from the API or the
// token endpoint), and network failures.
func IsRetryable(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var ge *googleapi.Error
	if errors.As(err, &ge) {
		switch {
		case ge.Code == http.StatusTooManyRequests, ge.Code >= 500:
			return true
		case ge.Code == http.StatusForbidden:
			return hasReason(ge, "rateLimitExceeded", "userRateLimitExceeded")
		}
		return false
	}
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		return re.Response != nil && (re.Response.StatusCode >= 500 || re.Response.StatusCode == http.StatusTooManyRequests)
	}
	var ne net.Error
	var ue *url.Error
	return errors.As(err, &ne) || errors.As(err, &ue) ||
		errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ECONNREFUSED)
}

// IsQuotaExceeded reports 403 quotaExceeded / dailyLimitExceeded: usage limits
// that quick retries do not cure.
func IsQuotaExceeded(err error) bool {
	var ge *googleapi.Error
	return errors.As(err, &ge) && ge.Code == http.StatusForbidden && hasReason(ge, "quotaExceeded", "dailyLimitExceeded")
}

// IsNotFound reports 404 (an unknown calendar or channel, or one the user
// cannot see).
func IsNotFound(err error) bool { return hasCode(err, http.StatusNotFound) }

// IsGone reports 410 (sync token dead: full sync required; or deleted).
func IsGone(err error) bool { return hasCode(err, http.StatusGone) }

// Reason returns the first Google error reason of err ("" if none).
func Reason(err error) string {
	var ge *googleapi.Error
	if errors.As(err, &ge) && len(ge.Errors) > 0 {
		return ge.Errors[0].Reason
	}
	return ""
}

func hasCode(err error, code int) bool {
	var ge *googleapi.Error
	return errors.As(err, &ge) && ge.Code == code
}

func hasReason(ge *googleapi.Error, reasons ...string) bool {
	for _, e := range ge.Errors {
		for _, r := range reasons {
			if e.Reason == r {
				return true
			}
		}
	}
	return false
}
