package messages

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

const goodCred = "cred-0b8c0f9e-4a47-4e12-9bfd-0800200c9a66"

// ctl is a version 1 message with a request id and an issue time: body is
// the rest of the object.
func ctl(body string) string {
	return `{"version":1,"requestId":"r-1","issuedAt":"2026-12-03T10:00:00Z",` + body + `}`
}

// ControlAccepted and ControlRefused are exported for schema_test.go, which
// checks schemas/control.v1.json against the same messages.
var ControlAccepted = []string{
	ctl(`"action":"enroll","subject":"ann@corp.example"`),
	ctl(`"action":"enroll","subject":"ann@corp.example","filters":{"minAccessRole":"writer","primaryOnly":true,"include":["*@corp.example"],"exclude":["*#holiday@group.v.calendar.google.com"]},"deleteMirrorOnRemove":true`),
	ctl(`"action":"enroll","credentialId":"` + goodCred + `","sealedRefreshToken":"sealed:v1:k1:AAAA:BBBB","email":"bob@gmail.com","externalId":"user-42"`),
	ctl(`"action":"unenroll","subject":"ann@corp.example","deleteMirror":true`),
	ctl(`"action":"disconnect","credentialId":"` + goodCred + `","deleteMirror":true`),
	ctl(`"action":"disconnect","subject":"ann@corp.example"`),
	ctl(`"action":"resync","credentialId":"` + goodCred + `","full":true`),
	// Printable Unicode and spaces in the ids, 128 characters, an offset and
	// nanoseconds in the time.
	`{"version":1,"action":"enroll","subject":"a@b.c","requestId":"` + strings.Repeat("é", 128) + `","externalId":"Zoë Müller #42","issuedAt":"2026-12-03T11:00:00.123456789+01:00"}`,
	// An escaped key is the same key.
	`{"version":1,"\u0061ction":"resync","subject":"a@b.c","requestId":"r","issuedAt":"2026-12-03T10:00:00Z"}`,
}

