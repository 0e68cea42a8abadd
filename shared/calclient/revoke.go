package calclient

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// RevokeGrant revokes a user's grant at Google's revocation endpoint
// (POST token=REFRESH_TOKEN): the refresh token and the access tokens it
// made stop working, and the app leaves the user's "third-party access"
// list. A token Google no longer knows (400 invalid_token: revoked or
// expired already) counts as revoked; anything else is an error to retry.
func (f *Factory) RevokeGrant(ctx context.Context, refreshToken string) error {
	if f.opts.RevokeURL == "" {
		return errors.New("calclient: no revocation endpoint (OAUTH_REVOKE_URL)")
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, f.opts.RevokeURL, strings.NewReader(url.Values{"token": {refreshToken}}.Encode()))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("calclient: revoke: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode == http.StatusOK {
		return nil
	}
	var e struct {
		Error string `json:"error"`
	}
	if resp.StatusCode == http.StatusBadRequest && json.Unmarshal(body, &e) == nil && e.Error == "invalid_token" {
		return nil
	}
	return fmt.Errorf("calclient: revoke: HTTP %d %s", resp.StatusCode, e.Error)
}
