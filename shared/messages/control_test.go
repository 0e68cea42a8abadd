package messages

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

const goodCred = "cred-0b8c0f9e-4a47-4e12-9bfd-0800200c9a66"

func TestParseControlAccepts(t *testing.T) {
	for _, data := range []string{
		`{"version":1,"action":"enroll","subject":"ann@corp.example"}`,
		`{"version":1,"action":"enroll","subject":"ann@corp.example","filters":{"minAccessRole":"writer","primaryOnly":true,"include":["*@corp.example"],"exclude":["*#holiday@group.v.calendar.google.com"]},"deleteMirrorOnRemove":true,"requestId":"r-1"}`,
		`{"version":1,"action":"enroll","credentialId":"` + goodCred + `","sealedRefreshToken":"sealed:v1:k1:AAAA:BBBB","email":"bob@gmail.com"}`,
		`{"version":1,"action":"unenroll","subject":"ann@corp.example","deleteMirror":true}`,
		`{"version":1,"action":"resync","credentialId":"` + goodCred + `","full":true}`,
	} {
		c, err := ParseControl([]byte(data))
		if err != nil {
			t.Errorf("%s: %v", data, err)
			continue
		}
		if c.Version != 1 || c.Action == "" {
			t.Errorf("%s: %+v", data, c)
		}
	}
}

func TestParseControlRefuses(t *testing.T) {
	for _, tc := range []struct{ name, data, reason string }{
		{"not JSON", `enroll ann`, ReasonNotJSON},
		{"two values", `{"version":1,"action":"enroll","subject":"a@b.c"} {}`, ReasonNotJSON},
		{"no version", `{"action":"enroll","subject":"a@b.c"}`, ReasonUnsupportedVersion},
		{"version 2", `{"version":2,"action":"enroll","subject":"a@b.c"}`, ReasonUnsupportedVersion},
		{"misspelt option", `{"version":1,"action":"unenroll","subject":"a@b.c","deleteMirrors":true}`, ReasonUnknownField},
		{"unknown action", `{"version":1,"action":"delete","subject":"a@b.c"}`, ReasonUnknownAction},
		{"no identity", `{"version":1,"action":"enroll"}`, ReasonNoIdentity},
		{"two identities", `{"version":1,"action":"enroll","subject":"a@b.c","credentialId":"` + goodCred + `"}`, ReasonTwoIdentities},
		{"subject not an email", `{"version":1,"action":"enroll","subject":"ann"}`, ReasonBadSubject},
		{"subject with a name", `{"version":1,"action":"enroll","subject":"Ann <a@b.c>"}`, ReasonBadSubject},
		// A Kelvin sign lower-cases to "k": the ASCII twin's identity.
		{"subject with a Kelvin sign", `{"version":1,"action":"enroll","subject":"\u212Aate@corp.test"}`, ReasonBadSubject},
		{"subject in fullwidth letters", `{"version":1,"action":"enroll","subject":"ａnn@corp.test"}`, ReasonBadSubject},
		{"subject with a non-ASCII domain", `{"version":1,"action":"enroll","subject":"ann@corp.tést"}`, ReasonBadSubject},
		{"email with a Kelvin sign", `{"version":1,"action":"enroll","credentialId":"` + goodCred + `","email":"\u212Aate@corp.test"}`, ReasonBadOption},
		{"credential id", `{"version":1,"action":"enroll","credentialId":"../x"}`, ReasonBadCredentialID},
		{"sealed box form", `{"version":1,"action":"enroll","credentialId":"` + goodCred + `","sealedRefreshToken":"1//refresh-token-in-clear"}`, ReasonBadSealedToken},
		{"sealed box on unenroll", `{"version":1,"action":"unenroll","credentialId":"` + goodCred + `","sealedRefreshToken":"sealed:v1:k:A:B"}`, ReasonBadOption},
		{"sealed box with subject", `{"version":1,"action":"enroll","subject":"a@b.c","sealedRefreshToken":"sealed:v1:k:A:B"}`, ReasonBadOption},
		{"deleteMirror on enroll", `{"version":1,"action":"enroll","subject":"a@b.c","deleteMirror":true}`, ReasonBadOption},
		{"full on enroll", `{"version":1,"action":"enroll","subject":"a@b.c","full":true}`, ReasonBadOption},
		{"filters on resync", `{"version":1,"action":"resync","subject":"a@b.c","filters":{}}`, ReasonBadOption},
		{"role", `{"version":1,"action":"enroll","subject":"a@b.c","filters":{"minAccessRole":"admin"}}`, ReasonBadFilter},
		{"pattern", `{"version":1,"action":"enroll","subject":"a@b.c","filters":{"include":["[a-"]}}`, ReasonBadFilter},
		{"empty pattern", `{"version":1,"action":"enroll","subject":"a@b.c","filters":{"exclude":[""]}}`, ReasonBadFilter},
		{"request id", `{"version":1,"action":"enroll","subject":"a@b.c","requestId":"a\nb"}`, ReasonBadRequestID},
		{"wrong type", `{"version":"1","action":"enroll","subject":"a@b.c"}`, ReasonNotJSON},
	} {
		_, err := ParseControl([]byte(tc.data))
		if !errors.Is(err, ErrInvalid) || InvalidReason(err) != tc.reason {
			t.Errorf("%s: got %v, want reason %s", tc.name, err, tc.reason)
		}
	}
}

