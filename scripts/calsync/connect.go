package main

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"html"
	"io"
	"net"
	"net/http"
	"os/exec"
	"runtime"
	"time"

	"golang.org/x/oauth2"

	"github.com/calsync/calsync/shared/calclient"
	"github.com/calsync/calsync/shared/config"
	"github.com/calsync/calsync/shared/credentials"
	"github.com/calsync/calsync/shared/oauthgrant"
)

// connectOptions drive the OAuth loopback flow.
type connectOptions struct {
	OAuth     *oauth2.Config // ClientID, ClientSecret, Endpoint, Scopes; RedirectURL is set here
	LoginHint string
	Timeout   time.Duration
	// Open is given the consent URL (print it, open a browser, or, in tests,
	// follow it).
	Open func(url string) error
	// Progress receives human-readable status lines.
	Progress io.Writer
}

// connectResult is what a successful flow yields.
type connectResult struct {
	Email        string
	RefreshToken string
	Scopes       []string // what Google granted (every one of calclient.Scopes)
}

// connectFlow runs the loopback flow: listen on 127.0.0.1:0, send the user to
// the consent URL (access_type=offline, prompt=consent, PKCE S256, a random
// state), receive the code on the loopback address, exchange it, and read the
// user's email from the ID token that comes with it (scopes openid and email:
// calsync's Calendar scope, calendar.events.readonly, cannot read the
// calendar list).
func connectFlow(ctx context.Context, o connectOptions) (connectResult, error) {
	var res connectResult
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return res, fmt.Errorf("listen on loopback: %w", err)
	}
	defer ln.Close()
	cfg := *o.OAuth
	cfg.RedirectURL = "http://" + ln.Addr().String() + "/callback"
	state := randomString()
	verifier := oauth2.GenerateVerifier()

	type answer struct {
		code string
		err  error
	}
	got := make(chan answer, 1)
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/callback" {
			http.NotFound(w, r)
			return
		}
		q := r.URL.Query()
		if subtle.ConstantTimeCompare([]byte(q.Get("state")), []byte(state)) != 1 {
			// Not this flow's answer: a stale tab, another flow's redirect,
			// or a link someone sent to the user to plant their own code.
			// Ignored: it must neither end the flow nor be exchanged.
			http.Error(w, "calsync: this is not the answer this sign-in is waiting for; ignored", http.StatusBadRequest)
			if o.Progress != nil {
				fmt.Fprintln(o.Progress, "ignored a request to the callback with a wrong state (still waiting)")
			}
			return
		}
		var a answer
		switch {
		case q.Get("error") != "":
			a.err = fmt.Errorf("authorization refused: %s", terminalSafe(q.Get("error")))
		case q.Get("code") == "":
			a.err = errors.New("authorization answer without a code")
		default:
			a.code = q.Get("code")
		}
		if a.err != nil {
			http.Error(w, html.EscapeString(a.err.Error()), http.StatusBadRequest)
		} else {
			fmt.Fprintln(w, "calsync: authorized. You can close this window.")
		}
		select {
		case got <- a:
		default:
		}
	})}
	go srv.Serve(ln)
	defer srv.Close()

	opts := oauthgrant.AuthOptions(verifier)
	if o.LoginHint != "" {
		opts = append(opts, oauth2.SetAuthURLParam("login_hint", o.LoginHint))
	}
	authURL := cfg.AuthCodeURL(state, opts...)
	if o.Progress != nil {
		fmt.Fprintf(o.Progress, "Open this URL in a browser and grant access:\n\n  %s\n\nWaiting for the answer on %s ...\n", authURL, cfg.RedirectURL)
	}
	timeout := o.Timeout
	if timeout <= 0 {
		timeout = 5 * time.Minute
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	openErr := make(chan error, 1)
	go func() { openErr <- o.Open(authURL) }()
	var a answer
	select {
	case a = <-got:
	case err := <-openErr:
		if err != nil {
			return res, fmt.Errorf("open consent URL: %w", err)
		}
		select {
		case a = <-got:
		case <-ctx.Done():
			return res, fmt.Errorf("no authorization answer within %s", timeout)
		}
	case <-ctx.Done():
		return res, fmt.Errorf("no authorization answer within %s", timeout)
	}
	if a.err != nil {
		return res, a.err
	}
	g, err := oauthgrant.Exchange(ctx, &cfg, a.code, verifier)
	if errors.Is(err, oauthgrant.ErrNoRefreshToken) {
		return res, errors.New("no refresh token in the answer (remove the app's access in the Google account and connect again)")
	}
	if err != nil {
		return res, err
	}
	return connectResult{Email: g.Email, RefreshToken: g.RefreshToken, Scopes: g.Scopes}, nil
}

func randomString() string {
	b := make([]byte, 24)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// browser opens the consent URL (tests follow it instead).
var browser = openBrowser

// openBrowser tries the desktop's URL opener; failing is fine (the URL was printed).
func openBrowser(url string) error {
	var cmd *exec.Cmd
	switch runtime.GOOS {
	case "darwin":
		cmd = exec.Command("open", url)
	case "windows":
		cmd = exec.Command("rundll32", "url.dll,FileProtocolHandler", url)
	default:
		cmd = exec.Command("xdg-open", url)
	}
	if err := cmd.Start(); err != nil {
		return nil
	}
	go cmd.Wait()
	return nil
}

func cmdConnect(ctx context.Context, c *cli, args []string) error {
	fs := c.flagSet("connect")
	hint := fs.String("login-hint", "", "email of the account to connect (preselects it on the consent page)")
	timeout := fs.Duration("timeout", 5*time.Minute, "how long to wait for the browser's answer")
	noBrowser := fs.Bool("no-browser", false, "only print the consent URL")
	if err := c.parse(fs, args); err != nil {
		return err
	}
	if *timeout <= 0 {
		return usagef("--timeout must be positive")
	}
	cfg, err := config.Load[credsConfig](ctx, c.lookup)
	if err != nil {
		return fmt.Errorf("%w (set it in the environment or --state-file)", err)
	}
	if cfg.OAuthClientID == "" || cfg.OAuthClientSecret == "" {
		return errors.New("OAUTH_CLIENT_ID and OAUTH_CLIENT_SECRET are needed to connect a user (the OAuth client of type Desktop app)")
	}
	st, err := c.openStore(ctx, cfg.ProjectID, cfg.FirestoreDatabase)
	if err != nil {
		return err
	}
	creds, err := credentials.NewVault(cfg.Calendar, st)
	if err != nil {
		return err
	}
	if creds.Seal == nil {
		return errors.New("connect seals the refresh token to the deployment's public key: set CREDENTIAL_PUBLIC_KEY (terraform output credential_public_key)")
	}
	open := browser
	if *noBrowser {
		open = func(string) error { return nil }
	}
	return connectAndStore(ctx, connectOptions{
		OAuth:     calclient.FromConfig(cfg.Calendar, nil).OAuth,
		LoginHint: *hint,
		Timeout:   *timeout,
		Open:      open,
		Progress:  c.stderr,
	}, creds, c.stdout)
}

// connectAndStore runs the flow and stores the token sealed to the public
// key (this machine cannot open it again); it prints the credential id.
func connectAndStore(ctx context.Context, o connectOptions, store *credentials.Vault, out io.Writer) error {
	res, err := connectFlow(ctx, o)
	if err != nil {
		return err
	}
	id, err := store.Put(ctx, res.Email, res.RefreshToken, res.Scopes...)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "connected %s\ncredential %s\n\nwatch a calendar with: calsync watch --calendar %s --credential %s\n", res.Email, id, res.Email, id)
	return nil
}
