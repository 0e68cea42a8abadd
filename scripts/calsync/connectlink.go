package main

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/calsync/calsync/shared/config"
	"github.com/calsync/calsync/shared/connectlink"
)

// cmdConnectLink prints a connect link for a tenant's user, as a product's
// backend makes one (connectlink.New): signed with the first of the
// tenant's CONNECT_LINK_KEYS, for CONNECT_URL.
func cmdConnectLink(_ context.Context, c *cli, args []string) error {
	fs := c.flagSet("connect-link")
	tenantName := fs.String("tenant", "", "the tenant (product) the user belongs to (required)")
	externalID := fs.String("external-id", "", "the product's id for the user (required)")
	returnURL := fs.String("return", "", "where the user is sent back, on the tenant's returnUrls (required)")
	ttl := fs.Duration("ttl", 24*time.Hour, "how long the link works (at most 168h)")
	disconnect := fs.Bool("disconnect", false, "a disconnect link: the user disconnects their Google account (grant revoked, credential deleted)")
	if err := c.parse(fs, args); err != nil {
		return err
	}
	if *tenantName == "" || *externalID == "" || *returnURL == "" {
		return usagef("--tenant, --external-id and --return are required")
	}
	base := strings.TrimSuffix(c.get("CONNECT_URL"), "/")
	if base == "" {
		return usagef("CONNECT_URL (terraform output connect_url) is needed")
	}
	key, err := config.Connect{ConnectLinkKeys: c.get("CONNECT_LINK_KEYS")}.SigningLinkKey(*tenantName)
	if err != nil {
		return err
	}
	action := connectlink.ActionConnect
	if *disconnect {
		action = connectlink.ActionDisconnect
	}
	token, err := connectlink.NewFor(action, connectlink.Key{ID: key.ID, Secret: key.Material}, *tenantName, *externalID, *returnURL, *ttl, time.Now())
	if err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "%s/?link=%s\n", base, url.QueryEscape(token))
	return nil
}
