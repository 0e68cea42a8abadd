package calclient

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"syscall"

	"golang.org/x/oauth2"
	"google.golang.org/api/googleapi"
)

// ErrAuthRevoked: the calendar's grant is known to be dead (e.g. its stored
// credential is already marked auth_revoked), so no request was made.
var ErrAuthRevoked = errors.New("calclient: grant revoked")

// IsAuthRevoked is THE test for a dead grant, for every caller: the token
// endpoint answered invalid_grant (a refresh token revoked or expired, or a
// delegation subject suspended or deleted) or unauthorized_client (a
// domain-wide delegation revoked, or not authorised for the scope) — a
// *oauth2.RetrieveError, often inside a *url.Error —, the API answered 401
// although the transport had just refreshed the token (a Factory client
// retries a 401 once with a fresh token, so a 401 reaching the caller has
// survived a refresh), or the grant was already known dead (ErrAuthRevoked).
// An invalid_grant about the assertion itself ("Invalid JWT ...": signature,
// clock, audience) is calsync's problem, not the user's grant: not revoked.
func IsAuthRevoked(err error) bool {
	d := DenialOf(err)
	return d == DeniedRevoked || d == DeniedUnauthorizedClient
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
// rateLimitExceeded / userRateLimitExceeded, 429, 5xx (from the API, the
// token endpoint or IAM), and real network failures (IsNetworkError). Any
// other answer a server gave is not cured by asking again.
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
	return IsNetworkError(err)
}

// IsNetworkError reports a failure to talk to the server at all: dial,
// connection refused or reset, DNS, a timeout, a connection cut short (EOF).
// A *url.Error alone is not one: net/http wraps whatever a transport
// returns in it, token-endpoint refusals included, so its cause decides.
func IsNetworkError(err error) bool {
	if err == nil {
		return false
	}
	var ue *url.Error
	for errors.As(err, &ue) {
		err = ue.Err
	}
	if err == nil {
		return false
	}
	var op *net.OpError
	var dns *net.DNSError
	var ne net.Error
	switch {
	case errors.As(err, &op), errors.As(err, &dns):
		return true
	case errors.As(err, &ne) && ne.Timeout():
		return true
	}
	return errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNABORTED) || errors.Is(err, syscall.EPIPE)
}

// IsPushNotSupported reports events.watch's 400
// pushNotSupportedForRequestedResource: Google will not watch this calendar
// (holiday calendars, and others); it can only be polled.
func IsPushNotSupported(err error) bool {
	var ge *googleapi.Error
	return errors.As(err, &ge) && ge.Code == http.StatusBadRequest && hasReason(ge, "pushNotSupportedForRequestedResource")
}

// IsRateLimited reports Google's "slow down": 429, or 403
// rateLimitExceeded / userRateLimitExceeded (the per-minute quotas), and
// calsync's own call budget being spent (*BudgetError).
func IsRateLimited(err error) bool {
	if _, ok := IsBudgetExhausted(err); ok {
		return true
	}
	var ge *googleapi.Error
	if !errors.As(err, &ge) {
		return false
	}
	return ge.Code == http.StatusTooManyRequests ||
		(ge.Code == http.StatusForbidden && hasReason(ge, "rateLimitExceeded", "userRateLimitExceeded"))
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

// HTTPStatus is the HTTP status of a Calendar, IAM or token-endpoint error
// (0 if it has none: a network failure, calsync's own), for log lines.
func HTTPStatus(err error) int {
	var ge *googleapi.Error
	if errors.As(err, &ge) {
		return ge.Code
	}
	var re *oauth2.RetrieveError
	if errors.As(err, &re) && re.Response != nil {
		return re.Response.StatusCode
	}
	return 0
}

// Denial is what a token-endpoint or API refusal means for the grant, as
// Google documents it; each is a configuration or permission state that
// quick retries do not cure (and that must never reach the dead-letter
// topic). "" for anything else.
type Denial string

// Denials.
const (
	// DeniedRevoked: invalid_grant (refresh token revoked or expired,
	// delegation subject suspended or deleted), a 401 that survived a
	// refresh, or a grant already known dead.
	DeniedRevoked Denial = "revoked"
	// DeniedUnauthorizedClient: the token endpoint's unauthorized_client,
	// the client is not authorised for domain-wide delegation (or for one
	// of the scopes). A fresh delegation answers it too until Google has
	// it (up to 24 h).
	DeniedUnauthorizedClient Denial = "unauthorized_client"
	// DeniedScope: a scope is missing: access_denied or invalid_scope from
	// the token endpoint, 403 insufficientPermissions from an API (granular
	// consent: the user unticked one).
	DeniedScope Denial = "scope_missing"
	// DeniedAPIDisabled: 403 accessNotConfigured / SERVICE_DISABLED, an API
	// not enabled in the project.
	DeniedAPIDisabled Denial = "api_disabled"
	// DeniedAdminPolicy: admin_policy_enforced (the Workspace admin blocks
	// the app or a scope) or org_internal (an Internal app, a user outside
	// its organisation).
	DeniedAdminPolicy Denial = "admin_policy"
	// DeniedClientDisabled: disabled_client, the OAuth client is disabled.
	DeniedClientDisabled Denial = "client_disabled"
)

// ErrTenantForbidden: the calendar's tenant may not have the subject read
// by delegation (TENANTS changed since it was enrolled); no token is signed.
var ErrTenantForbidden = errors.New("calclient: delegation outside the tenant's domains")

// DenialOf sorts err into a Denial ("" when it is none).
func DenialOf(err error) Denial {
	if err == nil {
		return ""
	}
	if errors.Is(err, ErrAuthRevoked) {
		return DeniedRevoked
	}
	if errors.Is(err, ErrTenantForbidden) {
		// The deployment's own policy, as a Workspace admin's would be.
		return DeniedAdminPolicy
	}
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		switch tokenErrorCode(re) {
		case "invalid_grant":
			// Not one about the assertion itself (our clock, our signing):
			// that is ours to fix, the grant is alive.
			if strings.HasPrefix(re.ErrorDescription, "Invalid JWT") {
				return ""
			}
			return DeniedRevoked
		case "unauthorized_client":
			return DeniedUnauthorizedClient
		case "access_denied", "invalid_scope":
			return DeniedScope
		case "admin_policy_enforced", "org_internal":
			return DeniedAdminPolicy
		case "disabled_client":
			return DeniedClientDisabled
		}
		return ""
	}
	var ge *googleapi.Error
	if !errors.As(err, &ge) {
		return ""
	}
	switch {
	case ge.Code == http.StatusUnauthorized:
		return DeniedRevoked
	case ge.Code != http.StatusForbidden:
		return ""
	case hasReason(ge, "insufficientPermissions", "ACCESS_TOKEN_SCOPE_INSUFFICIENT"):
		return DeniedScope
	case hasReason(ge, "accessNotConfigured", "SERVICE_DISABLED") || serviceDisabled(ge):
		return DeniedAPIDisabled
	}
	return ""
}

// serviceDisabled: a 403 whose ErrorInfo detail says SERVICE_DISABLED (the
// newer error format names it only there).
func serviceDisabled(ge *googleapi.Error) bool {
	for _, d := range ge.Details {
		if m, ok := d.(map[string]any); ok && m["reason"] == "SERVICE_DISABLED" {
			return true
		}
	}
	return false
}
