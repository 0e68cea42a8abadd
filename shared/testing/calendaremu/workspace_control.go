package calendaremu

import (
	"net/http"
)

// Control API of the Workspace surfaces (calendar lists, sharing, domains,
// rooms), under /emulator/v1/ next to control.go's endpoints. Each answers
// as the Go method it calls; a failure is {"error": "..."} with 400 or 404.
func (s *Server) serveWorkspaceControl(w http.ResponseWriter, r *http.Request, seg []string, decode func(any) bool) bool {
	n := len(seg)
	fail := func(code int, err error) { ctlError(w, code, err.Error()) }
	ok := func() { ctlOK(w, map[string]bool{"ok": true}) }
	switch {
	case n == 3 && seg[0] == "calendars" && seg[2] == "acl" && r.Method == "POST":
		var v struct {
			User      string `json:"user"`
			Role      string `json:"role"`
			AddToList bool   `json:"addToList"`
		}
		if !decode(&v) {
			return true
		}
		if err := s.Share(seg[1], v.User, v.Role, v.AddToList); err != nil {
			fail(400, err)
			return true
		}
		ok()
	case n == 3 && seg[0] == "users" && seg[2] == "invalidateCalendarListSyncTokens" && r.Method == "POST":
		if err := s.InvalidateListSyncTokens(seg[1]); err != nil {
			fail(404, err)
			return true
		}
		ok()
	case n == 2 && seg[0] == "workspace" && seg[1] == "domains" && r.Method == "POST":
		var v struct {
			Domain  string `json:"domain"`
			Admin   string `json:"admin"`
			Primary string `json:"primary"` // set: a secondary domain of its customer
		}
		if !decode(&v) {
			return true
		}
		if err := s.createDomain(v.Domain, v.Admin, v.Primary); err != nil {
			fail(400, err)
			return true
		}
		ok()
	case n == 2 && seg[0] == "workspace" && seg[1] == "users" && r.Method == "POST":
		var v struct {
			Email string `json:"email"`
			Admin bool   `json:"admin"`
		}
		if !decode(&v) {
			return true
		}
		if err := s.AddDomainUser(v.Email, v.Admin); err != nil {
			fail(400, err)
			return true
		}
		ok()
	case n == 4 && seg[0] == "workspace" && seg[1] == "users" && seg[3] == "suspend" && r.Method == "POST":
		v := struct {
			Suspended *bool `json:"suspended"`
		}{}
		if !decode(&v) {
			return true
		}
		if err := s.SuspendUser(seg[2], v.Suspended == nil || *v.Suspended); err != nil {
			fail(404, err)
			return true
		}
		ok()
	case n == 3 && seg[0] == "workspace" && seg[1] == "users" && r.Method == "DELETE":
		if err := s.DeleteDomainUser(seg[2]); err != nil {
			fail(404, err)
			return true
		}
		ok()
	case n == 4 && seg[0] == "workspace" && seg[1] == "domains" && seg[3] == "rooms" && r.Method == "POST":
		var v struct {
			Name     string `json:"name"`
			Category string `json:"category"` // default CONFERENCE_ROOM
		}
		if !decode(&v) {
			return true
		}
		if v.Category == "" {
			v.Category = CategoryRoom
		}
		room, err := s.AddResource(seg[2], v.Name, v.Category)
		if err != nil {
			fail(404, err)
			return true
		}
		ctlOK(w, room)
	case n == 5 && seg[0] == "workspace" && seg[1] == "domains" && seg[3] == "rooms" && r.Method == "DELETE":
		if err := s.DeleteRoom(seg[2], seg[4]); err != nil {
			fail(404, err)
			return true
		}
		ok()
	case n == 4 && seg[0] == "workspace" && seg[1] == "domains" && seg[3] == "delegation" && (r.Method == "PUT" || r.Method == "POST"):
		var v struct {
			Clients []string `json:"clients"`
		}
		if !decode(&v) {
			return true
		}
		if err := s.SetDelegation(seg[2], v.Clients...); err != nil {
			fail(404, err)
			return true
		}
		ok()
	default:
		return false
	}
	return true
}
