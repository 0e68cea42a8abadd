// Package calgen fills and changes a calendar through the official Calendar
// API client, the way people do: one-off, all-day and recurring events, edits,
// moves, deletions, and single occurrences of a series changed or cancelled.
// The devstack demo and the e2e chaos test share it; all randomness comes from
// the caller's seeded source, so a run can be replayed.
package calgen

import (
	"context"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"net/http"
	"sort"
	"time"

	"google.golang.org/api/calendar/v3"
	"google.golang.org/api/googleapi"
)

// Op names a kind of mutation.
type Op string

// The mutations.
const (
	OpCreate          Op = "create"
	OpCreateAllDay    Op = "create-allday"
	OpCreateRecurring Op = "create-recurring"
	OpUpdate          Op = "update"
	OpMove            Op = "move"
	OpDelete          Op = "delete"
	OpEditInstance    Op = "edit-instance"
	OpCancelInstance  Op = "cancel-instance"
	OpEditSeries      Op = "edit-series"
	OpDeleteSeries    Op = "delete-series"
)

// Gen changes one calendar. Not safe for concurrent use.
type Gen struct {
	Svc        *calendar.Service
	CalendarID string
	Rand       *mrand.Rand
	// Base is the day events are placed around (default: next Monday 00:00 UTC).
	Base time.Time

	single    []string // live one-off and all-day events
	recurring []string // live series masters
	n         int
}

// New returns a generator for calendarID with a seeded source.
func New(svc *calendar.Service, calendarID string, seed uint64) *Gen {
	now := time.Now().UTC()
	base := time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, time.UTC).AddDate(0, 0, 8-int(now.Weekday()))
	return &Gen{Svc: svc, CalendarID: calendarID, Rand: mrand.New(mrand.NewPCG(seed, seed^0xa0761d6478bd642f)), Base: base}
}

// Seed creates n events: about 60% one-off, 25% all-day, 15% recurring, and
// gives some series an edited and a cancelled occurrence.
func (g *Gen) Seed(ctx context.Context, n int) error {
	for i := 0; i < n; i++ {
		op := OpCreate
		switch r := g.Rand.IntN(100); {
		case r < 25:
			op = OpCreateAllDay
		case r < 40:
			op = OpCreateRecurring
		}
		if _, err := g.Do(ctx, op); err != nil {
			return err
		}
	}
	for i, id := range append([]string(nil), g.recurring...) {
		if i%2 == 0 {
			if err := g.editInstance(ctx, id, 1); err != nil {
				return err
			}
			if err := g.cancelInstance(ctx, id, 2); err != nil {
				return err
			}
		}
	}
	return nil
}

// Step does one random mutation and says which.
func (g *Gen) Step(ctx context.Context) (Op, error) {
	ops := []Op{OpCreate, OpCreate, OpCreateAllDay, OpCreateRecurring, OpUpdate, OpUpdate, OpMove, OpMove, OpDelete,
		OpEditInstance, OpEditInstance, OpCancelInstance, OpEditSeries, OpDeleteSeries}
	op := ops[g.Rand.IntN(len(ops))]
	return g.Do(ctx, op)
}

