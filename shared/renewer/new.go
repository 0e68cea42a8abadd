package renewer

import (
	"log/slog"

	"github.com/calsync/calsync/shared/channels"
	"github.com/calsync/calsync/shared/channeltoken"
	"github.com/calsync/calsync/shared/config"
	"github.com/calsync/calsync/shared/credentials"
	"github.com/calsync/calsync/shared/enroll"
	"github.com/calsync/calsync/shared/store"
)

// New builds a Renewer from RenewChannels' config on the given store and
// publisher (the function's own clients, or the CLI's): Calendar access,
// the channel manager, the lifecycle owner (it stops a dead grant's channels), and
// the enrollment engine (list channels, directory diffs).
func New(cfg config.RenewChannels, st *store.Store, pub Publisher, logger *slog.Logger) (*Renewer, error) {
	tokens, err := channeltoken.Parse(cfg.ChannelTokenKeys)
	if err != nil {
		return nil, err
	}
	access, err := credentials.NewAccess(cfg.Calendar, st, logger)
	if err != nil {
		return nil, err
	}
	mgr := &channels.Manager{Store: st, Calendars: access.Calendars, Lifecycle: access.Lifecycle, Tokens: tokens, WebhookURL: cfg.WebhookURL,
		TTL: cfg.ChannelTTL, Logger: logger, Namespace: channels.Namespace(cfg.ProjectID, cfg.Deployment)}
	access.Lifecycle.Stopper = mgr
	access.Lifecycle.NotFound = store.NotFoundPolicy{Attempts: cfg.NotFoundAttempts, After: cfg.NotFoundAfter}
	en := &enroll.Enroller{Store: st, Calendars: access.Calendars, Channels: mgr, Requests: pub, Lifecycle: access.Lifecycle,
		Directory:   enroll.DirectoryClients{Tokens: access.Calendars, Endpoint: cfg.CalendarEndpoint},
		RenewBefore: cfg.RenewBefore, Concurrency: cfg.Concurrency, Logger: logger}
	return &Renewer{ProjectID: cfg.ProjectID, Store: st, Access: access, Channels: mgr, Publisher: pub,
		RenewBefore: cfg.RenewBefore, ReconcileAfter: cfg.ReconcileAfter, Concurrency: cfg.Concurrency, Logger: logger,
		PollInterval: cfg.PollInterval, NotFoundReprobe: cfg.NotFoundReprobe,
		Enroll: en, DirectorySyncInterval: cfg.DirectorySyncInterval}, nil
}
