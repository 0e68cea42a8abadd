package stack

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/calsync/calsync/shared/config"
	"github.com/calsync/calsync/shared/connectlink"
	"github.com/calsync/calsync/shared/tenant"
)

// The Connect function on the stack (issue 24): its front is CONNECT_URL;
// every tenant with OAuth gets a connect-link key of its own
// (CONNECT_LINK_KEYS, random per run) and may send its users back to the
// stand-in product page the stack serves (ProductURL), which shows what
// the Connect function sent back (calsync_status and the rest).

// withProductReturn adds the product page to the return URLs of every
// tenant with OAuth grants (the ones connect links are for).
func withProductReturn(tenants []tenant.Tenant, productURL string) []tenant.Tenant {
	out := make([]tenant.Tenant, len(tenants))
	for i, t := range tenants {
		if t.OAuth {
			t.ReturnURLs = append(slices.Clone(t.ReturnURLs), productURL)
		}
		out[i] = t
	}
	return out
}

// connectLinkKeys is CONNECT_LINK_KEYS: a new key for every tenant with
// OAuth grants but the operator's.
func (s *Stack) connectLinkKeys() (string, error) {
	keys := map[string]string{}
	for _, t := range s.Tenants {
		if t.Name == tenant.Default || !t.OAuth {
			continue
		}
		k, err := randomKey("link1")
		if err != nil {
			return "", err
		}
		keys[t.Name] = k
	}
	b, err := json.Marshal(keys)
	return string(b), err
}

// ConnectLink is a connect link for a tenant's user, as the tenant's
// backend makes one (connectlink.New, the tenant's key), returning the user
// to the product page: the URL to open in a browser.
func (s *Stack) ConnectLink(tenantName, externalID string, ttl time.Duration) (string, error) {
	key, err := config.Connect{ConnectLinkKeys: s.Env["CONNECT_LINK_KEYS"]}.SigningLinkKey(tenantName)
	if err != nil {
		return "", fmt.Errorf("stack: %w", err)
	}
	token, err := connectlink.New(connectlink.Key{ID: key.ID, Secret: key.Material}, tenantName, externalID, s.ProductURL, ttl, time.Now())
	if err != nil {
		return "", fmt.Errorf("stack: %w", err)
	}
	return strings.TrimSuffix(s.ConnectURL, "/") + "/?link=" + url.QueryEscape(token), nil
}

// product is the stand-in for a product's page a user comes back to.
type product struct {
	url  string
	srv  *http.Server
	done chan struct{}
}

var productPage = template.Must(template.New("product").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Product (calsync devstack)</title></head>
<body><main>
<h1>Back at the product</h1>
<p>This page stands in for the product a connect link returns to. calsync sent:</p>
<dl>
<dt>calsync_status</dt><dd id="status">{{.Get "calsync_status"}}</dd>
<dt>calsync_reason</dt><dd id="reason">{{.Get "calsync_reason"}}</dd>
<dt>calsync_identity</dt><dd id="identity">{{.Get "calsync_identity"}}</dd>
<dt>calsync_request</dt><dd id="request">{{.Get "calsync_request"}}</dd>
</dl>
</main></body></html>
`))

func startProduct() (*product, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("product page: %w", err)
	}
	p := &product{url: "http://" + ln.Addr().String() + "/product/", done: make(chan struct{})}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /product/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_ = productPage.Execute(w, r.URL.Query())
	})
	p.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		defer close(p.done)
		if err := p.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return
		}
	}()
	return p, nil
}

func (p *product) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := p.srv.Shutdown(ctx); err != nil {
		_ = p.srv.Close()
	}
	<-p.done
}
