package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/google"
	"google.golang.org/api/calendar/v3"
	"google.golang.org/api/googleapi"
	"google.golang.org/api/option"

	"github.com/calsync/calsync/shared/config"
	"github.com/calsync/calsync/shared/pubsubx"
	"github.com/calsync/calsync/shared/store"
)

// smokeConfig is what the smoke check reads: the project, the database and
// the change feed's topic.
type smokeConfig struct {
	Basic        basic
	ChangesTopic string `env:"CHANGES_TOPIC, default=calsync-changes"`
}

// Validate reports every problem of the config.
func (s smokeConfig) Validate() error {
	err := s.Basic.Validate()
	if s.ChangesTopic == "" || strings.ContainsAny(s.ChangesTopic, "/ ") {
		err = errors.Join(err, fmt.Errorf("CHANGES_TOPIC %q is not a topic id", s.ChangesTopic))
	}
	return err
}

// cmdSmoke proves push → mirror → feed on a deployment: it writes an event
// to a watched calendar and waits for calsync's change message about it on a
// subscription of its own, then deletes the event and waits for that too.
// calsync itself only reads calendars, so the write goes with the operator's
// own access (ADC with a Calendar write scope, or --access-token).
func cmdSmoke(ctx context.Context, c *cli, args []string) error {
	fs := c.flagSet("smoke")
	calID := fs.String("calendar", "", "a calendar calsync watches, that the operator may write to (required)")
	timeout := fs.Duration("timeout", 2*time.Minute, "how long to wait for each change message")
	token := fs.String("access-token", "", "OAuth access token with a Calendar write scope for the test event (default: ADC; e.g. $(gcloud auth print-access-token))")
	if err := c.parse(fs, args); err != nil {
		return err
	}
	if err := cleanCalendarID(calID); err != nil {
		return err
	}
	if *timeout <= 0 {
		return usagef("--timeout must be positive")
	}
	cfg, err := config.Load[smokeConfig](ctx, c.lookup)
	if err != nil {
		return fmt.Errorf("%w (set it in the environment, --project or --state-file)", err)
	}
	r := &smokeRun{c: c}
	err = r.run(ctx, cfg, *calID, *timeout, *token)
	r.summary(cfg.Basic.ProjectID, *calID)
	if err != nil {
		return err
	}
	if len(r.failed) > 0 {
		return errSmoke
	}
	return nil
}

// smokeRun prints one line per check and keeps the failed ones.
type smokeRun struct {
	c      *cli
	checks int
	failed []string
}

func (r *smokeRun) report(name string, err error, note string) bool {
	r.checks++
	status := "ok  "
	if err != nil {
		status, note = "FAIL", err.Error()
		r.failed = append(r.failed, name)
	}
	fmt.Fprintf(r.c.stdout, "%s %s", status, name)
	if note != "" {
		fmt.Fprintf(r.c.stdout, ": %s", terminalSafe(note))
	}
	fmt.Fprintln(r.c.stdout)
	return err == nil
}

func (r *smokeRun) summary(project, calID string) {
	if len(r.failed) == 0 && r.checks > 0 {
		fmt.Fprintf(r.c.stdout, "PASS: push → mirror → feed works on %s (calendar %s): %d checks\n", project, terminalSafe(calID), r.checks)
		return
	}
	fmt.Fprintf(r.c.stdout, "FAIL: %d of %d checks failed on %s: %s\n", len(r.failed), r.checks, project, strings.Join(r.failed, "; "))
}

