package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/mail"
	"path"
	"strings"
	"time"

	"github.com/calsync/calsync/shared/config"
	"github.com/calsync/calsync/shared/enroll"
	"github.com/calsync/calsync/shared/lifecycle"
	"github.com/calsync/calsync/shared/messages"
	"github.com/calsync/calsync/shared/store"
)

// patterns is a repeatable flag of shell patterns.
type patterns []string

func (p *patterns) String() string { return strings.Join(*p, ",") }
func (p *patterns) Set(v string) error {
	if _, err := path.Match(v, ""); err != nil || v == "" {
		return fmt.Errorf("pattern %q: not a shell pattern", v)
	}
	*p = append(*p, v)
	return nil
}

// identityFlags are the flags naming an identity or a domain.
type identityFlags struct {
	subject, credential, domain *string
}

func addIdentityFlags(fs *flag.FlagSet) identityFlags {
	return identityFlags{
		subject:    fs.String("subject", "", "a Workspace user, read by domain-wide delegation"),
		credential: fs.String("credential", "", "a user's stored OAuth grant (from 'calsync connect')"),
		domain:     fs.String("domain", "", "a Workspace domain: every active user (and with --rooms every room)"),
	}
}

// one checks that exactly one of --subject, --credential, --domain was given.
func (f identityFlags) one() (kind, value string, err error) {
	n := 0
	for k, v := range map[string]*string{"subject": f.subject, "credential": f.credential, "domain": f.domain} {
		*v = strings.TrimSpace(*v)
		if *v != "" {
			n++
			kind, value = k, *v
		}
	}
	if n != 1 {
		return "", "", usagef("give exactly one of --subject, --credential, --domain")
	}
	if kind == "subject" {
		if a, err := mail.ParseAddress(value); err != nil || a.Address != value {
			return "", "", usagef("--subject %q is not an email address", value)
		}
	}
	return kind, value, nil
}

func (f identityFlags) spec() enroll.IdentitySpec {
	if *f.subject != "" {
		return enroll.IdentitySpec{AuthMode: store.AuthDelegation, Subject: *f.subject}
	}
	return enroll.IdentitySpec{AuthMode: store.AuthOAuth, CredentialID: *f.credential}
}

