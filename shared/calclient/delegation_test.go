package calclient

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/calsync/calsync/shared/store"
)

// Delegation without DELEGATION_SERVICE_ACCOUNT: a JWT from the ADC service
// account key with sub = the calendar's subject, exchanged at the key's
// token_uri (a local server here).
func TestDelegationJWTFromServiceAccountKey(t *testing.T) {
	var gotSub, gotScope string
	tokenSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.ParseForm()
		parts := strings.Split(r.Form.Get("assertion"), ".")
		if len(parts) == 3 {
			raw, _ := base64.RawURLEncoding.DecodeString(parts[1])
			var claims map[string]any
			json.Unmarshal(raw, &claims)
			gotSub, _ = claims["sub"].(string)
			gotScope, _ = claims["scope"].(string)
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"access_token":"ya29.delegated","token_type":"Bearer","expires_in":3600}`))
	}))
	defer tokenSrv.Close()
	key, _ := rsa.GenerateKey(rand.Reader, 2048)
	der, _ := x509.MarshalPKCS8PrivateKey(key)
	sa, _ := json.Marshal(map[string]string{
		"type": "service_account", "client_email": "renew@p.iam.gserviceaccount.com", "private_key_id": "kid",
		"private_key": string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})), "token_uri": tokenSrv.URL,
	})
	dir := t.TempDir()
	saFile := filepath.Join(dir, "sa.json")
	os.WriteFile(saFile, sa, 0o600)
	t.Setenv("GOOGLE_APPLICATION_CREDENTIALS", saFile)

	f := New(Options{})
	ts, err := f.tokenSource(context.Background(), store.Calendar{AuthMode: store.AuthDelegation, Subject: "boss@corp.test"})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := ts.token(false, "")
	if err != nil || tok.AccessToken != "ya29.delegated" {
		t.Fatalf("token %v %v", tok, err)
	}
	if gotSub != "boss@corp.test" || gotScope != Scope {
		t.Errorf("assertion sub %q scope %q", gotSub, gotScope)
	}

	// ADC that is not a service-account key would silently ignore the
	// subject: refused with a clear error.
	user, _ := json.Marshal(map[string]string{"type": "authorized_user", "client_id": "c", "client_secret": "s", "refresh_token": "r"})
	userFile := filepath.Join(dir, "user.json")
	os.WriteFile(userFile, user, 0o600)
	t.Setenv("GOOGLE_APPLICATION_CREDENTIALS", userFile)
	if _, err := f.tokenSource(context.Background(), store.Calendar{AuthMode: store.AuthDelegation, Subject: "boss@corp.test"}); err == nil || !strings.Contains(err.Error(), "DELEGATION_SERVICE_ACCOUNT") {
		t.Errorf("user ADC for delegation: %v", err)
	}
}
