package main

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/calsync/calsync/shared/channels"
	"github.com/calsync/calsync/shared/config"
	"github.com/calsync/calsync/shared/store"
)

// keysReport is what 'calsync keys' prints.
type keysReport struct {
	Keys []keyRow `json:"keys"`
	Live int      `json:"liveChannels"`
	// Credentials counts stored credentials by the key that opens them: a
	// sealing key id, or aes:KEYID for a legacy one not yet migrated.
	Credentials map[string]int `json:"credentials"`
}

type keyRow struct {
	channels.KeyUsage
	// Role is the key's place in CHANNEL_TOKEN_KEYS when it is set:
	// "signs", "verifies", or "not configured" (its channels' pushes are
	// answered 503, then 403: renew them or put the key back).
	Role string `json:"role,omitempty"`
}

// cmdKeys reports how many live channels each channel-token key signed
// (step 3 of a rotation is done when the old key's count is 0; channel
// records keep the signing key's id, the token itself is not stored) and
// how many credentials each sealing key (or legacy AES key) opens. Needs
// Firestore only; CHANNEL_TOKEN_KEYS, when set, adds each key's role.
func cmdKeys(ctx context.Context, c *cli, args []string) error {
	fs := c.flagSet("keys")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := c.parse(fs, args); err != nil {
		return err
	}
	cfg, err := c.basicConfig(ctx)
	if err != nil {
		return err
	}
	var configured []string
	if list := c.get("CHANNEL_TOKEN_KEYS"); list != "" {
		keys, err := config.ParseKeys(list)
		if err != nil {
			return fmt.Errorf("CHANNEL_TOKEN_KEYS: %w", err)
		}
		for _, k := range keys {
			configured = append(configured, k.ID)
		}
	}
	st, err := c.openStore(ctx, cfg.ProjectID, cfg.FirestoreDatabase)
	if err != nil {
		return err
	}
	recs, err := st.ChannelsInStates(ctx, store.ChannelActive)
	if err != nil {
		return err
	}
	creds, err := st.CredentialKeyCounts(ctx)
	if err != nil {
		return err
	}
	rep := keysReport{Keys: []keyRow{}, Credentials: creds}
	seen := map[string]bool{}
	for _, u := range channels.UsageByKey(recs, time.Now()) {
		rep.Keys = append(rep.Keys, keyRow{KeyUsage: u, Role: role(configured, u.KeyID)})
		rep.Live += u.Live
		seen[u.KeyID] = true
	}
	for _, id := range configured { // configured keys no channel uses (yet)
		if !seen[id] {
			rep.Keys = append(rep.Keys, keyRow{KeyUsage: channels.KeyUsage{KeyID: id}, Role: role(configured, id)})
		}
	}
	if *asJSON {
		enc := json.NewEncoder(c.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KEY ID\tLIVE CHANNELS\tLAST EXPIRES\tROLE")
	for _, r := range rep.Keys {
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\n", terminalSafe(r.KeyID), r.Live, when(r.LastExpiry, "-"), orDash(r.Role))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "\n%d live channel(s).", rep.Live)
	if len(configured) > 0 {
		var stale []string
		for _, r := range rep.Keys {
			if r.Live > 0 && r.KeyID != configured[0] {
				stale = append(stale, fmt.Sprintf("%s (%d)", terminalSafe(r.KeyID), r.Live))
			}
		}
		if len(stale) == 0 {
			fmt.Fprintf(c.stdout, " Every one is signed with the signing key %s: keys after it can be dropped.\n", configured[0])
		} else {
			fmt.Fprintf(c.stdout, " Not yet signed with the signing key %s: %s; the next RenewChannels run (or 'calsync renew') renews them.\n",
				configured[0], strings.Join(stale, ", "))
		}
	} else {
		fmt.Fprintln(c.stdout, " (Set CHANNEL_TOKEN_KEYS to see each key's role.)")
	}
	ids := slices.Sorted(maps.Keys(creds))
	fmt.Fprintf(c.stdout, "\nCREDENTIALS BY KEY:")
	if len(ids) == 0 {
		fmt.Fprint(c.stdout, " none")
	}
	for _, id := range ids {
		fmt.Fprintf(c.stdout, " %s %d", terminalSafe(id), creds[id])
	}
	fmt.Fprintln(c.stdout, " (aes:ID = legacy, not yet sealed; RenewChannels seals them while it has CREDENTIAL_KEYS)")
	return nil
}

func role(configured []string, id string) string {
	if len(configured) == 0 {
		return ""
	}
	for i, k := range configured {
		if k == id {
			if i == 0 {
				return "signs"
			}
			return "verifies"
		}
	}
	if id == channels.UnrecordedKey {
		return "version 1 token: accepted only before CHANNEL_TOKEN_V1_UNTIL"
	}
	return "not configured"
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