func cmdEnroll(ctx context.Context, c *cli, args []string) error {
	fs := c.flagSet("enroll")
	who := addIdentityFlags(fs)
	admin := fs.String("admin", "", "with --domain: the domain admin to impersonate for the Directory API and the rooms")
	rooms := fs.Bool("rooms", false, "with --domain: enroll every room (resource) calendar too")
	minRole := fs.String("min-access-role", "reader", "enroll calendars of the list where the identity has at least this role (reader, writer, owner)")
	primaryOnly := fs.Bool("primary-only", false, "enroll the primary calendar only")
	var include, exclude patterns
	fs.Var(&include, "include", "enroll only calendar ids matching this shell pattern (repeatable)")
	fs.Var(&exclude, "exclude", "never enroll calendar ids matching this shell pattern (repeatable), e.g. '*#holiday@group.v.calendar.google.com'")
	deleteOnRemove := fs.Bool("delete-mirror-on-remove", false, "when a calendar leaves a list, delete its mirror too (default: keep it, unwatched)")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	allowShrink := fs.Bool("allow-shrink", false, "with --domain: apply a directory that would unenroll more than 10% of the domain's identities (otherwise refused as a likely partial listing)")
	if err := c.parse(fs, args); err != nil {
		return err
	}
	kind, value, err := who.one()
	if err != nil {
		return err
	}
	filters := messages.Filters{MinAccessRole: *minRole, PrimaryOnly: *primaryOnly, Include: include, Exclude: exclude}
	if err := filters.Validate(); err != nil {
		return usagef("%v", err)
	}
	if kind != "domain" && (*admin != "" || *rooms || *allowShrink) {
		return usagef("--admin, --rooms and --allow-shrink go with --domain")
	}
	e, withChannels, err := c.enroller(ctx)
	if err != nil {
		return err
	}
	if !withChannels {
		fmt.Fprintln(c.stderr, "no CHANNEL_TOKEN_KEYS here: calendars are registered and synced now; RenewChannels gives them their channels in its next run")
	}
	if kind == "domain" {
		if *admin == "" {
			return usagef("--domain needs --admin (a domain admin to impersonate)")
		}
		p := newProgressOf(c, "enroll "+value, "users")
		sp := enroll.DomainSpec{Domain: value, Admin: *admin, Rooms: *rooms, Filters: filters, DeleteMirrorOnRemove: *deleteOnRemove, AllowShrink: *allowShrink}
		res, err := e.EnrollDomain(ctx, sp, func(pr enroll.Progress) { p.set2(pr.Done, pr.Total) })
		p.done()
		if err != nil {
			return err
		}
		if *asJSON {
			return json.NewEncoder(c.stdout).Encode(res)
		}
		fmt.Fprintf(c.stdout, "enrolled %s: %d users in the directory, %d active: %d enrolled, %d already enrolled, %d unenrolled (suspended or deleted); %s%d calendars enrolled; %d failed (%s)\n",
			res.Domain, res.Users, res.Active, res.Enrolled, res.Kept, res.Unenrolled, roomsSummary(*rooms, res),
			res.Calendars, res.Failed, (time.Duration(res.DurationMs) * time.Millisecond).String())
		fmt.Fprintln(c.stdout, "RenewChannels diffs the directory again every DIRECTORY_SYNC_INTERVAL (24h): new users enrolled, suspended or deleted ones unenrolled")
		if res.Status != "" && res.Status != store.StatusActive {
			return fmt.Errorf("the domain is %s: Google refuses part of its directory; %s", res.Status, lifecycle.Advice(res.Status))
		}
		var refused []string
		if res.ShrinkRefused > 0 {
			refused = append(refused, fmt.Sprintf("%d identities", res.ShrinkRefused))
		}
		if res.RoomsShrinkRefused > 0 {
			refused = append(refused, fmt.Sprintf("%d rooms", res.RoomsShrinkRefused))
		}
		if len(refused) > 0 {
			return fmt.Errorf("%s not unenrolled: more than 10%% of what the domain follows; if the directory really shrank (not an admin's narrowed rights), run again with --allow-shrink", strings.Join(refused, " and "))
		}
		if res.Failed > 0 {
			return fmt.Errorf("%d failure(s); run with -v for details", res.Failed)
		}
		return nil
	}
	sp := who.spec()
	sp.Filters, sp.DeleteMirrorOnRemove = filters, *deleteOnRemove
	if sp.AuthMode == store.AuthOAuth {
		cr, err := e.Store.GetCredential(ctx, sp.CredentialID)
		if err != nil {
			return fmt.Errorf("--credential %s: %w", sp.CredentialID, err)
		}
		if cr.Status == store.StatusAuthRevoked {
			return fmt.Errorf("--credential %s was revoked; run 'calsync connect' again", sp.CredentialID)
		}
		sp.Email = cr.Subject
	}
	res, err := e.EnrollIdentity(ctx, sp)
	if err != nil {
		return err
	}
	if *asJSON {
		return json.NewEncoder(c.stdout).Encode(res)
	}
	fmt.Fprintf(c.stdout, "enrolled %s (identity %s): %d calendars in its list, %d kept by the filters: %d enrolled, %d already enrolled by another identity; %d unenrolled; %d calendars enrolled in all; its list is watched: calendars added or removed later follow within seconds\n",
		value, res.IdentityKey, res.Listed, res.Kept, res.Enrolled, res.Shared, res.Unenrolled, res.Calendars)
	if res.CapLeftOut > 0 {
		fmt.Fprintf(c.stdout, "%d calendars left out by the cap on calendars per identity (MAX_CALENDARS_PER_IDENTITY); the identity records it as calendarsLeftOut\n", res.CapLeftOut)
	}
	if res.Failed > 0 {
		return fmt.Errorf("%d failure(s); run with -v for details", res.Failed)
	}
	return nil
}

