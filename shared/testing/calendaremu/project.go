package calendaremu

import (
	"errors"
	"strings"
)

// The emulated Google Cloud project's states that a first deployment meets:
// an API not enabled (every call 403 SERVICE_DISABLED until someone enables
// it) and granular consent (the user unticks some of the requested scopes;
// the token then lacks them and their methods answer 403
// insufficientPermissions). Both are switches: they are states, not faults.

// Services the emulator serves, by the name Google's errors give them.
const (
	ServiceCalendar       = "calendar-json.googleapis.com"
	ServiceDirectory      = "admin.googleapis.com"
	ServiceIAMCredentials = "iamcredentials.googleapis.com"
)

var serviceTitles = map[string]string{
	ServiceCalendar:       "Google Calendar API",
	ServiceDirectory:      "Admin SDK API",
	ServiceIAMCredentials: "IAM Service Account Credentials API",
}

type projectState struct {
	disabled map[string]bool // service → not enabled
	untick   map[string]bool // scopes the consent screen leaves unticked
}

func newProjectState() projectState {
	return projectState{disabled: map[string]bool{}, untick: map[string]bool{}}
}

// DisableAPI disables (or, with false, enables) one of the Service* APIs
// in the emulated project: its calls answer 403 as Google's do for an API
// never enabled. Calls billed to another quota project (X-Goog-User-Project)
// are not affected.
func (s *Server) DisableAPI(service string, disabled bool) error {
	if serviceTitles[service] == "" {
		return errors.New("calendaremu: unknown service " + service)
	}
	s.mu.Lock()
	s.project.disabled[service] = disabled
	s.mu.Unlock()
	return nil
}

// UntickScopes makes the consent screen (/authorize) grant every requested
// scope except these, as when a user unticks them under granular consent;
// the token reply's scope lists what was granted. No argument: every
// requested scope is granted again.
func (s *Server) UntickScopes(scopes ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.project.untick = map[string]bool{}
	for _, sc := range scopes {
		s.project.untick[sc] = true
	}
}

// consentedLocked is the part of a requested scope list the consent grants.
func (s *Server) consentedLocked(requested string) string {
	var out []string
	for _, sc := range strings.Fields(requested) {
		if !s.project.untick[sc] {
			out = append(out, sc)
		}
	}
	return strings.Join(out, " ")
}

// disabledLocked is the error a call to service gets when it is disabled
// in the project the call is billed to ("" = the emulated project).
func (s *Server) disabledLocked(service, quotaProject string) *apiError {
	if quotaProject != "" || !s.project.disabled[service] {
		return nil
	}
	return errServiceDisabled(service)
}

// errServiceDisabled is Google's answer for an API not enabled: 403
// accessNotConfigured (domain usageLimits) with an ErrorInfo detail of
// reason SERVICE_DISABLED naming the service and the consumer project.
func errServiceDisabled(service string) *apiError {
	url := "https://console.developers.google.com/apis/api/" + service + "/overview?project=" + ProjectNumber
	msg := serviceTitles[service] + " has not been used in project " + ProjectNumber + " before or it is disabled. Enable it by visiting " +
		url + " then retry. If you enabled this API recently, wait a few minutes for the action to propagate to our systems and retry."
	e := newErr(403, "usageLimits", "accessNotConfigured", msg)
	e.ExtendedHelp = "https://console.developers.google.com"
	e.Details = serviceDisabledDetails(service, url, msg)
	return e
}

func serviceDisabledDetails(service, url, msg string) []any {
	return []any{
		map[string]any{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "SERVICE_DISABLED", "domain": "googleapis.com",
			"metadata": map[string]string{"service": service, "consumer": "projects/" + ProjectNumber, "activationUrl": url,
				"serviceTitle": serviceTitles[service], "containerInfo": ProjectNumber}},
		map[string]any{"@type": "type.googleapis.com/google.rpc.LocalizedMessage", "locale": "en-US", "message": msg},
		map[string]any{"@type": "type.googleapis.com/google.rpc.Help",
			"links": []map[string]string{{"description": "Google developers console API activation", "url": url}}},
	}
}
