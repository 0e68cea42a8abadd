package calendaremu

// Stats counts what the emulator did since the last reset.
type Stats struct {
	Requests       map[string]int    `json:"requests"`       // per method, e.g. "events.list"
	RequestsByUser map[string]int    `json:"requestsByUser"` // per user email
	Notifications  NotificationStats `json:"notifications"`
	FaultsInjected int               `json:"faultsInjected"`
	QuotaRejected  int               `json:"quotaRejected"`
	// Peaks are the most calls accepted in any sliding minute since the
	// last reset (or SetQuotas), quotas on or off.
	Peaks  PeakStats `json:"peaks"`
	Tokens int       `json:"tokensIssued"`
}

// NotificationStats counts push deliveries.
type NotificationStats struct {
	Sent       int `json:"sent"`       // delivered with a success reply
	Retried    int `json:"retried"`    // retries after a 5xx or a network error
	Failed     int `json:"failed"`     // given up, or rejected with a non-retryable code
	Dropped    int `json:"dropped"`    // dropped by fault injection
	Duplicated int `json:"duplicated"` // duplicated by fault injection
	Delayed    int `json:"delayed"`    // delayed by fault injection
}

// PeakStats are the busiest sliding minutes.
type PeakStats struct {
	User    map[string]int `json:"user"`    // per user email
	Project int            `json:"project"` // all calls
}

type statsData = Stats

func newStats() Stats {
	return Stats{Requests: map[string]int{}, RequestsByUser: map[string]int{}}
}

func (st *Stats) count(method, user string) {
	st.Requests[method]++
	if user != "" {
		st.RequestsByUser[user]++
	}
}

// Stats returns a copy of the counters.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := s.stats
	out.Requests = make(map[string]int, len(s.stats.Requests))
	for k, v := range s.stats.Requests {
		out.Requests[k] = v
	}
	out.RequestsByUser = make(map[string]int, len(s.stats.RequestsByUser))
	for k, v := range s.stats.RequestsByUser {
		out.RequestsByUser[k] = v
	}
	out.Peaks.User = make(map[string]int, len(s.stats.Peaks.User))
	for k, v := range s.stats.Peaks.User {
		out.Peaks.User[k] = v
	}
	return out
}
