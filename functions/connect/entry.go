package connect

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	"golang.org/x/oauth2"

	"github.com/calsync/calsync/shared/app"
	"github.com/calsync/calsync/shared/calclient"
	"github.com/calsync/calsync/shared/config"
	"github.com/calsync/calsync/shared/startup"
)

// New builds the function from its config (shared/app: the store, the
// public key, the tenants' control topics). close flushes and closes them.
func New(ctx context.Context, cfg config.Connect, logger *slog.Logger) (h *Handler, close func(), err error) {
	return app.Function(ctx, cfg, logger, NewHandler)
}

// NewHandler is the function's handler on what a built.
func NewHandler(cfg config.Connect, a *app.App, logger *slog.Logger) *Handler {
	tenants, _ := cfg.TenantSet("") // config.Load validated it
	linkKeys, _ := cfg.LinkKeys()   // and these
	return &Handler{Store: a.Store, Seal: a.Seal, Tenants: tenants, Logger: logger,
		Links: func(tenant string) map[string][]byte { return linkKeys[tenant] },
		Control: func(ctx context.Context, tenant string, data []byte, attrs map[string]string) error {
			p := a.Controls[tenant]
			if p == nil {
				return fmt.Errorf("connect: tenant %s has no control topic (TENANTS controlTopic)", tenant)
			}
			return p.Publish(ctx, data, attrs, "")
		},
		OAuth: &oauth2.Config{ClientID: cfg.OAuthClientID, ClientSecret: cfg.OAuthClientSecret, Scopes: calclient.ConnectScopes,
			RedirectURL: strings.TrimSuffix(cfg.ConnectURL, "/") + "/callback",
			Endpoint:    oauth2.Endpoint{AuthURL: cfg.OAuthAuthURL, TokenURL: cfg.OAuthTokenURL, AuthStyle: oauth2.AuthStyleInParams}},
	}
}

// Handle is the Connect entry point: built on the first request; while it
// cannot start it answers 503 and tries again later.
var Handle = startup.HTTP(startup.Function("Connect", New))
