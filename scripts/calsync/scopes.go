package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/calsync/calsync/shared/calclient"
	"github.com/calsync/calsync/shared/enroll"
)

// cmdScopes prints what a Workspace admin authorises for domain-wide
// delegation, from the lists the code asks for (Google checks them exactly).
func cmdScopes(_ context.Context, c *cli, args []string) error {
	fs := c.flagSet("scopes")
	api := fs.String("api", "", "print only this API's scopes, comma-separated: calendar, directory or all")
	if err := c.parseFlags(fs, args); err != nil {
		return err
	}
	calendar, directory := strings.Join(calclient.Scopes, ","), strings.Join(enroll.DirectoryScopes, ",")
	switch *api {
	case "calendar":
		fmt.Fprintln(c.stdout, calendar)
	case "directory":
		fmt.Fprintln(c.stdout, directory)
	case "all":
		fmt.Fprintln(c.stdout, calendar+","+directory)
	case "":
		fmt.Fprintf(c.stdout, "Admin console: Security > Access and data control > API controls > Domain-wide delegation > Add new\n"+
			"Client ID: client_id of 'terraform output -json calendar_service_account'\n"+
			"OAuth scopes, exactly these (comma-separated):\n"+
			"  Calendar API (every delegated calendar):\n    %s\n"+
			"  Directory API (also, to enroll a domain):\n    %s\n", calendar, directory)
	default:
		return usagef("--api %q: want calendar, directory or all", *api)
	}
	return nil
}
