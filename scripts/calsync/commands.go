package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/mail"
	"sort"
	"strings"
	"sync"
	"text/tabwriter"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/calsync/calsync/shared/lifecycle"
	"github.com/calsync/calsync/shared/messages"
	"github.com/calsync/calsync/shared/renewer"
	"github.com/calsync/calsync/shared/store"
	"github.com/calsync/calsync/shared/tenant"
)

func cmdWatch(ctx context.Context, c *cli, args []string) error {
	fs := c.flagSet("watch")
	calID := fs.String("calendar", "", "calendar id to watch (required), e.g. someone@example.com")
	cred := fs.String("credential", "", "read it with this stored credential (from 'calsync connect')")
	subject := fs.String("subject", "", "read it by domain-wide delegation as this Workspace user")
	noSync := fs.Bool("no-sync", false, "do not ask for the first full sync")
	if err := c.parse(fs, args); err != nil {
		return err
	}
	if err := cleanCalendarID(calID); err != nil {
		return err
	}
	*cred, *subject = strings.TrimSpace(*cred), strings.TrimSpace(*subject)
	if *cred != "" && *subject != "" {
		return usagef("give --credential or --subject, not both")
	}
	if *subject != "" {
		if _, err := mail.ParseAddress(*subject); err != nil {
			return usagef("--subject %q is not an email address", *subject)
		}
	}
	cal := store.Calendar{CalendarID: *calID, AuthMode: store.AuthADC}
	switch {
	case *cred != "":
		cal.AuthMode, cal.CredentialID = store.AuthOAuth, *cred
	case *subject != "":
		cal.AuthMode, cal.Subject = store.AuthDelegation, *subject
	}
	if c.get("CHANNEL_TOKEN_KEYS") == "" {
		return watchWithoutKeys(ctx, c, cal, *noSync)
	}
	cfg, err := c.renewConfig(ctx)
	if err != nil {
		return err
	}
	r, err := c.renewer(ctx, cfg)
	if err != nil {
		return err
	}
	if cal.AuthMode == store.AuthOAuth {
		cr, err := r.Store.GetCredential(ctx, cal.CredentialID)
		if err != nil {
			return fmt.Errorf("--credential %s: %w", cal.CredentialID, err)
		}
		if cr.Status == store.StatusAuthRevoked {
			return fmt.Errorf("--credential %s was revoked; run 'calsync connect' again", cal.CredentialID)
		}
	}
	key, err := lifecycle.Register(ctx, r.Store, cal)
	if err != nil {
		return fmt.Errorf("register: %w", err)
	}
	cal.Status = store.StatusActive
	fmt.Fprintf(c.stderr, "registered %s (key %s, auth %s)\n", cal.CalendarID, key, cal.AuthMode)
	chans, err := r.Store.ChannelsOfCalendar(ctx, key)
	if err != nil {
		return err
	}
	if cur, err := r.Store.GetCalendar(ctx, key); err == nil {
		cal.PollMode, cal.ChannelEpoch = cur.PollMode, cur.ChannelEpoch
	}
	out, err := r.Channels.Ensure(ctx, key, &cal, chans, cfg.RenewBefore)
	if err != nil {
		res, lerr := r.Access.Lifecycle.Report(ctx, lifecycle.Calendar(key, cal), lifecycle.OpEventsWatch, err)
		switch {
		case lerr != nil:
			return errors.Join(err, lerr)
		case res.Effect == lifecycle.EffectCountNotFound && res.Streak.Marked:
			return fmt.Errorf("calendar %s is not visible to %s, persistently (status set to not_found): %w", cal.CalendarID, cal.Grant().Key(), err)
		case res.Effect == lifecycle.EffectCountNotFound:
			// Google answers 404 for a while after a calendar is shared:
			// one is not proof. Counted; RenewChannels tries again.
			return fmt.Errorf("calendar %s is not visible to %s yet (404; a calendar shared a moment ago can take a while): it stays registered and RenewChannels tries again in its next run: %w", cal.CalendarID, cal.Grant().Key(), err)
		case res.Effect == lifecycle.EffectRevoke:
			return fmt.Errorf("the grant of %s is revoked (status auth_revoked); run 'calsync connect' again: %w", cal.Grant().Key(), err)
		case res.Effect == lifecycle.EffectDeny:
			st := lifecycle.StatusOf(lifecycle.Classify(err))
			return fmt.Errorf("Google refuses the grant of %s (status %s): %s: %w", cal.Grant().Key(), st, lifecycle.Advice(st), err)
		case res.Next == lifecycle.Defer:
			return fmt.Errorf("the delegation for %s is not authorised yet (Google can take up to 24 h); RenewChannels tries again: %w", cal.Grant().Key(), err)
		}
		return err
	}
	if out.Busy {
		fmt.Fprintln(c.stderr, "another run is creating this calendar's channel right now; it will be live shortly")
	}
	if out.PollOnly {
		why := "Google does not push for it"
		if out.PollMode == store.PollFull {
			why = "Google does not report its deletions incrementally"
		}
		fmt.Fprintf(c.stdout, "polling %s: %s, so it has no push channel and is synced every %s (POLL_INTERVAL)\n", cal.CalendarID, why, cfg.PollInterval)
	}
	live, _ := r.Store.ChannelsOfCalendar(ctx, key)
	for _, ch := range live {
		if ch.State == store.ChannelActive {
			fmt.Fprintf(c.stdout, "watching %s: channel %s, expires %s\n", cal.CalendarID, ch.ChannelID, ch.Expiration.Format(time.RFC3339))
		}
	}
	if *noSync {
		return nil
	}
	if err := renewer.Ask(ctx, r.Publisher, key, messages.StateFullResync, time.Now()); err != nil {
		return fmt.Errorf("ask for the first full sync: %w", err)
	}
	fmt.Fprintf(c.stdout, "asked for a full sync of %s\n", cal.CalendarID)
	return nil
}

