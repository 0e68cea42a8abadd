package store

import "testing"

// The grant's one key, and the identity keys derived from it: those name
// stored documents (identities/{key}, calendars' enrolledBy, channel
// records), so they must not change.
func TestGrantKeys(t *testing.T) {
	cases := []struct {
		g        Grant
		key, doc string
	}{
		{Grant{AuthMode: AuthDelegation, Subject: "Ann@Corp.test"}, "subject:ann@corp.test", "itcdq9i3b0mb72s9mqshqt2p2oo"},
		{Grant{AuthMode: AuthOAuth, CredentialID: "cred-1", Subject: "ignored"}, "credential:cred-1", "iq1imje471f4iotg87b30f51ljs"},
		{Grant{AuthMode: AuthADC}, "adc", ""},
		{Grant{}, "adc", ""},
	}
	for _, c := range cases {
		if got := c.g.Key(); got != c.key {
			t.Errorf("%+v: Key %q, want %q", c.g, got, c.key)
		}
		if got := c.g.IdentityKey(); c.doc != "" && got != c.doc {
			t.Errorf("%+v: IdentityKey %q, want %q (the stored documents' key)", c.g, got, c.doc)
		}
	}
	cal := Calendar{CalendarID: "x", AuthMode: AuthOAuth, Subject: "u@x", CredentialID: "cred-1"}
	id := Identity{AuthMode: AuthOAuth, Subject: "u@x", CredentialID: "cred-1"}
	if cal.Grant() != id.Grant() || cal.Grant().Key() != "credential:cred-1" {
		t.Errorf("calendar %+v and identity %+v of one grant differ", cal.Grant(), id.Grant())
	}
}
