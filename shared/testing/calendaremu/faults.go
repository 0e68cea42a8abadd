package calendaremu

import (
	mrand "math/rand/v2"
	"strings"
	"time"
)

// Fault makes the next Count calls of Method (e.g. "events.list", "*" for any)
// fail with Code and Reason, optionally only for one User and/or Calendar.
type Fault struct {
	Method   string `json:"method"`
	Count    int    `json:"count"`
	Code     int    `json:"code"`
	Reason   string `json:"reason"`
	User     string `json:"user,omitempty"`
	Calendar string `json:"calendar,omitempty"`
}

// AddFault queues a fault rule; rules are consumed in the order added.
func (s *Server) AddFault(f Fault) {
	if f.Count <= 0 {
		f.Count = 1
	}
	if f.Code == 0 {
		f.Code = 503
	}
	f.Method = strings.TrimPrefix(f.Method, "calendar.")
	s.mu.Lock()
	s.faults = append(s.faults, &f)
	s.mu.Unlock()
}

// FailNext makes the next n calls of method fail with code and reason.
func (s *Server) FailNext(method string, n, code int, reason string) {
	s.AddFault(Fault{Method: method, Count: n, Code: code, Reason: reason})
}

func (s *Server) faultLocked(rq *request) *apiError {
	for i, f := range s.faults {
		if f.Method != "*" && f.Method != rq.method {
			continue
		}
		if f.User != "" && f.User != rq.user {
			continue
		}
		if f.Calendar != "" {
			cal := rq.calID
			if cal == "primary" {
				cal = rq.user
			}
			if f.Calendar != cal && f.Calendar != rq.calID {
				continue
			}
		}
		f.Count--
		if f.Count <= 0 {
			s.faults = append(s.faults[:i:i], s.faults[i+1:]...)
		}
		s.stats.FaultsInjected++
		return injectedErr(f.Code, f.Reason)
	}
	return nil
}

// NotificationFaults drop, duplicate or delay notifications. Each *Count hits
// the next N messages; each *Probability hits messages at random (seeded by Seed
// when set). A delayed message is sent Delay later and may be overtaken.
type NotificationFaults struct {
	DropCount            int           `json:"dropCount,omitempty"`
	DropProbability      float64       `json:"dropProbability,omitempty"`
	DuplicateCount       int           `json:"duplicateCount,omitempty"`
	DuplicateProbability float64       `json:"duplicateProbability,omitempty"`
	DelayCount           int           `json:"delayCount,omitempty"`
	DelayProbability     float64       `json:"delayProbability,omitempty"`
	Delay                time.Duration `json:"delay,omitempty"`
	Seed                 uint64        `json:"seed,omitempty"`
}

// SetNotificationFaults replaces the notification fault settings.
func (s *Server) SetNotificationFaults(f NotificationFaults) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.nfaults = f
	if f.Seed != 0 {
		s.rng = mrand.New(mrand.NewPCG(f.Seed, f.Seed^0x9e3779b97f4a7c15))
	}
}

func (f *NotificationFaults) hit(count *int, p float64, rng *mrand.Rand) bool {
	if *count > 0 {
		*count--
		return true
	}
	return p > 0 && rng.Float64() < p
}

// SetQuota enables per-user quota of perMinute requests in any sliding minute
// (0 disables). Over it, calls get 403 userRateLimitExceeded.
func (s *Server) SetQuota(perMinute int) {
	s.mu.Lock()
	s.opts.QuotaPerMinute = perMinute
	s.quota = map[string][]time.Time{}
	s.mu.Unlock()
}

// quotaLocked counts accepted calls per user in a sliding minute.
func (s *Server) quotaLocked(user string) *apiError {
	if s.opts.QuotaPerMinute <= 0 {
		return nil
	}
	now := time.Now()
	w := s.quota[user]
	i := 0
	for i < len(w) && now.Sub(w[i]) >= time.Minute {
		i++
	}
	w = w[i:]
	if len(w) >= s.opts.QuotaPerMinute {
		s.quota[user] = w
		s.stats.QuotaRejected++
		return errUserRate()
	}
	s.quota[user] = append(w, now)
	return nil
}
