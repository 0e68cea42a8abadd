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

// seedWorkspace creates the demo tenants' domains and users; a tenant
// without one is left alone.
func seedWorkspace(ctx context.Context, st *stack.Stack) error {
	for _, d := range demoUsers {
		if err := st.Calendar.CreateDomain(d.domain, "admin@"+d.domain); err != nil {
			return err
		}
		if err := st.Calendar.AddDomainUser(d.user, false); err != nil {
			return err
		}
		tok := st.Calendar.IssueToken(d.user)
		svc, err := calendaremu.NewService(ctx, st.CalendarBaseURL, option.WithTokenSource(oauth2.StaticTokenSource(&oauth2.Token{AccessToken: tok.AccessToken})))
		if err != nil {
			return err
		}
		for i := range 3 {
			start := time.Now().UTC().Truncate(time.Hour).Add(time.Duration(24*(i+1)) * time.Hour)
			if _, err := svc.Events.Insert(d.user, &calendar.Event{Summary: fmt.Sprintf("%s meeting %d", strings.Split(d.user, "@")[0], i+1),
				Start: &calendar.EventDateTime{DateTime: start.Format(time.RFC3339)},
				End:   &calendar.EventDateTime{DateTime: start.Add(time.Hour).Format(time.RFC3339)}}).Context(ctx).Do(); err != nil {
				return err
			}
		}
	}
	return st.Calendar.Share(demoUsers[0].user, demoUsers[1].user, "reader", true)
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