// watchWithoutKeys is watch for an operator who holds no secret: the
// calendar is registered (and its first full sync asked for: the SyncWorker
// holds the keys to read it), and RenewChannels, which signs channel tokens
// and can open the user's credential, gives it its channel in its next run.
func watchWithoutKeys(ctx context.Context, c *cli, cal store.Calendar, noSync bool) error {
	cfg, err := c.basicConfig(ctx)
	if err != nil {
		return err
	}
	st, err := c.openStore(ctx, cfg.ProjectID, cfg.FirestoreDatabase)
	if err != nil {
		return err
	}
	if cal.AuthMode == store.AuthOAuth {
		cr, err := st.GetCredential(ctx, cal.CredentialID)
		if err != nil {
			return fmt.Errorf("--credential %s: %w", cal.CredentialID, err)
		}
		if cr.Status == store.StatusAuthRevoked {
			return fmt.Errorf("--credential %s was revoked; run 'calsync connect' again", cal.CredentialID)
		}
	}
	key, err := lifecycle.Register(ctx, st, cal)
	if err != nil {
		return fmt.Errorf("register: %w", err)
	}
	fmt.Fprintf(c.stdout, "registered %s (key %s, auth %s)\n", cal.CalendarID, key, cal.AuthMode)
	fmt.Fprintln(c.stdout, "no CHANNEL_TOKEN_KEYS here: RenewChannels creates its push channel in its next hourly run "+
		"('gcloud scheduler jobs run PREFIX-renew-channels --location REGION' runs it now)")
	if noSync {
		return nil
	}
	pub, err := c.publisher(ctx, cfg.ProjectID, cfg.NotificationsTopic)
	if err != nil {
		return err
	}
	if err := renewer.Ask(ctx, pub, key, messages.StateFullResync, time.Now()); err != nil {
		return fmt.Errorf("ask for the first full sync: %w", err)
	}
	fmt.Fprintf(c.stdout, "asked for a full sync of %s\n", cal.CalendarID)
	return nil
}

const unwatchReason = "unwatched by an operator"

