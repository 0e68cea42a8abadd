package calendaremu

import (
	"errors"
	"strings"
)

// Sharing: a calendar's ACL gives other users a role on it (what acl.insert
// does at Google; the emulator has no acl.* API, Share stands in for it).
// A user with any role can read the calendar, watch it and add it to their
// list (calendarList.insert); roles are not enforced on writes (calsync only
// reads; known gap). Without a role a calendar is 404 notFound to a user, as
// at Google.

// workspace is the emulator's state beyond each user's own calendars:
// calendar lists, sharing, and Workspace domains (directory.go).
type workspace struct {
	lists   map[string]*calList          // user → their calendar list
	acl     map[string]map[string]string // calendar id → user → role
	domains map[string]*wsDomain         // domain name → domain
	// nextUserID numbers directory users and rooms.
	nextUserID int64
}

func newWorkspace() workspace {
	return workspace{lists: map[string]*calList{}, acl: map[string]map[string]string{}, domains: map[string]*wsDomain{}}
}

// canSeeLocked reports whether user may use calendar c: its owner or a user
// it is shared with.
func (s *Server) canSeeLocked(c *calData, user string) bool {
	return c.owner == user || s.ws.acl[c.id][user] != ""
}

// Share gives user role ("freeBusyReader", "reader", "writer", "owner") on a
// calendar; with addToList it also lands in the user's calendar list (as
// when the user accepts the invitation), notifying the list's watchers.
// An empty role removes the user's access (the calendar leaves their list).
func (s *Server) Share(calendarID, user, role string, addToList bool) error {
	if role != "" && roleRank[role] == 0 {
		return errors.New("calendaremu: unknown role " + role)
	}
	user = strings.TrimSpace(user)
	if user == "" {
		return errors.New("calendaremu: no user to share with")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.calendars[calendarID]
	if c == nil {
		return errors.New("calendaremu: unknown calendar " + calendarID)
	}
	s.ensureUserLocked(user)
	if role == "" {
		delete(s.ws.acl[calendarID], user)
	} else {
		if s.ws.acl[calendarID] == nil {
			s.ws.acl[calendarID] = map[string]string{}
		}
		s.ws.acl[calendarID][user] = role
	}
	if addToList && role != "" {
		s.syncListLocked(user)
		l := s.listLocked(user)
		e := l.entries[calendarID]
		if e == nil {
			e = &listEntry{id: calendarID}
			l.entries[calendarID] = e
		}
		e.deleted, e.explicit, e.role = false, true, s.roleLocked(c, user)
		l.seq++
		e.seq = l.seq
		s.notifyLocked(l.resource)
	}
	s.listChangedLocked(user)
	s.log.Info("calendar shared", "calendar", calendarID, "user", user, "role", role)
	return nil
}
