package calendaremu

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"
)

// Control API under /emulator/v1/ and the Go methods behind it (see README).

const controlPath = "/emulator/v1/"

// Reset drops every calendar, event, channel, user, token, fault and counter,
// leaving the default user with an empty primary calendar.
func (s *Server) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.resetLocked()
	s.log.Info("emulator reset")
}

// InvalidateSyncTokens makes every sync token of the calendar answer 410
// fullSyncRequired, as Google does when it expires tokens.
func (s *Server) InvalidateSyncTokens(calendarID string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.calendars[calendarID]
	if c == nil {
		return errors.New("calendaremu: unknown calendar " + calendarID)
	}
	c.epoch++
	s.log.Info("sync tokens invalidated", "calendar", calendarID)
	return nil
}

// ExpireChannel makes a channel expire now: it sends nothing more.
func (s *Server) ExpireChannel(id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	ch := s.channels[id]
	if ch == nil {
		return errors.New("calendaremu: unknown channel " + id)
	}
	ch.expiry = time.Now()
	ch.expired = true
	ch.haltMu.Do(func() { close(ch.halt) })
	s.log.Info("channel expired by control", "channel", id)
	return nil
}

// SetMaxTTL caps the lifetime of channels created from now on.
func (s *Server) SetMaxTTL(d time.Duration) {
	s.mu.Lock()
	s.opts.MaxTTL = d
	s.mu.Unlock()
}

// ChannelInfo describes a channel for tests.
type ChannelInfo struct {
	ID         string    `json:"id"`
	ResourceID string    `json:"resourceId"`
	Calendar   string    `json:"calendar"`
	User       string    `json:"user"`
	Address    string    `json:"address"`
	Expiration time.Time `json:"expiration"`
	Stopped    bool      `json:"stopped"`
	Expired    bool      `json:"expired"`
}

// Channels lists every channel created since the last reset, by creation time.
func (s *Server) Channels() []ChannelInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	out := make([]ChannelInfo, 0, len(s.channels))
	type pair struct {
		at time.Time
		ci ChannelInfo
	}
	var ps []pair
	for _, ch := range s.channels {
		ps = append(ps, pair{ch.created, ChannelInfo{ID: ch.id, ResourceID: ch.cal.resourceID, Calendar: ch.cal.id,
			User: ch.user, Address: ch.address, Expiration: ch.expiry, Stopped: ch.stopped,
			Expired: ch.expired || !now.Before(ch.expiry)}})
	}
	sort.Slice(ps, func(i, j int) bool { return ps[i].at.Before(ps[j].at) })
	for _, p := range ps {
		out = append(out, p.ci)
	}
	return out
}

// DefaultUser returns the identity of unauthenticated requests.
func (s *Server) DefaultUser() string { return s.opts.DefaultUser }

type notificationFaultsJSON struct {
	NotificationFaults
	Delay string `json:"delay,omitempty"` // Go duration, e.g. "250ms"
}