// FuzzParseControl: any input is accepted or refused with a known reason,
// never a panic, and what is accepted has exactly one identity and options
// of its action only.
func FuzzParseControl(f *testing.F) {
	f.Add(`{"version":1,"action":"enroll","subject":"ann@corp.example","filters":{"include":["*"]}}`)
	f.Add(`{"version":1,"action":"unenroll","credentialId":"` + goodCred + `","deleteMirror":true}`)
	f.Add(`{"version":1,"action":"resync","subject":"a@b.c","full":true,"x":1}`)
	known := map[string]bool{ReasonNotJSON: true, ReasonUnsupportedVersion: true, ReasonUnknownAction: true, ReasonUnknownField: true,
		ReasonNoIdentity: true, ReasonTwoIdentities: true, ReasonBadSubject: true, ReasonBadCredentialID: true, ReasonBadSealedToken: true,
		ReasonBadFilter: true, ReasonBadOption: true, ReasonBadRequestID: true}
	f.Fuzz(func(t *testing.T, data string) {
		c, err := ParseControl([]byte(data))
		if err != nil {
			if !known[InvalidReason(err)] {
				t.Fatalf("unknown reason for %q: %v", data, err)
			}
			return
		}
		if (c.Subject == "") == (c.CredentialID == "") {
			t.Fatalf("accepted %q with identity %q / %q", data, c.Subject, c.CredentialID)
		}
		if (c.DeleteMirror && c.Action != ActionUnenroll) || (c.Full && c.Action != ActionResync) || (c.Filters != nil && c.Action != ActionEnroll) {
			t.Fatalf("accepted %q with options of another action", data)
		}
		// What was accepted survives a round trip.
		again, err := json.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ParseControl(again); err != nil && !strings.Contains(err.Error(), "unknown field") {
			t.Fatalf("round trip of %q: %v", data, err)
		}
	})
}

func TestListNotification(t *testing.T) {
	const ik = "i0123456789abcdefghijklmnop"
	data, attrs, err := ListRequest(ik, StateReconcile, time.Now())
	if err != nil || attrs[AttrResource] != ResourceCalendarList || attrs[AttrIdentityKey] != ik {
		t.Fatalf("ListRequest: %s %v %v", data, attrs, err)
	}
	n, err := ParseNotification(data)
	if err != nil || n.Resource != ResourceCalendarList || n.IdentityKey != ik || n.CalendarKey != "" {
		t.Fatalf("parse: %+v %v", n, err)
	}
	for _, tc := range []struct{ data, reason string }{
		{`{"resource":"calendarList","identityKey":"` + goodKey + `","resourceState":"exists"}`, ReasonBadIdentityKey},
		{`{"resource":"calendarList","identityKey":"` + ik + `","resourceState":"full_resync"}`, ReasonUnknownResourceState},
		{`{"resource":"acl","identityKey":"` + ik + `","resourceState":"exists"}`, ReasonUnknownResource},
	} {
		if _, err := ParseNotification([]byte(tc.data)); InvalidReason(err) != tc.reason {
			t.Errorf("%s: %v, want %s", tc.data, err, tc.reason)
		}
	}
}
