package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/calsync/calsync/shared/calclient"
	"github.com/calsync/calsync/shared/enroll"
)

// cmdScopes prints what a Workspace admin authorises for domain-wide
// delegation, from the lists the code asks for (Google checks them exactly):
// each API's scopes for its own delegation account's client id, never both
// for one (whoever holds the Calendar's account must not read the directory).
func cmdScopes(_ context.Context, c *cli, args []string) error {
	fs := c.flagSet("scopes")
	api := fs.String("api", "", "print only this API's scopes, comma-separated: calendar or directory")
	if err := c.parseFlags(fs, args); err != nil {
		return err
	}
	calendar, directory := strings.Join(calclient.Scopes, ","), strings.Join(enroll.DirectoryScopes, ",")
	switch *api {
	case "calendar":
		fmt.Fprintln(c.stdout, calendar)
	case "directory":
		fmt.Fprintln(c.stdout, directory)
	case "":
		fmt.Fprintf(c.stdout, "Admin console: Security > Access and data control > API controls > Domain-wide delegation > Add new,\n"+
			"once per client id, each with exactly its own scopes (comma-separated):\n"+
			"  Calendar API (every delegated calendar):\n"+
			"    Client ID: client_id of 'terraform output -json calendar_service_account'\n    OAuth scopes: %s\n"+
			"  Directory API (only to enroll a domain):\n"+
			"    Client ID: client_id of 'terraform output -json directory_service_account'\n    OAuth scopes: %s\n", calendar, directory)
	default:
		return usagef("--api %q: want calendar or directory (each API has its own client id)", *api)
	}
	return nil
}