// Do performs op (falling back to a create when there is nothing to change).
func (g *Gen) Do(ctx context.Context, op Op) (Op, error) {
	g.n++
	switch op {
	case OpUpdate, OpMove, OpDelete:
		if len(g.single) == 0 {
			op = OpCreate
		}
	case OpEditInstance, OpCancelInstance, OpEditSeries, OpDeleteSeries:
		if len(g.recurring) == 0 {
			op = OpCreateRecurring
		}
	}
	var err error
	switch op {
	case OpCreate:
		start := g.Base.Add(time.Duration(g.Rand.IntN(30*24)) * time.Hour)
		err = g.insert(ctx, &calendar.Event{Summary: g.title("Meeting"), Location: "Room " + fmt.Sprint(g.Rand.IntN(20)),
			Start: &calendar.EventDateTime{DateTime: start.Format(time.RFC3339)},
			End:   &calendar.EventDateTime{DateTime: start.Add(time.Duration(30+30*g.Rand.IntN(4)) * time.Minute).Format(time.RFC3339)}}, false)
	case OpCreateAllDay:
		day := g.Base.AddDate(0, 0, g.Rand.IntN(60))
		err = g.insert(ctx, &calendar.Event{Summary: g.title("Day off"),
			Start: &calendar.EventDateTime{Date: day.Format("2006-01-02")},
			End:   &calendar.EventDateTime{Date: day.AddDate(0, 0, 1+g.Rand.IntN(3)).Format("2006-01-02")}}, false)
	case OpCreateRecurring:
		start := g.Base.Add(time.Duration(9+g.Rand.IntN(8))*time.Hour).AddDate(0, 0, g.Rand.IntN(5))
		rule := []string{"RRULE:FREQ=WEEKLY;COUNT=" + fmt.Sprint(5+g.Rand.IntN(20)), "RRULE:FREQ=DAILY;COUNT=" + fmt.Sprint(3+g.Rand.IntN(10)),
			"RRULE:FREQ=WEEKLY;BYDAY=MO,WE,FR;COUNT=" + fmt.Sprint(6+g.Rand.IntN(12)), "RRULE:FREQ=MONTHLY;COUNT=6"}[g.Rand.IntN(4)]
		err = g.insert(ctx, &calendar.Event{Summary: g.title("Standup"), Recurrence: []string{rule},
			Start: &calendar.EventDateTime{DateTime: start.Format("2006-01-02T15:04:05"), TimeZone: "Europe/Paris"},
			End:   &calendar.EventDateTime{DateTime: start.Add(30 * time.Minute).Format("2006-01-02T15:04:05"), TimeZone: "Europe/Paris"}}, true)
	case OpUpdate:
		id := g.pick(g.single)
		_, err = g.Svc.Events.Patch(g.CalendarID, id, &calendar.Event{Summary: g.title("Renamed"),
			Description: fmt.Sprintf("edit %d", g.n)}).Context(ctx).Do()
	case OpMove:
		id := g.pick(g.single)
		var ev *calendar.Event
		if ev, err = g.Svc.Events.Get(g.CalendarID, id).Context(ctx).Do(); err == nil {
			shift := time.Duration(1+g.Rand.IntN(48)) * time.Hour
			if ev.Start != nil && ev.Start.Date != "" {
				days := 1 + g.Rand.IntN(5)
				ev.Start.Date, ev.End.Date = shiftDate(ev.Start.Date, days), shiftDate(ev.End.Date, days)
			} else if ev.Start != nil {
				ev.Start.DateTime, ev.End.DateTime = shiftTime(ev.Start.DateTime, shift), shiftTime(ev.End.DateTime, shift)
			}
			_, err = g.Svc.Events.Update(g.CalendarID, id, ev).Context(ctx).Do()
		}
	case OpDelete:
		i := g.Rand.IntN(len(g.single))
		err = g.Svc.Events.Delete(g.CalendarID, g.single[i]).Context(ctx).Do()
		if err == nil || isCode(err, http.StatusGone) || isCode(err, http.StatusNotFound) {
			g.single = append(g.single[:i], g.single[i+1:]...)
			err = nil
		}
	case OpEditInstance:
		err = g.editInstance(ctx, g.pick(g.recurring), g.Rand.IntN(4))
	case OpCancelInstance:
		err = g.cancelInstance(ctx, g.pick(g.recurring), g.Rand.IntN(4))
	case OpEditSeries:
		_, err = g.Svc.Events.Patch(g.CalendarID, g.pick(g.recurring), &calendar.Event{Summary: g.title("Series renamed")}).Context(ctx).Do()
	case OpDeleteSeries:
		i := g.Rand.IntN(len(g.recurring))
		err = g.Svc.Events.Delete(g.CalendarID, g.recurring[i]).Context(ctx).Do()
		if err == nil || isCode(err, http.StatusGone) || isCode(err, http.StatusNotFound) {
			g.recurring = append(g.recurring[:i], g.recurring[i+1:]...)
			err = nil
		}
	default:
		err = fmt.Errorf("calgen: unknown op %q", op)
	}
	if err != nil {
		return op, fmt.Errorf("calgen %s: %w", op, err)
	}
	return op, nil
}