// ControlRefused: schemaBlind marks what JSON Schema cannot express (the
// schema accepts it; only ParseControl refuses it).
var ControlRefused = []struct {
	Name, Data, Reason string
	SchemaBlind        bool
}{
	{"not JSON", `enroll ann`, ReasonNotJSON, true},
	{"two values", ctl(`"action":"enroll","subject":"a@b.c"`) + ` {}`, ReasonNotJSON, true},
	{"no version", `{"requestId":"r","issuedAt":"2026-12-03T10:00:00Z","action":"enroll","subject":"a@b.c"}`, ReasonUnsupportedVersion, false},
	{"version 2", `{"version":2,"requestId":"r","issuedAt":"2026-12-03T10:00:00Z","action":"enroll","subject":"a@b.c"}`, ReasonUnsupportedVersion, false},
	{"misspelt option", ctl(`"action":"unenroll","subject":"a@b.c","deleteMirrors":true`), ReasonUnknownField, false},
	{"unknown action", ctl(`"action":"delete","subject":"a@b.c"`), ReasonUnknownAction, false},
	{"no identity", ctl(`"action":"enroll"`), ReasonNoIdentity, false},
	{"two identities", ctl(`"action":"enroll","subject":"a@b.c","credentialId":"` + goodCred + `"`), ReasonTwoIdentities, false},
	{"subject not an email", ctl(`"action":"enroll","subject":"ann"`), ReasonBadSubject, false},
	{"subject with a name", ctl(`"action":"enroll","subject":"Ann <a@b.c>"`), ReasonBadSubject, false},
	// A Kelvin sign lower-cases to "k": the ASCII twin's identity.
	{"subject with a Kelvin sign", ctl(`"action":"enroll","subject":"\u212Aate@corp.test"`), ReasonBadSubject, false},
	{"subject in fullwidth letters", ctl(`"action":"enroll","subject":"ａnn@corp.test"`), ReasonBadSubject, false},
	{"subject with a non-ASCII domain", ctl(`"action":"enroll","subject":"ann@corp.tést"`), ReasonBadSubject, false},
	{"email with a Kelvin sign", ctl(`"action":"enroll","credentialId":"` + goodCred + `","email":"\u212Aate@corp.test"`), ReasonBadOption, false},
	{"credential id", ctl(`"action":"enroll","credentialId":"../x"`), ReasonBadCredentialID, false},
	{"sealed box form", ctl(`"action":"enroll","credentialId":"` + goodCred + `","sealedRefreshToken":"1//refresh-token-in-clear"`), ReasonBadSealedToken, false},
	{"sealed box on unenroll", ctl(`"action":"unenroll","credentialId":"` + goodCred + `","sealedRefreshToken":"sealed:v1:k:A:B"`), ReasonBadOption, false},
	{"sealed box with subject", ctl(`"action":"enroll","subject":"a@b.c","sealedRefreshToken":"sealed:v1:k:A:B"`), ReasonBadOption, false},
	{"deleteMirror on enroll", ctl(`"action":"enroll","subject":"a@b.c","deleteMirror":true`), ReasonBadOption, false},
	{"full on enroll", ctl(`"action":"enroll","subject":"a@b.c","full":true`), ReasonBadOption, false},
	{"filters on resync", ctl(`"action":"resync","subject":"a@b.c","filters":{}`), ReasonBadOption, false},
	{"role", ctl(`"action":"enroll","subject":"a@b.c","filters":{"minAccessRole":"admin"}`), ReasonBadFilter, false},
	{"pattern", ctl(`"action":"enroll","subject":"a@b.c","filters":{"include":["[a-"]}`), ReasonBadFilter, true},
	{"empty pattern", ctl(`"action":"enroll","subject":"a@b.c","filters":{"exclude":[""]}`), ReasonBadFilter, false},
	{"wrong type", `{"version":"1","requestId":"r","issuedAt":"2026-12-03T10:00:00Z","action":"enroll","subject":"a@b.c"}`, ReasonNotJSON, false},

	{"no request id", `{"version":1,"issuedAt":"2026-12-03T10:00:00Z","action":"enroll","subject":"a@b.c"}`, ReasonBadRequestID, false},
	{"empty request id", `{"version":1,"requestId":"","issuedAt":"2026-12-03T10:00:00Z","action":"enroll","subject":"a@b.c"}`, ReasonBadRequestID, false},
	{"request id with a newline", `{"version":1,"requestId":"a\nb","issuedAt":"2026-12-03T10:00:00Z","action":"enroll","subject":"a@b.c"}`, ReasonBadRequestID, false},
	{"request id with a bidi override", `{"version":1,"requestId":"a\u202eb","issuedAt":"2026-12-03T10:00:00Z","action":"enroll","subject":"a@b.c"}`, ReasonBadRequestID, false},
	{"request id of 129 characters", `{"version":1,"requestId":"` + strings.Repeat("r", 129) + `","issuedAt":"2026-12-03T10:00:00Z","action":"enroll","subject":"a@b.c"}`, ReasonBadRequestID, false},
	{"no issuedAt", `{"version":1,"requestId":"r","action":"enroll","subject":"a@b.c"}`, ReasonBadIssuedAt, false},
	{"null issuedAt", `{"version":1,"requestId":"r","issuedAt":null,"action":"enroll","subject":"a@b.c"}`, ReasonBadIssuedAt, false},
	{"issuedAt a word", `{"version":1,"requestId":"r","issuedAt":"yesterday","action":"enroll","subject":"a@b.c"}`, ReasonBadIssuedAt, false},
	{"issuedAt a number", `{"version":1,"requestId":"r","issuedAt":1764756000,"action":"enroll","subject":"a@b.c"}`, ReasonBadIssuedAt, false},
	{"issuedAt without an offset", `{"version":1,"requestId":"r","issuedAt":"2026-12-03T10:00:00","action":"enroll","subject":"a@b.c"}`, ReasonBadIssuedAt, false},
	{"issuedAt with a lower-case t", `{"version":1,"requestId":"r","issuedAt":"2026-12-03t10:00:00z","action":"enroll","subject":"a@b.c"}`, ReasonBadIssuedAt, false},
	{"issuedAt a leap second", `{"version":1,"requestId":"r","issuedAt":"2026-12-31T23:59:60Z","action":"enroll","subject":"a@b.c"}`, ReasonBadIssuedAt, false},
	{"issuedAt with an offset of 24 hours", `{"version":1,"requestId":"r","issuedAt":"2026-12-03T10:00:00+24:00","action":"enroll","subject":"a@b.c"}`, ReasonBadIssuedAt, false},
	{"issuedAt zero", `{"version":1,"requestId":"r","issuedAt":"0001-01-01T00:00:00Z","action":"enroll","subject":"a@b.c"}`, ReasonBadIssuedAt, true},
	{"externalId on unenroll", ctl(`"action":"unenroll","subject":"a@b.c","externalId":"u1"`), ReasonBadOption, false},
	{"full on disconnect", ctl(`"action":"disconnect","subject":"a@b.c","full":true`), ReasonBadOption, false},
	{"a sealed box on disconnect", ctl(`"action":"disconnect","credentialId":"` + goodCred + `","sealedRefreshToken":"sealed:v1:k:A:B"`), ReasonBadOption, false},
	{"externalId with a control character", ctl(`"action":"enroll","subject":"a@b.c","externalId":"u\u001b[31m"`), ReasonBadExternalID, false},
	{"externalId of 129 characters", ctl(`"action":"enroll","subject":"a@b.c","externalId":"` + strings.Repeat("u", 129) + `"`), ReasonBadExternalID, false},
	{"over 64 KiB", ctl(`"action":"enroll","subject":"a@b.c"`) + strings.Repeat(" ", MaxControlBytes), ReasonTooLarge, true},
	// encoding/json keeps the last of two keys: a resync that unenrolls.
	{"a key twice", ctl(`"action":"resync","subject":"a@b.c","action":"unenroll"`), ReasonDuplicateKey, true},
	{"a key twice, once escaped", ctl(`"action":"resync","subject":"a@b.c","\u0061ction":"unenroll"`), ReasonDuplicateKey, true},
	{"a filter key twice", ctl(`"action":"enroll","subject":"a@b.c","filters":{"include":["a*"],"include":["*"]}`), ReasonDuplicateKey, true},
	// encoding/json takes a key that matches a field when case is folded.
	{"Action", `{"version":1,"requestId":"r","issuedAt":"2026-12-03T10:00:00Z","Action":"enroll","subject":"a@b.c"}`, ReasonKeyCase, false},
	{"ACTION", `{"version":1,"requestId":"r","issuedAt":"2026-12-03T10:00:00Z","ACTION":"enroll","subject":"a@b.c"}`, ReasonKeyCase, false},
	{"deleteMIRROR", ctl(`"action":"unenroll","subject":"a@b.c","deleteMIRROR":true`), ReasonKeyCase, false},
	{"a long s for an s", ctl(`"action":"enroll","\u017Fubject":"a@b.c"`), ReasonKeyCase, false},
	{"a Kelvin sign for a k", ctl(`"action":"enroll","credentialId":"` + goodCred + `","sealedRefreshTo\u212Aen":"sealed:v1:k:A:B"`), ReasonKeyCase, false},
	{"a filter key in another case", ctl(`"action":"enroll","subject":"a@b.c","filters":{"PrimaryOnly":true}`), ReasonKeyCase, false},
}

