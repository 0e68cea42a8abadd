package calendaremu

import "strings"

// OAuth scopes: each method accepts the scopes its discovery document lists
// (google.golang.org/api/calendar/v3/calendar-api.json; schema_test.go
// checks this table against it). A token without one of them gets Google's
// 403 insufficientPermissions. Requests without a token (the default user)
// and grants seeded without a scope may do anything.

const scopePrefix = "https://www.googleapis.com/auth/"

var (
	scopesEventsRead  = []string{"calendar", "calendar.app.created", "calendar.events", "calendar.events.freebusy", "calendar.events.owned", "calendar.events.owned.readonly", "calendar.events.public.readonly", "calendar.events.readonly", "calendar.readonly"}
	scopesEventsWrite = []string{"calendar", "calendar.app.created", "calendar.events", "calendar.events.owned"}
	scopesCalWrite    = []string{"calendar", "calendar.app.created", "calendar.calendars"}
)

// methodScopes lists, without the https://www.googleapis.com/auth/ prefix,
// the scopes each emulated method accepts.
var methodScopes = map[string][]string{
	"calendarList.get":  {"calendar", "calendar.app.created", "calendar.calendarlist", "calendar.calendarlist.readonly", "calendar.readonly"},
	"calendarList.list": {"calendar", "calendar.calendarlist", "calendar.calendarlist.readonly", "calendar.readonly"},
	"calendars.insert":  scopesCalWrite,
	"calendars.delete":  scopesCalWrite,
	"calendars.get":     {"calendar", "calendar.app.created", "calendar.calendars", "calendar.calendars.readonly", "calendar.readonly"},
	"channels.stop": {"calendar", "calendar.acls", "calendar.acls.readonly", "calendar.app.created", "calendar.calendarlist",
		"calendar.calendarlist.readonly", "calendar.events", "calendar.events.freebusy", "calendar.events.owned",
		"calendar.events.owned.readonly", "calendar.events.public.readonly", "calendar.events.readonly", "calendar.readonly",
		"calendar.settings", "calendar.settings.readonly"},
	"events.insert":    scopesEventsWrite,
	"events.update":    scopesEventsWrite,
	"events.patch":     scopesEventsWrite,
	"events.delete":    scopesEventsWrite,
	"events.get":       scopesEventsRead,
	"events.instances": scopesEventsRead,
	"events.list":      scopesEventsRead,
	"events.watch":     scopesEventsRead,
}

// scopeLocked checks a token's scopes against the method's.
func scopeLocked(method, granted string) *apiError {
	if granted == "" {
		return nil
	}
	allowed, ok := methodScopes[method]
	if !ok {
		return nil // a method the table does not know: not emulated anyway
	}
	for _, g := range strings.Fields(granted) {
		short, ok := strings.CutPrefix(g, scopePrefix)
		if !ok {
			continue // openid, email, ...: no Calendar method accepts them
		}
		for _, a := range allowed {
			if short == a {
				return nil
			}
		}
	}
	e := newErr(403, "global", "insufficientPermissions", "Insufficient Permission")
	e.TopMessage = "Request had insufficient authentication scopes."
	return e
}
