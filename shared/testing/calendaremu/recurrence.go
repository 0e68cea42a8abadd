package calendaremu

import (
	"iter"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Recurrence support: one RRULE line (FREQ=DAILY|WEEKLY|MONTHLY|YEARLY with
// INTERVAL, COUNT, UNTIL, BYDAY, BYMONTHDAY, BYMONTH, WKST) plus EXDATE lines.
// RDATE, BYSETPOS, BYYEARDAY, BYWEEKNO and sub-daily frequencies are rejected
// with 400 so a test never silently gets a wrong expansion.

const (
	freqDaily = iota
	freqWeekly
	freqMonthly
	freqYearly
)

// expansion bounds: occurrences are generated up to horizonYears past
// max(now, timeMin), at most maxOccurrences per series per request.
const (
	horizonYears   = 2
	maxOccurrences = 5000
	maxSteps       = 200000
)

type weekdayNum struct {
	n  int // 0 = every such weekday in the period; else nth (negative from end)
	wd time.Weekday
}

type rrule struct {
	freq       int
	interval   int
	count      int
	until      time.Time // zero: none
	byDay      []weekdayNum
	byMonthDay []int
	byMonth    []int
	wkst       time.Weekday
	exdates    map[int64]bool // unix seconds of excluded starts
	exDays     map[string]bool
}

var weekdays = map[string]time.Weekday{"SU": time.Sunday, "MO": time.Monday, "TU": time.Tuesday,
	"WE": time.Wednesday, "TH": time.Thursday, "FR": time.Friday, "SA": time.Saturday}

func errRecurrence(msg string) *apiError {
	return errInvalid("Invalid recurrence rule: "+msg).at("other", "recurrence")
}

// parseRecurrence parses the recurrence lines of an event in location loc.
func parseRecurrence(lines []string, loc *time.Location) (*rrule, *apiError) {
	var r *rrule
	ex := map[int64]bool{}
	exDays := map[string]bool{}
	for _, line := range lines {
		name, value, ok := strings.Cut(line, ":")
		if !ok {
			return nil, errRecurrence("missing ':' in " + strconv.Quote(line))
		}
		head, params, _ := strings.Cut(name, ";")
		switch strings.ToUpper(head) {
		case "RRULE":
			if r != nil {
				return nil, errRecurrence("more than one RRULE is not supported by the emulator")
			}
			var err *apiError
			if r, err = parseRRule(value); err != nil {
				return nil, err
			}
		case "EXDATE":
			zone := loc
			for _, p := range strings.Split(params, ";") {
				if k, v, ok := strings.Cut(p, "="); ok && strings.EqualFold(k, "TZID") {
					l, err := loadZone(v)
					if err != nil {
						return nil, errRecurrence("unknown TZID " + strconv.Quote(v))
					}
					zone = l
				}
			}
			for _, v := range strings.Split(value, ",") {
				if len(v) == 8 {
					if _, err := time.Parse("20060102", v); err != nil {
						return nil, errRecurrence("bad EXDATE " + strconv.Quote(v))
					}
					exDays[v] = true
					continue
				}
				t, ok := parseICalTime(v, zone)
				if !ok {
					return nil, errRecurrence("bad EXDATE " + strconv.Quote(v))
				}
				ex[t.Unix()] = true
			}
		default:
			return nil, errRecurrence(strconv.Quote(head) + " is not supported by the emulator")
		}
	}
	if r == nil {
		return nil, errRecurrence("missing RRULE")
	}
	r.exdates, r.exDays = ex, exDays
	return r, nil
}

func parseICalTime(v string, loc *time.Location) (time.Time, bool) {
	if strings.HasSuffix(v, "Z") {
		t, err := time.Parse("20060102T150405Z", v)
		return t, err == nil
	}
	t, err := time.ParseInLocation("20060102T150405", v, loc)
	return t, err == nil
}

func parseRRule(v string) (*rrule, *apiError) {
	r := &rrule{interval: 1, freq: -1, wkst: time.Monday}
	for _, part := range strings.Split(v, ";") {
		k, val, ok := strings.Cut(part, "=")
		if !ok || val == "" {
			return nil, errRecurrence("bad part " + strconv.Quote(part))
		}
		switch strings.ToUpper(k) {
		case "FREQ":
			switch strings.ToUpper(val) {
			case "DAILY":
				r.freq = freqDaily
			case "WEEKLY":
				r.freq = freqWeekly
			case "MONTHLY":
				r.freq = freqMonthly
			case "YEARLY":
				r.freq = freqYearly
			default:
				return nil, errRecurrence("FREQ=" + val + " is not supported by the emulator")
			}
		case "INTERVAL":
			n, err := strconv.Atoi(val)
			if err != nil || n < 1 || n > 10000 {
				return nil, errRecurrence("bad INTERVAL")
			}
			r.interval = n
		case "COUNT":
			n, err := strconv.Atoi(val)
			if err != nil || n < 1 || n > 100000 {
				return nil, errRecurrence("bad COUNT")
			}
			r.count = n
		case "UNTIL":
			if len(val) == 8 {
				t, err := time.Parse("20060102", val)
				if err != nil {
					return nil, errRecurrence("bad UNTIL")
				}
				// A date UNTIL includes that whole day.
				r.until = t.Add(24*time.Hour - time.Second)
			} else {
				t, ok := parseICalTime(val, time.UTC)
				if !ok {
					return nil, errRecurrence("bad UNTIL")
				}
				r.until = t
			}
		case "BYDAY":
			for _, d := range strings.Split(val, ",") {
				d = strings.ToUpper(d)
				if len(d) < 2 {
					return nil, errRecurrence("bad BYDAY")
				}
				wd, ok := weekdays[d[len(d)-2:]]
				if !ok {
					return nil, errRecurrence("bad BYDAY")
				}
				n := 0
				if num := d[:len(d)-2]; num != "" {
					var err error
					n, err = strconv.Atoi(num)
					if err != nil || n == 0 || n > 5 || n < -5 {
						return nil, errRecurrence("bad BYDAY")
					}
				}
				r.byDay = append(r.byDay, weekdayNum{n, wd})
			}
		case "BYMONTHDAY":
			for _, d := range strings.Split(val, ",") {
				n, err := strconv.Atoi(d)
				if err != nil || n == 0 || n > 31 || n < -31 {
					return nil, errRecurrence("bad BYMONTHDAY")
				}
				r.byMonthDay = append(r.byMonthDay, n)
			}
		case "BYMONTH":
			for _, d := range strings.Split(val, ",") {
				n, err := strconv.Atoi(d)
				if err != nil || n < 1 || n > 12 {
					return nil, errRecurrence("bad BYMONTH")
				}
				r.byMonth = append(r.byMonth, n)
			}
		case "WKST":
			wd, ok := weekdays[strings.ToUpper(val)]
			if !ok {
				return nil, errRecurrence("bad WKST")
			}
			r.wkst = wd
		default:
			return nil, errRecurrence(k + " is not supported by the emulator")
		}
	}
	if r.freq < 0 {
		return nil, errRecurrence("missing FREQ")
	}
	if r.count > 0 && !r.until.IsZero() {
		return nil, errRecurrence("COUNT and UNTIL are exclusive")
	}
	if r.freq == freqWeekly || r.freq == freqDaily {
		for _, d := range r.byDay {
			if d.n != 0 {
				return nil, errRecurrence("numbered BYDAY needs FREQ=MONTHLY or YEARLY")
			}
		}
	}
	if r.freq == freqYearly && len(r.byDay) > 0 && len(r.byMonth) == 0 {
		return nil, errRecurrence("yearly BYDAY without BYMONTH is not supported by the emulator")
	}
	return r, nil
}

type civilDate struct {
	y int
	m time.Month
	d int
}

func (c civilDate) t() time.Time { return time.Date(c.y, c.m, c.d, 0, 0, 0, 0, time.UTC) }

func dateOf(t time.Time) civilDate { y, m, d := t.Date(); return civilDate{y, m, d} }

// daysInPeriod lists the candidate dates of one period, in order.
func (r *rrule) daysInPeriod(first civilDate, k int) []civilDate {
	switch r.freq {
	case freqDaily:
		d := dateOf(first.t().AddDate(0, 0, k*r.interval))
		if !r.dayMatches(d) {
			return nil
		}
		return []civilDate{d}
	case freqWeekly:
		// Week containing DTSTART, starting on WKST.
		st := first.t()
		off := (int(st.Weekday()) - int(r.wkst) + 7) % 7
		ws := st.AddDate(0, 0, -off+7*k*r.interval)
		wds := []time.Weekday{first.t().Weekday()}
		if len(r.byDay) > 0 {
			wds = wds[:0]
			for _, d := range r.byDay {
				wds = append(wds, d.wd)
			}
		}
		var out []civilDate
		for i := range 7 {
			day := ws.AddDate(0, 0, i)
			if slices.Contains(wds, day.Weekday()) && r.monthOK(day.Month()) {
				out = append(out, dateOf(day))
			}
		}
		return out
	case freqMonthly:
		mt := time.Date(first.y, first.m+time.Month(k*r.interval), 1, 0, 0, 0, 0, time.UTC)
		if !r.monthOK(mt.Month()) {
			return nil
		}
		return r.daysInMonth(mt, first.d)
	default:
		y := first.y + k*r.interval
		months := r.byMonth
		if len(months) == 0 {
			months = []int{int(first.m)}
		}
		var out []civilDate
		for _, m := range slices.Sorted(slices.Values(months)) {
			out = append(out, r.daysInMonth(time.Date(y, time.Month(m), 1, 0, 0, 0, 0, time.UTC), first.d)...)
		}
		return out
	}
}

func (r *rrule) monthOK(m time.Month) bool {
	return len(r.byMonth) == 0 || slices.Contains(r.byMonth, int(m))
}

func (r *rrule) dayMatches(d civilDate) bool {
	if !r.monthOK(d.m) {
		return false
	}
	if len(r.byDay) > 0 && !slices.ContainsFunc(r.byDay, func(w weekdayNum) bool { return w.wd == d.t().Weekday() }) {
		return false
	}
	return true
}

// daysInMonth applies BYMONTHDAY / BYDAY (or DTSTART's day) to one month.
func (r *rrule) daysInMonth(mt time.Time, defDay int) []civilDate {
	last := mt.AddDate(0, 1, -1).Day()
	var days []int
	switch {
	case len(r.byMonthDay) > 0:
		for _, d := range r.byMonthDay {
			if d < 0 {
				d = last + 1 + d
			}
			if d >= 1 && d <= last {
				days = append(days, d)
			}
		}
	case len(r.byDay) > 0:
		for _, w := range r.byDay {
			var matches []int
			for d := 1; d <= last; d++ {
				if time.Date(mt.Year(), mt.Month(), d, 0, 0, 0, 0, time.UTC).Weekday() == w.wd {
					matches = append(matches, d)
				}
			}
			switch {
			case w.n == 0:
				days = append(days, matches...)
			case w.n > 0 && w.n <= len(matches):
				days = append(days, matches[w.n-1])
			case w.n < 0 && -w.n <= len(matches):
				days = append(days, matches[len(matches)+w.n])
			}
		}
	default:
		if defDay <= last {
			days = append(days, defDay)
		}
	}
	slices.Sort(days)
	days = slices.Compact(days)
	out := make([]civilDate, 0, len(days))
	for _, d := range days {
		out = append(out, civilDate{mt.Year(), mt.Month(), d})
	}
	return out
}

// occurrences yields the original start instants of a series whose first
// start is dtstart (wall clock in loc; all-day series use UTC midnights), in
// order, until `to` (exclusive, zero = horizon only), the horizon, COUNT or UNTIL.
func (r *rrule) occurrences(dtstart time.Time, allDay bool, loc *time.Location, to, horizon time.Time) iter.Seq[time.Time] {
	return func(yield func(time.Time) bool) {
		local := dtstart.In(loc)
		first := dateOf(local)
		hh, mm, ss := local.Clock()
		produced, emitted := 0, 0
		for k := 0; k < maxSteps; k++ {
			days := r.daysInPeriod(first, k)
			for _, d := range days {
				var t time.Time
				if allDay {
					t = d.t()
				} else {
					t = time.Date(d.y, d.m, d.d, hh, mm, ss, 0, loc)
				}
				if t.Before(dtstart) {
					continue
				}
				if !r.until.IsZero() && t.After(r.until) {
					return
				}
				if (!to.IsZero() && !t.Before(to)) || t.After(horizon) {
					return
				}
				produced++
				if r.count > 0 && produced > r.count {
					return
				}
				excluded := r.exdates[t.Unix()]
				if allDay {
					excluded = excluded || r.exDays[t.Format("20060102")]
				}
				if excluded {
					continue
				}
				emitted++
				if emitted > maxOccurrences || !yield(t) {
					return
				}
			}
			// Stop early when a whole period lies past the horizon.
			if len(days) > 0 && days[0].t().After(horizon.AddDate(0, 0, 1)) {
				return
			}
			if len(days) == 0 && k > 0 && k%1000 == 0 {
				probe := r.daysInPeriodStart(first, k)
				if probe.After(horizon) {
					return
				}
			}
		}
	}
}

// daysInPeriodStart approximates the start of period k, to stop loops whose
// periods produce no dates (e.g. BYMONTHDAY=31 with BYMONTH=2).
func (r *rrule) daysInPeriodStart(first civilDate, k int) time.Time {
	switch r.freq {
	case freqDaily:
		return first.t().AddDate(0, 0, k*r.interval)
	case freqWeekly:
		return first.t().AddDate(0, 0, 7*k*r.interval)
	case freqMonthly:
		return first.t().AddDate(0, k*r.interval, 0)
	}
	return first.t().AddDate(k*r.interval, 0, 0)
}

// instanceSuffix is the part after '_' in an instance id.
func instanceSuffix(t time.Time, allDay bool) string {
	if allDay {
		return t.Format("20060102")
	}
	return t.UTC().Format("20060102T150405Z")
}

// parseInstanceSuffix inverts instanceSuffix.
func parseInstanceSuffix(s string) (time.Time, bool, bool) {
	if len(s) == 8 {
		t, err := time.Parse("20060102", s)
		return t, true, err == nil
	}
	t, err := time.Parse("20060102T150405Z", s)
	return t, false, err == nil
}