func cmdUnwatch(ctx context.Context, c *cli, args []string) error {
	fs := c.flagSet("unwatch")
	calID := fs.String("calendar", "", "calendar id to stop watching (required)")
	tenantName := fs.String("tenant", tenant.Default, "the tenant whose mirror of the calendar it is")
	if err := c.parse(fs, args); err != nil {
		return err
	}
	if err := cleanCalendarID(calID); err != nil {
		return err
	}
	if c.get("CHANNEL_TOKEN_KEYS") == "" {
		// No secrets here: the status is what matters, RenewChannels stops
		// the channels of a calendar that is not active in its next run.
		cfg, err := c.basicConfig(ctx)
		if err != nil {
			return err
		}
		st, err := c.openStore(ctx, cfg.ProjectID, cfg.FirestoreDatabase)
		if err != nil {
			return err
		}
		key := store.CalendarKeyIn(*tenantName, *calID)
		cal, err := st.GetCalendar(ctx, key)
		if err != nil {
			if errors.Is(err, store.ErrNotFound) {
				return fmt.Errorf("calendar %s is not registered", *calID)
			}
			return fmt.Errorf("calendar %s: %w", *calID, err)
		}
		owner := &lifecycle.Owner{Store: st, Logger: c.logger()}
		if _, err := owner.Unwatch(ctx, lifecycle.Calendar(key, cal), unwatchReason); err != nil {
			return err
		}
		fmt.Fprintf(c.stdout, "unwatched %s: no longer synced; RenewChannels stops its channels in its next run\n", *calID)
		return nil
	}
	cfg, err := c.renewConfig(ctx)
	if err != nil {
		return err
	}
	r, err := c.renewer(ctx, cfg)
	if err != nil {
		return err
	}
	key := store.CalendarKeyIn(*tenantName, *calID)
	cal, err := r.Store.GetCalendar(ctx, key)
	if errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("calendar %s is not registered", *calID)
	}
	if err != nil {
		return fmt.Errorf("calendar %s: %w", *calID, err)
	}
	if _, err := r.Access.Lifecycle.Unwatch(ctx, lifecycle.Calendar(key, cal), unwatchReason); err != nil {
		return err
	}
	n, err := r.Channels.StopCalendar(ctx, cal, "unwatch")
	fmt.Fprintf(c.stdout, "unwatched %s: %d channel(s) stopped\n", *calID, n)
	if err != nil {
		return fmt.Errorf("some channels could not be stopped (the next renewal run retries): %w", err)
	}
	return nil
}

// listRow is one calendar in 'calsync list'.
type listRow struct {
	CalendarID    string    `json:"calendarId"`
	CalendarKey   string    `json:"calendarKey"`
	Status        string    `json:"status"`
	StatusReason  string    `json:"statusReason,omitempty"`
	AuthMode      string    `json:"authMode"`
	ChannelID     string    `json:"channelId,omitempty"`
	ChannelExpiry time.Time `json:"channelExpiry,omitzero"`
	PollMode      string    `json:"pollMode,omitempty"` // polled, no channel: incremental or full
	LastSyncedAt  time.Time `json:"lastSyncedAt,omitzero"`
	EventCount    int64     `json:"eventCount"`
}