func (s *Server) serveControl(w http.ResponseWriter, r *http.Request) {
	rest := strings.TrimPrefix(r.URL.EscapedPath(), controlPath)
	var seg []string
	for _, p := range strings.Split(strings.Trim(rest, "/"), "/") {
		u, err := url.PathUnescape(p)
		if err != nil {
			ctlError(w, 400, "bad path")
			return
		}
		seg = append(seg, u)
	}
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	decode := func(v any) bool {
		if len(body) == 0 {
			return true
		}
		if err := json.Unmarshal(body, v); err != nil {
			ctlError(w, 400, "bad JSON: "+err.Error())
			return false
		}
		return true
	}
	n := len(seg)
	switch {
	case n == 1 && seg[0] == "reset" && r.Method == "POST":
		s.Reset()
		ctlOK(w, map[string]bool{"ok": true})
	case n == 1 && seg[0] == "stats" && r.Method == "GET":
		ctlOK(w, s.Stats())
	case n == 1 && seg[0] == "faults" && r.Method == "POST":
		var f Fault
		if !decode(&f) {
			return
		}
		if f.Method == "" {
			ctlError(w, 400, "method is required")
			return
		}
		s.AddFault(f)
		ctlOK(w, f)
	case n == 1 && seg[0] == "faults" && r.Method == "DELETE":
		s.mu.Lock()
		s.faults = nil
		s.mu.Unlock()
		ctlOK(w, map[string]bool{"ok": true})
	case n == 3 && seg[0] == "calendars" && seg[2] == "invalidateSyncTokens" && r.Method == "POST":
		if err := s.InvalidateSyncTokens(seg[1]); err != nil {
			ctlError(w, 404, err.Error())
			return
		}
		ctlOK(w, map[string]bool{"ok": true})
	case n == 1 && seg[0] == "notificationFaults" && (r.Method == "PUT" || r.Method == "POST"):
		var f notificationFaultsJSON
		if !decode(&f) {
			return
		}
		if f.Delay != "" {
			d, err := time.ParseDuration(f.Delay)
			if err != nil {
				ctlError(w, 400, "bad delay")
				return
			}
			f.NotificationFaults.Delay = d
		}
		s.SetNotificationFaults(f.NotificationFaults)
		ctlOK(w, map[string]bool{"ok": true})
	case n == 1 && seg[0] == "channels" && r.Method == "GET":
		ctlOK(w, s.Channels())
	case n == 3 && seg[0] == "channels" && seg[2] == "expire" && r.Method == "POST":
		if err := s.ExpireChannel(seg[1]); err != nil {
			ctlError(w, 404, err.Error())
			return
		}
		ctlOK(w, map[string]bool{"ok": true})
	case n == 1 && seg[0] == "calendars" && r.Method == "POST":
		var v CalendarSpec
		if !decode(&v) {
			return
		}
		if err := s.AddCalendar(v); err != nil {
			ctlError(w, 400, err.Error())
			return
		}
		ctlOK(w, v)
	case n == 1 && seg[0] == "visibilityDelay" && (r.Method == "PUT" || r.Method == "POST"):
		var v struct {
			Delay string `json:"delay"`
		}
		if !decode(&v) {
			return
		}
		d, err := time.ParseDuration(v.Delay)
		if err != nil || d < 0 {
			ctlError(w, 400, "bad delay")
			return
		}
		s.SetVisibilityDelay(d)
		ctlOK(w, v)
	case n == 1 && seg[0] == "maxTTL" && (r.Method == "PUT" || r.Method == "POST"):
		var v struct {
			Seconds int64 `json:"seconds"`
		}
		if !decode(&v) {
			return
		}
		if v.Seconds <= 0 {
			ctlError(w, 400, "seconds must be > 0")
			return
		}
		s.SetMaxTTL(time.Duration(v.Seconds) * time.Second)
		ctlOK(w, v)
	case n == 1 && seg[0] == "quota" && (r.Method == "PUT" || r.Method == "POST"):
		var v struct {
			PerMinute int `json:"perMinute"` // the per-user quota (older form)
			Quotas
		}
		if !decode(&v) {
			return
		}
		if v.PerUser == 0 {
			v.PerUser = v.PerMinute
		}
		s.SetQuotas(v.Quotas)
		ctlOK(w, v.Quotas)
	case n == 1 && seg[0] == "users" && r.Method == "POST":
		var v struct {
			Email        string `json:"email"`
			RefreshToken string `json:"refreshToken"`
		}
		if !decode(&v) {
			return
		}
		if err := s.CreateUser(v.Email, v.RefreshToken); err != nil {
			ctlError(w, 400, err.Error())
			return
		}
		ctlOK(w, v)
	case n == 3 && seg[0] == "users" && seg[2] == "revoke" && r.Method == "POST":
		if err := s.RevokeGrant(seg[1]); err != nil {
			ctlError(w, 404, err.Error())
			return
		}
		ctlOK(w, map[string]bool{"ok": true})
	case n == 3 && seg[0] == "users" && seg[2] == "token" && r.Method == "POST":
		ctlOK(w, s.IssueToken(seg[1]))
	case n == 3 && seg[0] == "users" && r.Method == "POST" && (seg[2] == "suspend" || seg[2] == "resume" || seg[2] == "delete"):
		map[string]func(string){"suspend": s.SuspendAccount, "resume": s.ResumeAccount, "delete": s.DeleteAccount}[seg[2]](seg[1])
		ctlOK(w, map[string]bool{"ok": true})
	case n == 3 && seg[0] == "delegations" && seg[2] == "revoke" && r.Method == "POST":
		s.RevokeDelegation(seg[1])
		ctlOK(w, map[string]bool{"ok": true})
	case n == 2 && seg[0] == "delegations" && (r.Method == "PUT" || r.Method == "POST"):
		var v struct {
			Scopes []string `json:"scopes"`
		}
		if !decode(&v) {
			return
		}
		s.AuthorizeDelegation(seg[1], v.Scopes...)
		ctlOK(w, v)
	case n == 3 && seg[0] == "serviceAccounts" && seg[2] == "signJwt" && (r.Method == "PUT" || r.Method == "POST"):
		var v struct {
			Deny bool `json:"deny"`
		}
		if !decode(&v) {
			return
		}
		s.DenySignJwt(seg[1], v.Deny)
		ctlOK(w, v)
	case n == 2 && seg[0] == "services" && (r.Method == "PUT" || r.Method == "POST"):
		var v struct {
			Disabled bool `json:"disabled"`
		}
		if !decode(&v) {
			return
		}
		if err := s.DisableAPI(seg[1], v.Disabled); err != nil {
			ctlError(w, 404, err.Error())
			return
		}
		ctlOK(w, v)
	case n == 1 && seg[0] == "paging" && (r.Method == "PUT" || r.Method == "POST"):
		var v Paging
		if !decode(&v) {
			return
		}
		s.SetPaging(v)
		ctlOK(w, v)
	case n == 1 && seg[0] == "consent" && (r.Method == "PUT" || r.Method == "POST"):
		var v struct {
			Untick []string `json:"untick"`
		}
		if !decode(&v) {
			return
		}
		s.UntickScopes(v.Untick...)
		ctlOK(w, v)
	case n == 2 && seg[0] == "clients" && (r.Method == "PUT" || r.Method == "POST"):
		var v OAuthClient
		if !decode(&v) {
			return
		}
		v.ID = seg[1]
		if err := s.RegisterClient(v); err != nil {
			ctlError(w, 400, err.Error())
			return
		}
		ctlOK(w, v)
	default:
		if s.serveWorkspaceControl(w, r, seg, decode) { // workspace_control.go
			return
		}
		ctlError(w, 404, "unknown control endpoint "+r.Method+" "+r.URL.Path)
	}
}

func ctlOK(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

func ctlError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": msg})
}