func TestParseControlAccepts(t *testing.T) {
	for _, data := range ControlAccepted {
		c, err := ParseControl([]byte(data))
		if err != nil {
			t.Errorf("%s: %v", data, err)
			continue
		}
		if c.Version != 1 || c.Action == "" || c.RequestID == "" || c.IssuedAt.IsZero() {
			t.Errorf("%s: %+v", data, c)
		}
	}
	c, err := ParseControl([]byte(ControlAccepted[2]))
	if err != nil || c.ExternalID != "user-42" || !c.IssuedAt.Equal(time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)) {
		t.Errorf("externalId %q, issuedAt %v: %v", c.ExternalID, c.IssuedAt, err)
	}
}

func TestParseControlRefuses(t *testing.T) {
	for _, tc := range ControlRefused {
		_, err := ParseControl([]byte(tc.Data))
		if !errors.Is(err, ErrInvalid) || InvalidReason(err) != tc.Reason {
			t.Errorf("%s: got %v, want reason %s", tc.Name, err, tc.Reason)
		}
	}
}

// The largest legitimate message (a sealed token and 2×50 patterns at their
// limits, every string at its longest) is well under MaxControlBytes.
func TestLargestControlFits(t *testing.T) {
	pattern := strings.Repeat("p", maxPatternLen-1) + "*"
	patterns := make([]string, maxPatterns)
	for i := range patterns {
		patterns[i] = pattern
	}
	c := Control{Version: ControlVersion, Action: ActionEnroll, RequestID: strings.Repeat("r", maxIDLen),
		IssuedAt: time.Now(), CredentialID: goodCred, Email: strings.Repeat("b", 64) + "@" + strings.Repeat("g", 250) + ".com",
		SealedRefreshToken: "sealed:v1:k:e:" + strings.Repeat("A", maxSealedLen-len("sealed:v1:k:e:")),
		ExternalID:         strings.Repeat("x", maxIDLen), Filters: &Filters{MinAccessRole: "freeBusyReader", PrimaryOnly: true, Include: patterns, Exclude: patterns},
		DeleteMirrorOnRemove: true}
	data, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ParseControl(data); err != nil {
		t.Fatalf("the largest message (%d bytes): %v", len(data), err)
	}
	if len(data) > MaxControlBytes*6/10 {
		t.Errorf("the largest message is %d bytes, too close to the limit of %d", len(data), MaxControlBytes)
	}
	t.Logf("the largest legitimate control message: %d bytes (limit %d)", len(data), MaxControlBytes)
}

// FuzzParseControl: any input is accepted or refused with a known reason,
// never a panic, and what is accepted has exactly one identity and options
// of its action only.
func FuzzParseControl(f *testing.F) {
	for _, data := range ControlAccepted {
		f.Add(data)
	}
	for _, tc := range ControlRefused {
		f.Add(tc.Data)
	}
	known := map[string]bool{}
	for _, tc := range ControlRefused {
		known[tc.Reason] = true
	}
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
		if (c.DeleteMirror && c.Action != ActionUnenroll && c.Action != ActionDisconnect) || (c.Full && c.Action != ActionResync) || (c.Filters != nil && c.Action != ActionEnroll) {
			t.Fatalf("accepted %q with options of another action", data)
		}
		// What was accepted survives a round trip.
		again, err := json.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ParseControl(again); err != nil {
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