func cmdList(ctx context.Context, c *cli, args []string) error {
	fs := c.flagSet("list")
	asJSON := fs.Bool("json", false, "print JSON")
	status := fs.String("status", "", "only calendars with this status (active, auth_revoked, not_found, free_busy_only, error, unwatched)")
	if err := c.parse(fs, args); err != nil {
		return err
	}
	switch *status {
	case "", store.StatusActive, store.StatusAuthRevoked, store.StatusNotFound, store.StatusFreeBusyOnly, store.StatusError, store.StatusUnwatched:
	default:
		return usagef("--status %q is not one of active, auth_revoked, not_found, free_busy_only, error, unwatched", *status)
	}
	cfg, err := c.basicConfig(ctx)
	if err != nil {
		return err
	}
	st, err := c.openStore(ctx, cfg.ProjectID, cfg.FirestoreDatabase)
	if err != nil {
		return err
	}
	cals, err := st.AllCalendars(ctx)
	if err != nil {
		return err
	}
	open, err := st.ChannelsInStates(ctx, store.ChannelActive)
	if err != nil {
		return err
	}
	best := map[string]store.Channel{}
	for _, ch := range open {
		if ch.Watches() != store.WatchesEvents {
			continue // an identity's list channel: not a calendar's
		}
		if b, ok := best[ch.Key]; !ok || ch.Expiration.After(b.Expiration) {
			best[ch.Key] = ch
		}
	}
	rows := []listRow{}
	for key, cal := range cals {
		if *status != "" && cal.Status != *status {
			continue
		}
		row := listRow{CalendarID: cal.CalendarID, CalendarKey: key, Status: cal.Status, StatusReason: cal.StatusReason,
			AuthMode: cal.AuthMode, LastSyncedAt: cal.LastSyncedAt, EventCount: cal.EventCount, PollMode: cal.PollMode}
		if ch, ok := best[key]; ok && ch.Expiration.After(time.Now()) {
			row.ChannelID, row.ChannelExpiry = ch.ChannelID, ch.Expiration
		}
		rows = append(rows, row)
	}
	sort.Slice(rows, func(i, j int) bool { return rows[i].CalendarID < rows[j].CalendarID })
	if *asJSON {
		enc := json.NewEncoder(c.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rows)
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CALENDAR\tSTATUS\tAUTH\tCHANNEL EXPIRES\tLAST SYNC\tEVENTS")
	for _, r := range rows {
		// Every text field comes from Firestore: escaped (terminalSafe).
		channel := when(r.ChannelExpiry, "none")
		if r.PollMode != "" && r.ChannelExpiry.IsZero() {
			channel = "polled (" + terminalSafe(r.PollMode) + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\n", terminalSafe(r.CalendarID), terminalSafe(r.Status), terminalSafe(r.AuthMode),
			channel, when(r.LastSyncedAt, "never"), r.EventCount)
	}
	return tw.Flush()
}

func when(t time.Time, zero string) string {
	if t.IsZero() {
		return zero
	}
	return t.UTC().Format("2006-01-02 15:04:05Z")
}

func cmdResync(ctx context.Context, c *cli, args []string) error {
	fs := c.flagSet("resync")
	calID := fs.String("calendar", "", "calendar id to sync")
	tenantName := fs.String("tenant", tenant.Default, "the tenant whose mirror of the calendar it is")
	all := fs.Bool("all", false, "every active calendar")
	full := fs.Bool("full", false, "full resync: drop the sync token and list everything again")
	if err := c.parse(fs, args); err != nil {
		return err
	}
	if (strings.TrimSpace(*calID) == "") == !*all {
		return usagef("give --calendar ID or --all")
	}
	if !*all {
		if err := cleanCalendarID(calID); err != nil {
			return err
		}
	}
	cfg, err := c.basicConfig(ctx)
	if err != nil {
		return err
	}
	state := messages.StateReconcile
	if *full {
		state = messages.StateFullResync
	}
	pub, err := c.publisher(ctx, cfg.ProjectID, cfg.NotificationsTopic)
	if err != nil {
		return err
	}
	st, err := c.openStore(ctx, cfg.ProjectID, cfg.FirestoreDatabase)
	if err != nil {
		return err
	}
	var keys []string
	if *all {
		cals, err := st.ActiveCalendars(ctx)
		if err != nil {
			return err
		}
		for k := range cals {
			keys = append(keys, k)
		}
		sort.Strings(keys)
	} else {
		key := store.CalendarKeyIn(*tenantName, *calID)
		cal, err := st.GetCalendar(ctx, key)
		if errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("calendar %s is not registered (watch it first)", *calID)
		}
		if err != nil {
			return fmt.Errorf("calendar %s: %w", *calID, err)
		}
		if cal.Status != store.StatusActive {
			return fmt.Errorf("calendar %s has status %s; only active calendars sync", *calID, cal.Status)
		}
		keys = []string{key}
	}
	p := newProgress(c, "resync", len(keys))
	var errs []error
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	for _, k := range keys {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			// An operator's request: no cooldown holds it back.
			data, attrs, err := messages.OperatorRequest(k, state, time.Now())
			if err == nil {
				err = pub.Publish(ctx, data, attrs, "")
			}
			mu.Lock()
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", k, err))
			}
			mu.Unlock()
			p.step()
		}()
	}
	wg.Wait()
	p.done()
	fmt.Fprintf(c.stdout, "asked for %s of %d calendar(s)\n", state, len(keys)-len(errs))
	return errors.Join(errs...)
}

func cmdRenew(ctx context.Context, c *cli, args []string) error {
	fs := c.flagSet("renew")
	asJSON := fs.Bool("json", false, "print the summary as JSON")
	if err := c.parse(fs, args); err != nil {
		return err
	}
	cfg, err := c.renewConfig(ctx)
	if err != nil {
		return err
	}
	r, err := c.renewer(ctx, cfg)
	if err != nil {
		return err
	}
	var p *progress
	r.Progress = func(done, total int) {
		if p == nil {
			p = newProgress(c, "renew", total)
		}
		p.set(done)
	}
	sum, err := r.Run(ctx)
	if p != nil {
		p.done()
	}
	if err != nil {
		return err
	}
	if *asJSON {
		return json.NewEncoder(c.stdout).Encode(sum)
	}
	fmt.Fprintf(c.stdout, "renewed %d, created %d, stopped %d, reconciles %d, failed %d, expiring soon %d (closed %d expired records, %d calendars busy in another run; %d calendars, %s)\n",
		sum.Renewed, sum.Created, sum.Stopped, sum.Reconciles, sum.Failed, sum.ExpiringSoon, sum.Expired, sum.Busy, sum.Calendars,
		(time.Duration(sum.DurationMs) * time.Millisecond).String())
	if sum.Failed > 0 {
		return fmt.Errorf("%d failure(s); run with -v for details", sum.Failed)
	}
	return nil
}

