package calendaremu

import "strings"

// OAuth scopes: each method accepts the scopes its discovery document lists
// (google.golang.org/api/calendar/v3/calendar-api.json; schema_test.go
// checks this table against it). A token without one of them gets Google's
// 403 insufficientPermissions. Requests without a token (the default user)
// and grants seeded without a scope may do anything.

const scopePrefix = "https://www.googleapis.com/auth/"

var (
	scopesEventsRead = []string{"calendar", "calendar.app.created", "calendar.events", "calendar.events.freebusy", "calendar.events.owned",
		"calendar.events.owned.readonly", "calendar.events.public.readonly", "calendar.events.readonly", "calendar.readonly"}
	scopesEventsWrite = []string{"calendar", "calendar.app.created", "calendar.events", "calendar.events.owned"}
	scopesCalWrite    = []string{"calendar", "calendar.app.created", "calendar.calendars"}
	scopesListWrite   = []string{"calendar", "calendar.app.created", "calendar.calendarlist"}
	scopesListRead    = []string{"calendar", "calendar.calendarlist", "calendar.calendarlist.readonly", "calendar.readonly"}
	scopesACLWrite    = []string{"calendar", "calendar.acls"}
	scopesSettings    = []string{"calendar", "calendar.readonly", "calendar.settings", "calendar.settings.readonly"}
)

// methodScopes lists, without the https://www.googleapis.com/auth/ prefix,
// the scopes each method of the discovery document accepts, emulated or not
// (schema_test.go checks that none is missing). A method missing from it is
// refused: a gap must not pass for a method that needs no scope.
var methodScopes = map[string][]string{
	"acl.delete": scopesACLWrite,
	"acl.get":    {"calendar", "calendar.acls", "calendar.acls.readonly", "calendar.readonly"},
	"acl.insert": scopesACLWrite,
	"acl.list":   {"calendar", "calendar.acls", "calendar.acls.readonly"},
	"acl.patch":  scopesACLWrite,
	"acl.update": scopesACLWrite,
	"acl.watch":  {"calendar", "calendar.acls", "calendar.acls.readonly"},

	"calendarList.delete": scopesListWrite,
	"calendarList.get":    {"calendar", "calendar.app.created", "calendar.calendarlist", "calendar.calendarlist.readonly", "calendar.readonly"},
	"calendarList.insert": {"calendar", "calendar.calendarlist"},
	"calendarList.list":   scopesListRead,
	"calendarList.patch":  scopesListWrite,
	"calendarList.update": scopesListWrite,
	"calendarList.watch":  scopesListRead,

	"calendars.clear":             {"calendar", "calendar.calendars"},
	"calendars.delete":            scopesCalWrite,
	"calendars.get":               {"calendar", "calendar.app.created", "calendar.calendars", "calendar.calendars.readonly", "calendar.readonly"},
	"calendars.insert":            scopesCalWrite,
	"calendars.patch":             scopesCalWrite,
	"calendars.transferOwnership": {"calendar", "calendar.calendars"},
	"calendars.update":            scopesCalWrite,

	"channels.stop": {"calendar", "calendar.acls", "calendar.acls.readonly", "calendar.app.created", "calendar.calendarlist",
		"calendar.calendarlist.readonly", "calendar.events", "calendar.events.freebusy", "calendar.events.owned",
		"calendar.events.owned.readonly", "calendar.events.public.readonly", "calendar.events.readonly", "calendar.readonly",
		"calendar.settings", "calendar.settings.readonly"},
	"colors.get": {"calendar", "calendar.app.created", "calendar.calendarlist", "calendar.calendarlist.readonly", "calendar.events.freebusy",
		"calendar.events.owned", "calendar.events.owned.readonly", "calendar.events.public.readonly", "calendar.readonly"},

	"events.delete":    scopesEventsWrite,
	"events.get":       scopesEventsRead,
	"events.import":    scopesEventsWrite,
	"events.insert":    scopesEventsWrite,
	"events.instances": scopesEventsRead,
	"events.list":      scopesEventsRead,
	"events.move":      {"calendar", "calendar.events", "calendar.events.owned"},
	"events.patch":     scopesEventsWrite,
	"events.quickAdd":  scopesEventsWrite,
	"events.update":    scopesEventsWrite,
	"events.watch":     scopesEventsRead,

	"freebusy.query": {"calendar", "calendar.events.freebusy", "calendar.freebusy", "calendar.readonly"},
	"settings.get":   scopesSettings,
	"settings.list":  scopesSettings,
	"settings.watch": scopesSettings,
}

// scopeLocked checks a token's scopes against the method's.
func scopeLocked(method, granted string) *apiError {
	if granted == anyScope {
		return nil
	}
	allowed := methodScopes[method]
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