func (g *Gen) insert(ctx context.Context, ev *calendar.Event, recurring bool) error {
	got, err := g.Svc.Events.Insert(g.CalendarID, ev).Context(ctx).Do()
	if err != nil {
		return err
	}
	if recurring {
		g.recurring = append(g.recurring, got.Id)
	} else {
		g.single = append(g.single, got.Id)
	}
	return nil
}

// instance returns the k-th occurrence (or the last) of a series.
func (g *Gen) instance(ctx context.Context, master string, k int) (*calendar.Event, error) {
	res, err := g.Svc.Events.Instances(g.CalendarID, master).MaxResults(10).Context(ctx).Do()
	if err != nil {
		return nil, err
	}
	if len(res.Items) == 0 {
		return nil, errNoInstance
	}
	if k >= len(res.Items) {
		k = len(res.Items) - 1
	}
	return res.Items[k], nil
}

var errNoInstance = errors.New("series has no occurrence left")

func (g *Gen) editInstance(ctx context.Context, master string, k int) error {
	inst, err := g.instance(ctx, master, k)
	if errors.Is(err, errNoInstance) {
		return nil
	}
	if err != nil {
		return err
	}
	_, err = g.Svc.Events.Patch(g.CalendarID, inst.Id, &calendar.Event{Summary: g.title("Moved occurrence"),
		Location: fmt.Sprintf("Room %d", g.Rand.IntN(20))}).Context(ctx).Do()
	return err
}

func (g *Gen) cancelInstance(ctx context.Context, master string, k int) error {
	inst, err := g.instance(ctx, master, k)
	if errors.Is(err, errNoInstance) {
		return nil
	}
	if err != nil {
		return err
	}
	err = g.Svc.Events.Delete(g.CalendarID, inst.Id).Context(ctx).Do()
	if isCode(err, http.StatusGone) {
		return nil
	}
	return err
}

func (g *Gen) pick(ids []string) string { return ids[g.Rand.IntN(len(ids))] }

func (g *Gen) title(prefix string) string { return fmt.Sprintf("%s #%d", prefix, g.Rand.IntN(100000)) }

// Live returns the ids of the live one-off and recurring events the generator knows.
func (g *Gen) Live() []string {
	out := append(append([]string(nil), g.single...), g.recurring...)
	sort.Strings(out)
	return out
}

func shiftDate(d string, days int) string {
	t, err := time.Parse("2006-01-02", d)
	if err != nil {
		return d
	}
	return t.AddDate(0, 0, days).Format("2006-01-02")
}

func shiftTime(s string, d time.Duration) string {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return s
	}
	return t.Add(d).Format(time.RFC3339)
}

func isCode(err error, code int) bool {
	var ge *googleapi.Error
	return errors.As(err, &ge) && ge.Code == code
}

// Retryable says whether a Calendar error is worth retrying (rate limits, 5xx).
func Retryable(err error) bool {
	var ge *googleapi.Error
	if !errors.As(err, &ge) {
		return false
	}
	if ge.Code == 429 || ge.Code >= 500 {
		return true
	}
	if ge.Code == 403 {
		for _, e := range ge.Errors {
			if e.Reason == "rateLimitExceeded" || e.Reason == "userRateLimitExceeded" {
				return true
			}
		}
	}
	return false
}
