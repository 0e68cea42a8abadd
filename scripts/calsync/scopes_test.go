package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/calsync/calsync/shared/calclient"
	"github.com/calsync/calsync/shared/enroll"
)

// scopes prints the code's own lists, per API, the way the Admin console
// takes them, each for its own delegation account's client id: no list of
// both APIs' scopes (one client id must never be authorised for both).
func TestScopesCommand(t *testing.T) {
	calendar, directory := strings.Join(calclient.Scopes, ","), strings.Join(enroll.DirectoryScopes, ",")
	for args, want := range map[string]string{
		"":                 "Domain-wide delegation",
		"--api=calendar":   calendar + "\n",
		"--api=directory":  directory + "\n",
		"--api=all":        "",
		"--api=everything": "",
	} {
		var out, errOut bytes.Buffer
		argv := []string{"scopes"}
		if args != "" {
			argv = append(argv, args)
		}
		code := realMain(context.Background(), argv, &out, &errOut)
		if want == "" {
			if code != 2 {
				t.Errorf("scopes %s: exit %d, want 2 (usage)", args, code)
			}
			continue
		}
		if code != 0 || !strings.Contains(out.String(), want) {
			t.Errorf("scopes %s: exit %d, stdout %q, want %q", args, code, out.String(), want)
		}
		if args == "" && (!strings.Contains(out.String(), "OAuth scopes: "+calendar+"\n") || !strings.Contains(out.String(), "OAuth scopes: "+directory+"\n") ||
			!strings.Contains(out.String(), "calendar_service_account") || !strings.Contains(out.String(), "directory_service_account")) {
			t.Errorf("scopes: %q lacks a client id or its list", out.String())
		}
	}
}