// run does the checks in order; it stops at the first one the rest need.
func (r *smokeRun) run(ctx context.Context, cfg smokeConfig, calID string, timeout time.Duration, token string) error {
	c, report := r.c, r.report
	st, err := c.openStore(ctx, cfg.Basic.ProjectID, cfg.Basic.FirestoreDatabase)
	if err != nil {
		return err
	}
	key := store.CalendarKey(calID)
	cal, err := st.GetCalendar(ctx, key)
	if err == nil && cal.Status != store.StatusActive {
		err = fmt.Errorf("status %s, want active (calsync list says why)", cal.Status)
	}
	if !report("calendar registered and active", err, "key "+key) {
		return nil
	}
	report("push channel live", liveChannel(ctx, st, key, cal), "")

	ps, err := pubsubx.NewClient(ctx, cfg.Basic.ProjectID, c.get("PUBSUB_EMULATOR_HOST"))
	if err != nil {
		return err
	}
	defer ps.Close()
	subID, drop, err := tempSubscription(ctx, ps, cfg.Basic.ProjectID, cfg.ChangesTopic, "calsync-smoke-", "")
	if !report("temporary subscription on "+cfg.ChangesTopic, err, subID) {
		return nil
	}
	defer func() { report("temporary subscription deleted", drop(), "") }()
	feed := make(chan change, 64)
	rctx, stop := context.WithCancel(ctx)
	defer stop()
	go func() {
		_ = ps.Subscriber(subID).Receive(rctx, func(_ context.Context, m *pubsub.Message) {
			m.Ack()
			if m.Attributes["calendarKey"] == key {
				feed <- change{m.Attributes["eventId"], m.Attributes["change"], time.Now(), m.Data}
			}
		})
	}()

	svc, err := c.calendarWriter(ctx, token)
	if err != nil {
		return err
	}
	start := time.Now().Add(24 * time.Hour).UTC().Truncate(time.Hour)
	written := time.Now()
	ev, err := svc.Events.Insert(calID, &calendar.Event{
		Summary:     "calsync smoke check " + subID,
		Description: "Written and deleted by `calsync smoke`.",
		Start:       &calendar.EventDateTime{DateTime: start.Format(time.RFC3339)},
		End:         &calendar.EventDateTime{DateTime: start.Add(15 * time.Minute).Format(time.RFC3339)},
	}).Context(ctx).Do()
	var ge *googleapi.Error
	if errors.As(err, &ge) && (ge.Code == 401 || ge.Code == 403) {
		// User ADC carries the scopes of its login (cloud-platform), not
		// the one asked for here.
		err = fmt.Errorf("%w: the operator's credentials may not write to %s (give --access-token with a Calendar write scope)", err, calID)
	}
	if !report("test event created", err, "") {
		return nil
	}
	got, err := waitChange(ctx, feed, ev.Id, timeout, "created")
	report("change feed: created", err, lag(got, written))
	if err == nil {
		// The change is announced before the event is written: give the
		// write a moment.
		for range 20 {
			if _, err = st.Events(key).Doc(ev.Id).Get(ctx); err == nil || ctx.Err() != nil {
				break
			}
			time.Sleep(500 * time.Millisecond)
		}
		report("mirror holds the event", err, "calendars/"+key+"/events/"+ev.Id)
	}

	written = time.Now()
	err = svc.Events.Delete(calID, ev.Id).Context(context.WithoutCancel(ctx)).Do()
	if report("test event deleted", err, "") {
		got, err = waitChange(ctx, feed, ev.Id, timeout, "deleted", "cancelled")
		report("change feed: deleted", err, lag(got, written))
	}
	return nil
}

// errSmoke: a check failed (the lines above say which).
var errSmoke = errors.New("smoke check failed")

type change struct {
	eventID, kind string
	at            time.Time
	data          []byte
}

// waitChange waits for the change message of eventID of one of kinds.
func waitChange(ctx context.Context, feed <-chan change, eventID string, timeout time.Duration, kinds ...string) (change, error) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	for {
		select {
		case ch := <-feed:
			if ch.eventID == eventID {
				for _, k := range kinds {
					if ch.kind == k {
						return ch, nil
					}
				}
			}
		case <-t.C:
			return change{}, fmt.Errorf("no %s message for event %s within %s: look at the Webhook's notification and the SyncWorker's sync log lines", strings.Join(kinds, "/"), eventID, timeout)
		case <-ctx.Done():
			return change{}, ctx.Err()
		}
	}
}

func lag(ch change, since time.Time) string {
	if ch.at.IsZero() {
		return ""
	}
	var m struct {
		SyncedAt time.Time `json:"syncedAt"`
	}
	_ = json.Unmarshal(ch.data, &m)
	note := fmt.Sprintf("%.1f s after the write", ch.at.Sub(since).Seconds())
	if !m.SyncedAt.IsZero() {
		note += fmt.Sprintf(" (synced %.1f s after it)", m.SyncedAt.Sub(since).Seconds())
	}
	return note
}

// liveChannel: the calendar has an active push channel not yet expired (a
// polled calendar has none, by design: the check then says so).
func liveChannel(ctx context.Context, st *store.Store, key string, cal store.Calendar) error {
	if cal.PollMode != "" {
		return fmt.Errorf("polled (%s): Google does not push for it, so this check proves poll → mirror → feed only", cal.PollMode)
	}
	chans, err := st.ChannelsOfCalendar(ctx, key)
	if err != nil {
		return err
	}
	for _, ch := range chans {
		if ch.State == store.ChannelActive && ch.Expiration.After(time.Now()) {
			return nil
		}
	}
	return errors.New("no active channel: RenewChannels makes it (gcloud scheduler jobs run PREFIX-renew-channels); without it only the reconcile sync finds the change")
}

// calendarWriter is a Calendar client that may write: the emulator's
// default user, an access token, or the operator's ADC.
func (c *cli) calendarWriter(ctx context.Context, token string) (*calendar.Service, error) {
	if ep := strings.TrimRight(c.get("CALENDAR_ENDPOINT"), "/"); ep != "" {
		if !strings.HasSuffix(ep, "/calendar/v3") {
			ep += "/calendar/v3"
		}
		return calendar.NewService(ctx, option.WithEndpoint(ep+"/"), option.WithoutAuthentication())
	}
	if token != "" {
		return calendar.NewService(ctx, option.WithTokenSource(oauth2.StaticTokenSource(&oauth2.Token{AccessToken: token})))
	}
	ts, err := google.DefaultTokenSource(ctx, calendar.CalendarEventsScope)
	if err != nil {
		return nil, fmt.Errorf("credentials to write the test event: %w (or give --access-token)", err)
	}
	return calendar.NewService(ctx, option.WithTokenSource(ts))
}

func randomID() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