// progress prints "name: done/total" on stderr at most twice a second.
// The first line comes after a second: short runs print nothing.
type progress struct {
	c           *cli
	name, unit  string
	total, n    int
	last        time.Time
	mu          sync.Mutex
	printedOnce bool
}

func newProgress(c *cli, name string, total int) *progress {
	return &progress{c: c, name: name, unit: "calendars", total: total, last: time.Now().Add(500 * time.Millisecond)}
}

// newProgressOf is a progress line counting unit whose total is learnt on
// the way (set2).
func newProgressOf(c *cli, name, unit string) *progress {
	return &progress{c: c, name: name, unit: unit, last: time.Now().Add(500 * time.Millisecond)}
}

// set2 is set with the total, as shared/credentials reports progress.
func (p *progress) set2(done, total int) {
	p.mu.Lock()
	p.total = total
	p.mu.Unlock()
	p.set(done)
}

func (p *progress) step() {
	p.mu.Lock()
	p.n++
	n := p.n
	p.mu.Unlock()
	p.set(n)
}

func (p *progress) set(n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.n = n
	if time.Since(p.last) < 500*time.Millisecond || (n == p.total && !p.printedOnce) {
		return
	}
	p.last = time.Now()
	p.printedOnce = true
	fmt.Fprintf(p.c.stderr, "\r%s: %d/%d %s", p.name, n, p.total, p.unit)
}

func (p *progress) done() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.printedOnce {
		fmt.Fprintf(p.c.stderr, "\r%s: %d/%d %s\n", p.name, p.n, p.total, p.unit)
	}
}

func cmdReseal(ctx context.Context, c *cli, args []string) error {
	fs := c.flagSet("reseal")
	if err := c.parse(fs, args); err != nil {
		return err
	}
	creds, err := c.credentials(ctx)
	if err != nil {
		return err
	}
	if creds.Seal == nil {
		return errors.New("reseal needs CREDENTIAL_PRIVATE_KEYS (the first key is the one to seal to); RenewChannels does it every run anyway")
	}
	p := newProgressOf(c, "reseal", "credentials")
	n, err := creds.Reseal(ctx, p.set2)
	p.done()
	fmt.Fprintf(c.stdout, "resealed %d credential(s) to key %s\n", n, creds.Seal.ID())
	if err != nil {
		return fmt.Errorf("some credentials could not be resealed (keep the keys that open them): %w", err)
	}
	return nil
}

// maxCalendarIDBytes bounds a calendar id; Google's are emails or
// ...@group.calendar.google.com ids, far shorter.
const maxCalendarIDBytes = 512

// cleanCalendarID trims the --calendar value in place and checks it looks
// like a calendar id: a stray space or newline would otherwise register a
// different calendar key (the key is a hash of the exact id), and "primary",
// Google's alias for the caller's own calendar, would give every user the
// same key.
func cleanCalendarID(id *string) error {
	*id = strings.TrimSpace(*id)
	v := *id
	switch {
	case v == "":
		return usagef("--calendar is required")
	case strings.EqualFold(v, "primary"):
		return usagef(`--calendar "primary" is an alias: give the calendar's id (for a user's primary calendar, their email)`)
	case len(v) > maxCalendarIDBytes:
		return usagef("--calendar is %d bytes long (at most %d)", len(v), maxCalendarIDBytes)
	case !utf8.ValidString(v) || terminalSafe(v) != v || strings.ContainsFunc(v, unicode.IsSpace):
		return usagef("--calendar %s contains spaces, control or invisible characters", terminalSafe(v))
	case !strings.Contains(v, "@"):
		return usagef("--calendar %s is not a calendar id (an email address or ...@group.calendar.google.com)", v)
	}
	return nil
}
