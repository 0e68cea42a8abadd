package calclient

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"time"

	"golang.org/x/oauth2"
	"google.golang.org/api/iamcredentials/v1"
	"google.golang.org/api/option"
)

// Domain-wide delegation without a key file, the two calls Google's own
// impersonate package makes: IAM Credentials signJwt signs an assertion as the
// delegation service account, and the token endpoint's JWT-bearer grant
// (RFC 7523) exchanges it for the subject's access token. They are made here
// rather than through google.golang.org/api/impersonate because that package
// hard-codes both endpoints (so neither the emulator nor a private endpoint
// can be reached) and flattens every failure into a string ("impersonate:
// status code 400: ..."), which inside the transport's *url.Error looked like
// a network failure: a suspended subject was retried until dead-lettered.
// Here signJwt goes through the generated iamcredentials client
// (*googleapi.Error, endpoint option) and the exchange answers Google's OAuth
// errors as *oauth2.RetrieveError, exactly like a refresh-token grant.

// GoogleTokenURL is Google's token endpoint and the audience of JWT-bearer
// assertions (Google checks aud against it, wherever the request goes).
const GoogleTokenURL = "https://oauth2.googleapis.com/token"

const jwtBearerGrant = "urn:ietf:params:oauth:grant-type:jwt-bearer"

// delegatedSource is an oauth2.TokenSource of a subject's tokens.
type delegatedSource struct {
	ctx      context.Context
	iam      *iamcredentials.Service
	sa       string
	subject  string
	scopes   []string
	tokenURL string
	client   *http.Client
	now      func() time.Time
}

// newDelegatedSource builds the source. signJwt is called with ADC as the
// caller's credentials (it needs Token Creator on sa), at iamEndpoint
// (Google's when ""); emulated: with no credentials (the emulator's).
func newDelegatedSource(ctx context.Context, sa, subject string, scopes []string, iamEndpoint string, emulated bool, tokenURL string, client *http.Client) (*delegatedSource, error) {
	opts := []option.ClientOption{option.WithScopes(iamcredentials.CloudPlatformScope)}
	if iamEndpoint != "" {
		opts = append(opts, option.WithEndpoint(iamEndpoint))
	}
	if emulated {
		opts = append(opts, option.WithoutAuthentication(), option.WithHTTPClient(client))
	}
	svc, err := iamcredentials.NewService(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("calclient: iamcredentials client: %w", err)
	}
	if tokenURL == "" {
		tokenURL = GoogleTokenURL
	}
	return &delegatedSource{ctx: ctx, iam: svc, sa: sa, subject: subject, scopes: scopes, tokenURL: tokenURL, client: client, now: time.Now}, nil
}

// Token signs a fresh assertion and exchanges it.
func (d *delegatedSource) Token() (*oauth2.Token, error) {
	now := d.now()
	claims, err := json.Marshal(map[string]any{
		"iss": d.sa, "sub": d.subject, "scope": strings.Join(d.scopes, " "), "aud": GoogleTokenURL,
		"iat": now.Unix(), "exp": now.Add(time.Hour).Unix(),
	})
	if err != nil {
		return nil, err
	}
	signed, err := d.iam.Projects.ServiceAccounts.SignJwt("projects/-/serviceAccounts/"+d.sa,
		&iamcredentials.SignJwtRequest{Payload: string(claims)}).Context(d.ctx).Do()
	if err != nil {
		return nil, fmt.Errorf("calclient: delegation: signJwt as %s: %w", d.sa, err)
	}
	return exchangeJWT(d.ctx, d.client, d.tokenURL, signed.SignedJwt, now)
}

// exchangeJWT runs the JWT-bearer grant. A refusal is an
// *oauth2.RetrieveError with Google's error code (invalid_grant: subject
// suspended or deleted; unauthorized_client: delegation revoked or scope not
// authorised); a body that is not OAuth JSON (an HTML 502 page) still gives
// one, with the status and no code.
func exchangeJWT(ctx context.Context, client *http.Client, tokenURL, assertion string, now time.Time) (*oauth2.Token, error) {
	form := url.Values{"grant_type": {jwtBearerGrant}, "assertion": {assertion}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, tokenURL, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("calclient: delegation: token exchange: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("calclient: delegation: token exchange: %w", err)
	}
	var out struct {
		AccessToken string `json:"access_token"`
		TokenType   string `json:"token_type"`
		ExpiresIn   int64  `json:"expires_in"`
		Error       string `json:"error"`
		Description string `json:"error_description"`
	}
	ct, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	jerr := json.Unmarshal(body, &out)
	if resp.StatusCode < 200 || resp.StatusCode > 299 || jerr != nil || out.AccessToken == "" {
		re := &oauth2.RetrieveError{Response: resp, Body: body}
		if jerr == nil && (ct == "" || strings.HasSuffix(ct, "json")) {
			re.ErrorCode, re.ErrorDescription = out.Error, out.Description
		}
		return nil, fmt.Errorf("calclient: delegation: token exchange: %w", re)
	}
	tok := &oauth2.Token{AccessToken: out.AccessToken, TokenType: out.TokenType}
	if out.ExpiresIn > 0 {
		tok.Expiry = now.Add(time.Duration(out.ExpiresIn) * time.Second)
	}
	return tok, nil
}
