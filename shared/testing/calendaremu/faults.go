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
	// Shape of the error body: "" Google's JSON; "html" the HTML page
	// Google's front end serves (e.g. a 502); "malformed" cut-off JSON;
	// "noreason" Google's JSON without errors[] (no reason); "empty" none.
	Shape string `json:"shape,omitempty"`
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
		e := injectedErr(f.Code, f.Reason)
		e.shape = f.Shape
		return e
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
// (0 disables). Over it, calls get 403 rateLimitExceeded.
func (s *Server) SetQuota(perMinute int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.opts.QuotaPerMinute = perMinute
	s.resetQuotaLocked()
}

// Quotas are Google's per-minute request quotas (sliding windows over
// accepted calls): per user of the project (Google: 600) and per project
// (Google: 10,000). A request counts against the project its
// X-Goog-User-Project header names (Google's quota-project header;
// option.WithQuotaProject sets it), else the default one, calsync's. The
// limits apply to the default project; another one stands for another
// client with quotas of its own (a test's writer: the user's own edits), and
// is not limited. Stats' peaks are the default project's. Over either, a
// call gets what Google's quota system sends: 403 rateLimitExceeded "Quota
// exceeded for quota metric 'Queries' and limit 'Queries per minute per user'
// ..." (or "... 'Queries per minute' ..." for the project's), never
// userRateLimitExceeded; with TooManyRequests, 429 with the same body.
type Quotas struct {
	PerUser         int  `json:"perUser"`
	PerProject      int  `json:"perProject"`
	TooManyRequests bool `json:"tooManyRequests,omitempty"`
}

// SetQuotas sets both quotas (0 disables one) and clears their windows.
func (s *Server) SetQuotas(q Quotas) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.opts.QuotaPerMinute, s.opts.ProjectQuotaPerMinute, s.opts.QuotaTooManyRequests = q.PerUser, q.PerProject, q.TooManyRequests
	s.resetQuotaLocked()
}

func (s *Server) resetQuotaLocked() {
	s.quota = map[string]*window{}
	s.projectQuota = map[string]*window{}
	s.stats.Peaks = PeakStats{User: map[string]int{}}
}

// window holds the times of the calls in the last minute, oldest first.
type window struct{ at []time.Time }

func (w *window) prune(now time.Time) int {
	i := 0
	for i < len(w.at) && now.Sub(w.at[i]) >= time.Minute {
		i++
	}
	w.at = w.at[i:]
	return len(w.at)
}

// quotaLocked applies the quotas to one call and counts it in the windows
// (accepted calls only, as Google's quota counts them) and in the peaks.
func (s *Server) quotaLocked(project, user string) *apiError {
	now := time.Now()
	u := s.quota[project+"\x00"+user]
	if u == nil {
		u = &window{}
		s.quota[project+"\x00"+user] = u
	}
	p := s.projectQuota[project]
	if p == nil {
		p = &window{}
		s.projectQuota[project] = p
	}
	inUser, inProject := u.prune(now), p.prune(now)
	var aerr *apiError
	code := 403
	if s.opts.QuotaTooManyRequests {
		code = 429
	}
	switch {
	case project != "":
	case s.opts.QuotaPerMinute > 0 && inUser >= s.opts.QuotaPerMinute:
		aerr = errQuota(code, "Queries per minute per user")
	case s.opts.ProjectQuotaPerMinute > 0 && inProject >= s.opts.ProjectQuotaPerMinute:
		aerr = errQuota(code, "Queries per minute")
	}
	if aerr != nil {
		s.stats.QuotaRejected++
		return aerr
	}
	u.at = append(u.at, now)
	p.at = append(p.at, now)
	if project == "" {
		pk := &s.stats.Peaks
		pk.User[user] = max(pk.User[user], inUser+1)
		pk.Project = max(pk.Project, inProject+1)
	}
	return nil
}

// SetVisibilityDelay makes a change show up in incremental lists (syncToken)
// only delay after it was made, while its push goes out at once: Google
// does not promise that a change is listed when its push arrives. Full
// listings are not delayed. 0 turns it off.
func (s *Server) SetVisibilityDelay(d time.Duration) {
	s.mu.Lock()
	s.visibility = d
	s.mu.Unlock()
}
