package calendaremu

import (
	"encoding/json"
	"fmt"
	"net/http"
)

// apiError is one Google API error. It renders as Google's JSON error body so
// googleapi.Error parses it and callers can branch on Errors[0].Reason.
type apiError struct {
	Code         int
	Domain       string
	Reason       string
	Message      string
	LocationType string
	Location     string
	// TopMessage, when set, is error.message where Google words it
	// differently from the item's (e.g. insufficientPermissions).
	TopMessage   string
	ExtendedHelp string
	// Details are error.details (google.rpc types, e.g. ErrorInfo).
	Details []any
	shape   string // an injected fault's body shape (Fault.Shape)
}

func (e *apiError) Error() string { return e.Reason + ": " + e.Message }

type errorItem struct {
	Domain       string `json:"domain"`
	Reason       string `json:"reason"`
	Message      string `json:"message"`
	LocationType string `json:"locationType,omitempty"`
	Location     string `json:"location,omitempty"`
	ExtendedHelp string `json:"extendedHelp,omitempty"`
}

type errorBody struct {
	Error struct {
		Code    int         `json:"code"`
		Message string      `json:"message"`
		Errors  []errorItem `json:"errors"`
		Status  string      `json:"status,omitempty"`
		Details []any       `json:"details,omitempty"`
	} `json:"error"`
}

// canonicalStatus maps an HTTP code to the gRPC-style status string Google puts
// in error bodies. 410 has no canonical code, so it is left out there.
func canonicalStatus(code int) string {
	switch code {
	case 400:
		return "INVALID_ARGUMENT"
	case 401:
		return "UNAUTHENTICATED"
	case 403:
		return "PERMISSION_DENIED"
	case 404:
		return "NOT_FOUND"
	case 409:
		return "ALREADY_EXISTS"
	case 412:
		return "FAILED_PRECONDITION"
	case 413:
		return "OUT_OF_RANGE"
	case 429:
		return "RESOURCE_EXHAUSTED"
	case 500:
		return "INTERNAL"
	case 501:
		return "UNIMPLEMENTED"
	case 503:
		return "UNAVAILABLE"
	case 504:
		return "DEADLINE_EXCEEDED"
	}
	return ""
}

func (e *apiError) body() []byte {
	var b errorBody
	b.Error.Code = e.Code
	b.Error.Message = e.Message
	if e.TopMessage != "" {
		b.Error.Message = e.TopMessage
	}
	b.Error.Status = canonicalStatus(e.Code)
	b.Error.Errors = []errorItem{{Domain: e.Domain, Reason: e.Reason, Message: e.Message, LocationType: e.LocationType,
		Location: e.Location, ExtendedHelp: e.ExtendedHelp}}
	b.Error.Details = e.Details
	out, _ := json.Marshal(b)
	return out
}

func newErr(code int, domain, reason, msg string) *apiError {
	return &apiError{Code: code, Domain: domain, Reason: reason, Message: msg}
}

// at records which parameter or header caused the error, as Google does.
func (e *apiError) at(locationType, location string) *apiError {
	e.LocationType, e.Location = locationType, location
	return e
}

func errNotFound() *apiError { return newErr(404, "global", "notFound", "Not Found") }
func errDeleted() *apiError  { return newErr(410, "global", "deleted", "Resource has been deleted") }
func errDuplicate() *apiError {
	return newErr(409, "global", "duplicate", "The requested identifier already exists.")
}
func errInvalid(msg string) *apiError  { return newErr(400, "global", "invalid", msg) }
func errRequired(msg string) *apiError { return newErr(400, "global", "required", msg) }
func errBadRequest(msg string) *apiError {
	return newErr(400, "global", "badRequest", msg)
}
func errParse() *apiError { return newErr(400, "global", "parseError", "Parse Error") }
func errInvalidParam(name, value string) *apiError {
	return errInvalid("Invalid value '"+value+"' for parameter "+name+".").at("parameter", name)
}
func errFullSync() *apiError {
	return newErr(410, "calendar", "fullSyncRequired", "Sync token is no longer valid, a full sync is required.").at("parameter", "syncToken")
}
func errAuth() *apiError {
	return newErr(401, "global", "authError", "Invalid Credentials").at("header", "Authorization")
}
func errForbidden() *apiError { return newErr(403, "global", "forbidden", "Forbidden") }
func errTimeRangeEmpty(loc string) *apiError {
	return newErr(400, "calendar", "timeRangeEmpty", "The specified time range is empty.").at("parameter", loc)
}

// ProjectNumber is the emulated Google Cloud project's number, as Google's
// quota and service-disabled messages name it.
const ProjectNumber = "123456789012"

// errQuota is Google's answer over a per-minute quota: 403 (or 429)
// rateLimitExceeded, for the per-user limit as for the project's, with the
// quota system's message naming the limit.
func errQuota(code int, limit string) *apiError {
	return newErr(code, "usageLimits", "rateLimitExceeded", "Quota exceeded for quota metric 'Queries' and limit '"+limit+
		"' of service 'calendar-json.googleapis.com' for consumer 'project_number:"+ProjectNumber+"'.")
}

// injectedErr builds the body for a fault rule. Rate-limit reasons live in the
// usageLimits domain at Google; everything else in global.
func injectedErr(code int, reason string) *apiError {
	domain, msg := "global", http.StatusText(code)
	switch reason {
	case "rateLimitExceeded":
		domain, msg = "usageLimits", "Rate Limit Exceeded"
	case "userRateLimitExceeded":
		domain, msg = "usageLimits", "User Rate Limit Exceeded"
	case "quotaExceeded":
		domain, msg = "usageLimits", "Calendar usage limits exceeded."
	case "backendError":
		msg = "Backend Error"
	case "":
		reason = "backendError"
		msg = "Backend Error"
	}
	if msg == "" {
		msg = "Error"
	}
	return newErr(code, domain, reason, msg)
}

func writeAPIError(w http.ResponseWriter, e *apiError) []byte {
	b := e.body()
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	switch e.shape {
	case "html":
		w.Header().Set("Content-Type", "text/html; charset=UTF-8")
		b = []byte(fmt.Sprintf("<!DOCTYPE html>\n<html lang=en>\n  <meta charset=utf-8>\n  <title>Error %d (Server Error)!!1</title>\n"+
			"  <p><b>%d.</b> <ins>That’s an error.</ins>\n  <p>The server encountered a temporary error and could not complete your request.<p>Please try again in 30 seconds.  <ins>That’s all we know.</ins>\n", e.Code, e.Code))
	case "malformed":
		b = b[:len(b)/2]
	case "noreason":
		b = []byte(fmt.Sprintf(`{"error":{"code":%d,"message":%q}}`, e.Code, e.Message))
	case "empty":
		b = nil
	}
	w.WriteHeader(e.Code)
	_, _ = w.Write(b)
	return b
}
