package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"golang.org/x/oauth2"
	"google.golang.org/api/calendar/v3"
	"google.golang.org/api/option"

	"github.com/calsync/calsync/scripts/devstack/stack"
	"github.com/calsync/calsync/shared/tenant"
	"github.com/calsync/calsync/shared/testing/calendaremu"
)

// The demo tenants' Workspace in the Calendar emulator: one user per
// domain, a few events each, and ann's calendar shared with bob, so that
// enrolling both shows one calendar mirrored once per tenant.
var demoUsers = []struct{ domain, user string }{
	{"acme.test", "ann@acme.test"},
	{"globex.test", "bob@globex.test"},
}

// demoConnectUser is the Google account (no Workspace: an OAuth grant) the
// printed connect link lets a person connect as globex's user "demo-user":
// the emulator's consent page lists it.
const (
	demoConnectUser       = "carol@gmail.test"
	demoConnectTenant     = "globex"
	demoConnectExternalID = "demo-user"
)

// seedWorkspace creates the demo tenants' domains and users, and the demo
// OAuth user, each with a few events; a tenant without one is left alone.
func seedWorkspace(ctx context.Context, st *stack.Stack) error {
	for _, d := range demoUsers {
		if err := st.Calendar.CreateDomain(d.domain, "admin@"+d.domain); err != nil {
			return err
		}
		if err := st.Calendar.AddDomainUser(d.user, false); err != nil {
			return err
		}
		if err := seedEvents(ctx, st, d.user); err != nil {
			return err
		}
	}
	if err := st.Calendar.CreateUser(demoConnectUser, ""); err != nil {
		return err
	}
	if err := seedEvents(ctx, st, demoConnectUser); err != nil {
		return err
	}
	return st.Calendar.Share(demoUsers[0].user, demoUsers[1].user, "reader", true)
}

// seedEvents puts three one-hour meetings on the user's primary calendar,
// one a day from tomorrow.
func seedEvents(ctx context.Context, st *stack.Stack, user string) error {
	tok := st.Calendar.IssueToken(user)
	svc, err := calendaremu.NewService(ctx, st.CalendarBaseURL, option.WithTokenSource(oauth2.StaticTokenSource(&oauth2.Token{AccessToken: tok.AccessToken})))
	if err != nil {
		return err
	}
	for i := range 3 {
		start := time.Now().UTC().Truncate(time.Hour).Add(time.Duration(24*(i+1)) * time.Hour)
		if _, err := svc.Events.Insert(user, &calendar.Event{Summary: fmt.Sprintf("%s meeting %d", strings.Split(user, "@")[0], i+1),
			Start: &calendar.EventDateTime{DateTime: start.Format(time.RFC3339)},
			End:   &calendar.EventDateTime{DateTime: start.Add(time.Hour).Format(time.RFC3339)}}).Context(ctx).Do(); err != nil {
			return err
		}
	}
	return nil
}

// printConnect prints a connect link for globex's user "demo-user", as
// globex's backend would make one, valid for a day.
func printConnect(w io.Writer, st *stack.Stack, stateFile string) error {
	link, err := st.ConnectLink(demoConnectTenant, demoConnectExternalID, 24*time.Hour)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "To connect a Google account yourself, as an end user of %s (user %q): open this link in a browser on this machine,\n"+
		"choose %s on the emulator's consent page and Allow; you land on the product page, and the feed below shows the enrollment:\n  %s\n",
		demoConnectTenant, demoConnectExternalID, demoConnectUser, link)
	cli := "go run ./scripts/calsync connect-link"
	if stateFile != "" {
		cli += " --state-file " + stateFile
	}
	fmt.Fprintf(w, "  (a new link: %s --tenant %s --external-id USER --return %s)\n", cli, demoConnectTenant, st.ProductURL)
	return nil
}

// printControl says where control messages go, per tenant, and gives a
// command to paste: a product's enroll of a user, answered on the
// lifecycle topic.
func printControl(w io.Writer, st *stack.Stack, stateFile string) {
	fmt.Fprintf(w, "Tenants (control topic -> push subscription to the SyncWorker; may enroll); answers and transitions on %s:\n", st.LifecycleTopic)
	for _, tc := range st.Tenants {
		may := "anyone: the operator's"
		if tc.Name != tenant.Default {
			may = strings.Join(append(tc.Domains, tc.Subjects...), ", ")
			if tc.OAuth {
				may += ", OAuth grants"
			}
		}
		fmt.Fprintf(w, "  %-8s %s -> %s   (%s)\n", tc.Name, tc.ControlTopic, tc.ControlSubscription, may)
	}
	cli := "go run ./scripts/calsync control"
	if stateFile != "" {
		cli += " --state-file " + stateFile
	} else {
		cli = "(after the export lines above) " + cli
	}
	fmt.Fprintln(w, "To publish a control message as tenant acme (enroll ann@acme.test) and wait for its answer:")
	fmt.Fprintf(w, "  %s --tenant acme --action enroll --subject ann@acme.test --external-id acme-ann --wait\n", cli)
	fmt.Fprintf(w, "  (globex: --tenant globex --subject bob@globex.test, who also sees ann's calendar, shared with him; --action unenroll to stop)\n")
}
