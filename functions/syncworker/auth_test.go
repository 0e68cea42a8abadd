package syncworker

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/firestore"
	"golang.org/x/oauth2"

	"github.com/calsync/calsync/shared/calclient"
	"github.com/calsync/calsync/shared/config"
	"github.com/calsync/calsync/shared/credentials"
	"github.com/calsync/calsync/shared/lifecycle"
	"github.com/calsync/calsync/shared/logging"
	"github.com/calsync/calsync/shared/messages"
	"github.com/calsync/calsync/shared/sealed"
	"github.com/calsync/calsync/shared/store"
	"github.com/calsync/calsync/shared/syncer"
	"github.com/calsync/calsync/shared/testing/calendaremu"
	"github.com/calsync/calsync/shared/testing/syncertest"
	"github.com/calsync/calsync/shared/testing/testenv"
	"github.com/calsync/calsync/shared/testing/testlog"
)

// The production wiring of a revoked grant: calclient refreshes the stored
// token, the emulator answers invalid_grant, lifecycle.Owner marks the
// credential and its calendars auth_revoked and logs exactly one ERROR line;
// the message is acknowledged, and a later one does not touch the API.
func TestRevokedGrantWithCalclientAndCredentials(t *testing.T) {
	testenv.Firestore(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	srv, base := calendaremu.Start(t, calendaremu.Options{})
	const alice = "alice@calsync.test"
	tok := srv.IssueToken(alice)
	fs, err := firestore.NewClient(ctx, testenv.ProjectID(t))
	if err != nil {
		t.Fatal(err)
	}
	defer fs.Close()
	priv, _, err := sealed.GenerateKey("h1")
	if err != nil {
		t.Fatal(err)
	}
	st := store.New(fs)
	creds, err := credentials.NewVault(config.Calendar{CredentialPrivateKeys: priv}, st)
	if err != nil {
		t.Fatal(err)
	}
	credID, err := creds.Put(ctx, alice, tok.RefreshToken)
	if err != nil {
		t.Fatal(err)
	}
	key, err := lifecycle.Register(ctx, st, store.Calendar{CalendarID: alice, AuthMode: store.AuthOAuth, CredentialID: credID})
	if err != nil {
		t.Fatal(err)
	}
	factory := calclient.New(calclient.Options{Endpoint: base, Tokens: creds,
		OAuth: &oauth2.Config{ClientID: "c", ClientSecret: "s", Endpoint: oauth2.Endpoint{TokenURL: base + "/token", AuthStyle: oauth2.AuthStyleInParams}}})
	var logs testlog.Buffer
	logger := logging.New(&logs, slog.LevelInfo)
	w := &Worker{Logger: logger, Subscriptions: []string{testSubscription}, Syncer: syncer.New(syncer.Options{
		Store: st, Services: factory, Lifecycle: &lifecycle.Owner{Store: st, Clients: factory, Logger: logger}, Logger: logger,
		Publisher:   &syncertest.Recorder{},
		RetryBudget: 2 * time.Second,
	})}
	ctx = logging.WithLogger(ctx, logger)
	n := messages.Notification{CalendarKey: key, ResourceState: messages.StateSync, ReceivedAt: time.Now().UTC()}
	if err := w.HandleNotification(ctx, n); err != nil {
		t.Fatal(err)
	}
	if err := srv.RevokeGrant(alice); err != nil {
		t.Fatal(err)
	}
	n.ResourceState, n.ReceivedAt = messages.StateExists, time.Now().UTC()
	if err := w.HandleNotification(ctx, n); err != nil {
		t.Fatalf("revoked grant must be acknowledged: %v", err)
	}
	c, _ := st.GetCalendar(ctx, key)
	if c.Status != store.StatusAuthRevoked || c.LeaseOwner != "" {
		t.Fatalf("calendar after revocation: %+v", c)
	}
	cr, err := st.GetCredential(ctx, credID)
	if err != nil || cr.Status != store.StatusAuthRevoked {
		t.Fatalf("credential after revocation: %+v %v", cr, err)
	}
	lists := srv.Stats().Requests["events.list"]
	n.ReceivedAt = time.Now().UTC()
	if err := w.HandleNotification(ctx, n); err != nil {
		t.Fatal(err)
	}
	if srv.Stats().Requests["events.list"] != lists {
		t.Fatal("a revoked calendar was listed again")
	}
	var errorLines []string
	for _, line := range strings.Split(logs.String(), "\n") {
		if strings.Contains(line, `"severity":"ERROR"`) {
			errorLines = append(errorLines, line)
		}
	}
	if len(errorLines) != 1 || !strings.Contains(errorLines[0], `"event":"auth_revoked"`) ||
		!strings.Contains(errorLines[0], `"credentialId":"`+credID+`"`) || !strings.Contains(errorLines[0], `"calendarKey":"`+key+`"`) {
		t.Fatalf("want one auth_revoked ERROR line with calendarKey and credentialId, got:\n%s", strings.Join(errorLines, "\n"))
	}
}
