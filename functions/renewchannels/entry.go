package renewchannels

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"sync"

	"cloud.google.com/go/firestore"

	"github.com/calsync/calsync/shared/calclient"
	"github.com/calsync/calsync/shared/channels"
	"github.com/calsync/calsync/shared/channeltoken"
	"github.com/calsync/calsync/shared/config"
	"github.com/calsync/calsync/shared/credentials"
	"github.com/calsync/calsync/shared/logging"
	"github.com/calsync/calsync/shared/pubsubx"
	"github.com/calsync/calsync/shared/store"
)

// Deps are the clients a Renewer is built from; the CLI and the devstack make
// them themselves (e.g. against emulators).
type Deps struct {
	FS        *firestore.Client
	Publisher Publisher
	Logger    *slog.Logger
}

// Parts are the pieces New builds from config, shared by the CLI.
type Parts struct {
	Factory     *calclient.Factory
	Credentials *credentials.Store
	Channels    *channels.Manager
	Revoker     *credentials.Revoker
}

// Build makes a Renewer (and its parts) from config and clients.
func Build(cfg config.RenewChannels, d Deps) (*Renewer, Parts, error) {
	tokens, err := channeltoken.Parse(cfg.ChannelTokenKeys)
	if err != nil {
		return nil, Parts{}, err
	}
	ciph, err := credentials.ParseCipher(cfg.CredentialKeys)
	if err != nil {
		return nil, Parts{}, err
	}
	creds := &credentials.Store{FS: d.FS, Cipher: ciph}
	factory := calclient.New(calclient.FromConfig(cfg.Calendar, creds))
	mgr := &channels.Manager{FS: d.FS, Calendars: factory, Tokens: tokens, WebhookURL: cfg.WebhookURL,
		TTL: cfg.ChannelTTL, Logger: d.Logger}
	rev := &credentials.Revoker{FS: d.FS, Stopper: mgr, Logger: d.Logger}
	r := &Renewer{ProjectID: cfg.ProjectID, FS: d.FS, Channels: mgr, Revoker: forgetting{rev, factory}, Publisher: d.Publisher,
		RenewBefore: cfg.RenewBefore, ReconcileAfter: cfg.ReconcileAfter, Concurrency: cfg.Concurrency, Logger: d.Logger}
	return r, Parts{Factory: factory, Credentials: creds, Channels: mgr, Revoker: rev}, nil
}

// forgetting drops the cached client of a dead grant after recording it.
type forgetting struct {
	rev     *credentials.Revoker
	factory *calclient.Factory
}

func (f forgetting) Revoked(ctx context.Context, cal store.Calendar, cause error) error {
	f.factory.Forget(cal)
	return f.rev.Revoked(ctx, cal, cause)
}

// New builds a Renewer with its own Firestore and Pub/Sub clients (ADC, or
// the emulators named by FIRESTORE_EMULATOR_HOST / PUBSUB_EMULATOR_HOST).
// close releases them.
func New(ctx context.Context, cfg config.RenewChannels, logger *slog.Logger) (r *Renewer, close func(), err error) {
	fs, err := firestore.NewClientWithDatabase(ctx, cfg.ProjectID, cfg.FirestoreDatabase)
	if err != nil {
		return nil, nil, fmt.Errorf("firestore: %w", err)
	}
	ps, err := pubsubx.NewClient(ctx, cfg.ProjectID, "")
	if err != nil {
		fs.Close()
		return nil, nil, err
	}
	pub := pubsubx.NewPublisher(ps, cfg.NotificationsTopic, false)
	r, _, err = Build(cfg, Deps{FS: fs, Publisher: pub, Logger: logger})
	if err != nil {
		pub.Stop()
		ps.Close()
		fs.Close()
		return nil, nil, err
	}
	return r, func() { pub.Stop(); ps.Close(); fs.Close() }, nil
}

// ServeHTTP runs one renewal and answers its Summary as JSON: 200 when the
// run happened (single failures are in the summary and logged as
// renew_failure), 500 when it could not run at all (Scheduler retries;
// overlapping runs are safe).
func (r *Renewer) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if req.Method != http.MethodPost && req.Method != http.MethodGet {
		w.Header().Set("Allow", "POST, GET")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	run := r
	if attrs := logging.TraceAttrs(r.ProjectID, req); len(attrs) > 0 {
		c := *r
		c.Logger = r.log(req.Context()).With(attrs...)
		run = &c
	}
	sum, err := run.Run(req.Context())
	w.Header().Set("Content-Type", "application/json")
	if err != nil {
		run.log(req.Context()).ErrorContext(req.Context(), "renew run failed", logging.KeyEvent, logging.EventRenewFailure,
			logging.KeyStep, "run", logging.KeyError, err.Error())
		w.WriteHeader(http.StatusInternalServerError)
		_ = json.NewEncoder(w).Encode(map[string]string{"error": "renewal run failed"})
		return
	}
	_ = json.NewEncoder(w).Encode(sum)
}

var (
	once    sync.Once
	handler http.Handler
)

// Handle is the RenewChannels entry point. The Renewer is built on the first
// request (no work in init); broken config answers 503 and logs CRITICAL.
func Handle(w http.ResponseWriter, r *http.Request) {
	once.Do(func() {
		logger := logging.Default()
		cfg, err := config.Load[config.RenewChannels](context.Background(), nil)
		var rn *Renewer
		if err == nil {
			rn, _, err = New(context.Background(), cfg, logger)
		}
		if err != nil {
			logger.Log(context.Background(), logging.LevelCritical, fmt.Sprintf("RenewChannels cannot start: %v", err))
			handler = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				http.Error(w, "misconfigured", http.StatusServiceUnavailable)
			})
			return
		}
		handler = rn
	})
	handler.ServeHTTP(w, r)
}