func cmdUnenroll(ctx context.Context, c *cli, args []string) error {
	fs := c.flagSet("unenroll")
	who := addIdentityFlags(fs)
	deleteMirror := fs.Bool("delete-mirror", false, "delete the mirrors too (each event announced as deleted on the change feed); default: keep them, unwatched")
	if err := c.parse(fs, args); err != nil {
		return err
	}
	kind, value, err := who.one()
	if err != nil {
		return err
	}
	e, _, err := c.enroller(ctx)
	if err != nil {
		return err
	}
	if kind == "domain" {
		res, err := e.UnenrollDomain(ctx, value, *deleteMirror)
		if errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("domain %s is not enrolled", value)
		}
		if err != nil {
			return err
		}
		fmt.Fprintf(c.stdout, "unenrolled %s: %d identities, %d rooms (%d rooms kept: another enrolled domain of the customer lists them); mirrors %s; %d failed\n",
			value, res.Unenrolled, res.RoomsUnenrolled, res.RoomsKept, map[bool]string{true: "being deleted", false: "kept"}[*deleteMirror], res.Failed)
		return nil
	}
	sp := who.spec()
	res, err := e.UnenrollIdentity(ctx, sp.Key(), *deleteMirror, "unenrolled by an operator")
	if errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("%s is not enrolled", value)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "unenrolled %s: %d calendars unwatched, %d mirrors being deleted; %d failed\n", value, res.Unenrolled, res.Purged, res.Failed)
	if res.Failed > 0 {
		return fmt.Errorf("%d failure(s); run with -v for details (RenewChannels stops leftover channels)", res.Failed)
	}
	return nil
}

// enroller builds the enrollment engine on the CLI's clients: with
// CHANNEL_TOKEN_KEYS the whole RenewChannels configuration (calendars are
// watched at once); without, Calendar access only (delegation through the
// operator's ADC, credentials through CREDENTIAL_PRIVATE_KEYS when set) and
// channels left to RenewChannels, renewed within RENEW_BEFORE as
// RenewChannels renews them.
func (c *cli) enroller(ctx context.Context) (*enroll.Enroller, bool, error) {
	if c.get("CHANNEL_TOKEN_KEYS") != "" {
		cfg, err := c.renewConfig(ctx)
		if err != nil {
			return nil, false, err
		}
		r, err := c.renewer(ctx, cfg)
		if err != nil {
			return nil, false, err
		}
		return r.Enroll, true, nil
	}
	cfg, err := config.Load[config.Enrollment](ctx, c.lookup)
	if err != nil {
		return nil, false, fmt.Errorf("%w (set it in the environment or --state-file)", err)
	}
	a, err := build(ctx, c, cfg)
	if err != nil {
		return nil, false, err
	}
	return a.Enroller, false, nil
}

// roomsSummary is the rooms' part of enroll --domain's summary ("" without --rooms).
func roomsSummary(rooms bool, res enroll.DomainResult) string {
	if !rooms {
		return ""
	}
	if res.RoomsSuperseded {
		return fmt.Sprintf("%d rooms listed, applied by a directory diff of the customer that began after this one (RenewChannels'; the later reading wins); %d other resources of the customer (equipment...) not followed; ",
			res.Rooms, res.NotRooms)
	}
	return fmt.Sprintf("%d rooms: %d enrolled, %d already followed (the customer's rooms are enrolled once for all its domains), %d unenrolled; %d other resources of the customer (equipment...) not followed; ",
		res.Rooms, res.RoomsEnrolled, res.Rooms-res.RoomsEnrolled, res.RoomsUnenrolled, res.NotRooms)
}
