package config

import (
	"context"
	"encoding/base64"
	"strings"
	"testing"

	"github.com/sethvargo/go-envconfig"
)

// The Connect function is public: it gets the public key and the tenants'
// link keys, never a key that opens users' tokens.
func TestConnectConfig(t *testing.T) {
	key := base64.StdEncoding.EncodeToString([]byte(strings.Repeat("k", 32)))
	env := map[string]string{"PROJECT_ID": "p", "CONNECT_URL": "https://connect.example.test",
		"CONNECT_LINK_KEYS": `{"acme":"l1:` + key + `"}`, "CREDENTIAL_PUBLIC_KEY": "pubkey:v1:k1:AAAA",
		"OAUTH_CLIENT_ID": "web", "OAUTH_CLIENT_SECRET": "s"}
	cfg, err := Load[Connect](context.Background(), envconfig.MapLookuper(env))
	if err != nil {
		t.Fatal(err)
	}
	if keys, _ := cfg.LinkKeys(); len(keys["acme"]["l1"]) != 32 {
		t.Fatalf("link keys: %v", keys)
	}
	bad := map[string]string{}
	for k, v := range env {
		bad[k] = v
	}
	bad["CONNECT_URL"] = "http://connect.example.test"
	bad["CONNECT_LINK_KEYS"] = `{"acme":"l1:c2hvcnQ="}`
	bad["CREDENTIAL_PRIVATE_KEYS"] = "h1:" + key
	bad["OAUTH_CLIENT_SECRET"] = ""
	_, err = Load[Connect](context.Background(), envconfig.MapLookuper(bad))
	for _, want := range []string{"CONNECT_URL", "CONNECT_LINK_KEYS[acme]", "must not be given to Connect", "OAUTH_CLIENT_SECRET"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not name %s", err, want)
		}
	}
	if strings.Contains(err.Error(), key) {
		t.Error("the error echoes key material")
	}
}
