package messages

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/mail"
	"path"
	"reflect"
	"regexp"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Control is one message on the control topic: what a product backend asks
// of calsync for one of its users. Version 1:
//
//	{"version": 1, "action": "enroll", "requestId": "r-1", "issuedAt": "2026-12-03T10:00:00Z",
//	 "subject": "ann@corp.example", "externalId": "user-42",
//	 "filters": {"minAccessRole": "reader", "exclude": ["*#holiday@group.v.calendar.google.com"]}}
//	{"version": 1, "action": "enroll", "requestId": "r-2", "issuedAt": "2026-12-03T10:00:00Z",
//	 "credentialId": "cred-…", "sealedRefreshToken": "sealed:v1:…", "email": "bob@gmail.com"}
//	{"version": 1, "action": "unenroll", "requestId": "r-3", "issuedAt": "2026-12-03T10:00:00Z",
//	 "subject": "ann@corp.example", "deleteMirror": true}
//	{"version": 1, "action": "resync", "requestId": "r-4", "issuedAt": "2026-12-03T10:00:00Z",
//	 "credentialId": "cred-…", "full": true}
//
// The identity is either a Workspace user read by domain-wide delegation
// (subject) or a user's OAuth grant (credentialId: an id from
// credentials.NewID; to enroll a new one, its refresh token sealed to the
// deployment's public key with credentials.AAD(credentialId) as context).
// Unknown fields are refused, so a misspelt option never goes unnoticed;
// so are a key given twice and a key that names a field only when case is
// folded (encoding/json would take the last, or the folded one, silently).
// Its JSON Schema is schemas/control.v1.json at the repository root.
type Control struct {
	Version int    `json:"version"`
	Action  string `json:"action"`
	// RequestID is the product's own id for the request (required, 1 to 128
	// printable characters): logged, and what a redelivery is known by.
	RequestID string `json:"requestId"`
	// IssuedAt is when the product issued the request (required, RFC 3339).
	// The parser checks its form only; how old it may be is the acting
	// side's rule (shared/enroll).
	IssuedAt time.Time `json:"issuedAt"`

	Subject            string `json:"subject,omitempty"`
	CredentialID       string `json:"credentialId,omitempty"`
	SealedRefreshToken string `json:"sealedRefreshToken,omitempty"`
	Email              string `json:"email,omitempty"` // the grant's user, for operators

	// enroll
	// ExternalID is the product's own id for the user (1 to 128 printable
	// characters), kept with the identity.
	ExternalID string   `json:"externalId,omitempty"`
	Filters    *Filters `json:"filters,omitempty"`
	// DeleteMirrorOnRemove: when a calendar leaves the identity's list, its
	// mirror is deleted (default: kept, status unwatched).
	DeleteMirrorOnRemove bool `json:"deleteMirrorOnRemove,omitempty"`
	// unenroll
	DeleteMirror bool `json:"deleteMirror,omitempty"`
	// resync
	Full bool `json:"full,omitempty"`
}

// Filters choose which calendars of an identity's list are enrolled. One
// type for the control message and the identity document that stores it
// (store.Identity.Filters), so the two never drift apart.
type Filters struct {
	// MinAccessRole: freeBusyReader, reader (default), writer or owner.
	// Below reader Google gives free/busy only, no events to mirror.
	MinAccessRole string `json:"minAccessRole,omitempty" firestore:"minAccessRole,omitempty"`
	// PrimaryOnly enrolls the identity's primary calendar only.
	PrimaryOnly bool `json:"primaryOnly,omitempty" firestore:"primaryOnly,omitempty"`
	// Include (when not empty) and Exclude are shell patterns (path.Match)
	// over calendar ids: a calendar is enrolled if it matches an Include and
	// no Exclude.
	Include []string `json:"include,omitempty" firestore:"include,omitempty"`
	Exclude []string `json:"exclude,omitempty" firestore:"exclude,omitempty"`
}

// Control versions and actions.
const (
	ControlVersion = 1

	ActionEnroll   = "enroll"
	ActionUnenroll = "unenroll"
	ActionResync   = "resync"
	// ActionDisconnect is unenroll, and the user's OAuth grant revoked at
	// Google and its credential deleted (a Workspace user's delegation is
	// the admin's: only unenrolled).
	ActionDisconnect = "disconnect"
)

// Why a control message is invalid (the reason field of invalid_control
// lines, a metric label).
const (
	ReasonUnsupportedVersion = "unsupported_version"
	ReasonUnknownAction      = "unknown_action"
	ReasonUnknownField       = "unknown_field"
	ReasonNoIdentity         = "no_identity"
	ReasonTwoIdentities      = "two_identities"
	ReasonBadSubject         = "bad_subject"
	ReasonBadCredentialID    = "bad_credential_id"
	ReasonBadSealedToken     = "bad_sealed_token"
	ReasonBadFilter          = "bad_filter"
	ReasonBadOption          = "bad_option"
	ReasonBadRequestID       = "bad_request_id"
	ReasonBadIssuedAt        = "bad_issued_at"
	ReasonBadExternalID      = "bad_external_id"
	ReasonTooLarge           = "too_large"
	ReasonDuplicateKey       = "duplicate_key"
	ReasonKeyCase            = "key_case"
	// Found only when acting on it (the SyncWorker):
	ReasonUnknownIdentity   = "unknown_identity"   // unenroll or resync of an identity never enrolled
	ReasonSealedNotOpening  = "sealed_not_opening" // the box does not open with the deployment's keys and the credential id
	ReasonCredentialTaken   = "credential_taken"   // the credential id holds another grant
	ReasonNoCredential      = "no_credential"      // enroll of a credential id that is not stored, without a sealed token
	ReasonNotAuthorized     = "not_authorized"     // the identity's grant or delegation does not read its calendar list
	ReasonRevokedCredential = "revoked_credential" // enroll of a credential id whose grant was revoked
	ReasonScopesMissing     = "scopes_missing"     // the sealed grant lacks one of calsync's scopes (granular consent)
)

// credentialIDRE is credentials.NewID's form (messages cannot import it).
var credentialIDRE = regexp.MustCompile(`^cred-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

// Limits on what a control message may hold.
const (
	maxPatterns   = 50
	maxPatternLen = 256
	maxSealedLen  = 8192
	maxIDLen      = 128 // requestId, externalId: characters
	// MaxControlBytes: the largest control message read. The largest
	// legitimate one (a sealed token and 2×50 patterns at their limits) is
	// about 35 KB.
	MaxControlBytes = 64 << 10
)

// ParseControl decodes and checks a control message. Its errors are
// *InvalidError: redelivering the message cannot help.
func ParseControl(data []byte) (Control, error) {
	var c Control
	if len(data) > MaxControlBytes {
		return c, &InvalidError{Reason: ReasonTooLarge, Detail: fmt.Sprintf("%d bytes (at most %d)", len(data), MaxControlBytes)}
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		reason := ReasonNotJSON
		switch {
		case strings.Contains(err.Error(), "unknown field"):
			reason = ReasonUnknownField
		case errors.As(err, new(*time.ParseError)) || strings.HasPrefix(err.Error(), "Time.UnmarshalJSON"):
			reason = ReasonBadIssuedAt // time.Time, the one Unmarshaler in Control
		}
		return c, &InvalidError{Reason: reason, Detail: err.Error()}
	}
	if dec.More() {
		return c, &InvalidError{Reason: ReasonNotJSON, Detail: "more than one JSON value"}
	}
	if err := checkKeys(json.NewDecoder(bytes.NewReader(data)), controlKeys); err != nil {
		return c, err
	}
	invalid := func(reason, format string, a ...any) (Control, error) {
		return c, &InvalidError{Reason: reason, Detail: fmt.Sprintf(format, a...)}
	}
	if c.Version != ControlVersion {
		return invalid(ReasonUnsupportedVersion, "version %d (this deployment reads version %d)", c.Version, ControlVersion)
	}
	switch c.Action {
	case ActionEnroll, ActionUnenroll, ActionResync, ActionDisconnect:
	default:
		return invalid(ReasonUnknownAction, "action %q is not enroll, unenroll, resync or disconnect", c.Action)
	}
	if !printableID(c.RequestID) {
		return invalid(ReasonBadRequestID, "requestId: required, 1 to %d printable characters", maxIDLen)
	}
	if c.IssuedAt.IsZero() {
		return invalid(ReasonBadIssuedAt, "issuedAt: required, an RFC 3339 time")
	}
	if _, err := c.IssuedAt.MarshalText(); err != nil { // an offset of 24 hours parses, but cannot be written back
		return invalid(ReasonBadIssuedAt, "issuedAt: %v", err)
	}
	if c.ExternalID != "" {
		if c.Action != ActionEnroll {
			return invalid(ReasonBadOption, "externalId is for enroll only")
		}
		if !printableID(c.ExternalID) {
			return invalid(ReasonBadExternalID, "externalId: 1 to %d printable characters", maxIDLen)
		}
	}
	switch {
	case c.Subject == "" && c.CredentialID == "":
		return invalid(ReasonNoIdentity, "give subject (domain-wide delegation) or credentialId (an OAuth grant)")
	case c.Subject != "" && c.CredentialID != "":
		return invalid(ReasonTwoIdentities, "give subject or credentialId, not both")
	case c.Subject != "":
		if !validEmail(c.Subject) {
			return invalid(ReasonBadSubject, "subject %q is not an email address", c.Subject)
		}
		if c.SealedRefreshToken != "" || c.Email != "" {
			return invalid(ReasonBadOption, "sealedRefreshToken and email go with credentialId, not subject")
		}
	default:
		if !credentialIDRE.MatchString(c.CredentialID) {
			return invalid(ReasonBadCredentialID, "credentialId %q is not cred-UUID (credentials.NewID)", c.CredentialID)
		}
		if c.Email != "" && !validEmail(c.Email) {
			return invalid(ReasonBadOption, "email %q is not an email address", c.Email)
		}
	}
	if c.SealedRefreshToken != "" {
		if c.Action != ActionEnroll {
			return invalid(ReasonBadOption, "sealedRefreshToken is for enroll only")
		}
		if len(c.SealedRefreshToken) > maxSealedLen || !strings.HasPrefix(c.SealedRefreshToken, "sealed:v1:") ||
			strings.Count(c.SealedRefreshToken, ":") != 4 {
			return invalid(ReasonBadSealedToken, "sealedRefreshToken is not a sealed:v1:KEYID:ENC:CT box")
		}
	}
	if (c.Filters != nil || c.DeleteMirrorOnRemove) && c.Action != ActionEnroll {
		return invalid(ReasonBadOption, "filters and deleteMirrorOnRemove are for enroll only")
	}
	if c.DeleteMirror && c.Action != ActionUnenroll && c.Action != ActionDisconnect {
		return invalid(ReasonBadOption, "deleteMirror is for unenroll and disconnect only")
	}
	if c.Full && c.Action != ActionResync {
		return invalid(ReasonBadOption, "full is for resync only")
	}
	if c.Filters != nil {
		if err := c.Filters.Validate(); err != nil {
			return invalid(ReasonBadFilter, "%v", err)
		}
	}
	return c, nil
}

// printableID: 1 to maxIDLen characters, each a letter, mark, number,
// punctuation, symbol or ASCII space (unicode.IsPrint: no control,
// format or bidi characters that would garble a log line).
func printableID(s string) bool {
	n := utf8.RuneCountInString(s)
	return n >= 1 && n <= maxIDLen && !strings.ContainsFunc(s, func(r rune) bool { return !unicode.IsPrint(r) })
}

// keyTree is the exact JSON names of a struct's fields, each with the tree
// of its value (nil unless a struct, a pointer to one or a slice of them).
type keyTree map[string]keyTree

// controlKeys is derived from Control's tags, so a new field is known here
// the moment it is declared. (Embedded structs, whose fields encoding/json
// promotes, are not followed: Control and Filters have none.)
var controlKeys = keysOf(reflect.TypeFor[Control]())

func keysOf(t reflect.Type) keyTree {
	for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct || t == reflect.TypeFor[time.Time]() {
		return nil
	}
	tree := keyTree{}
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" || !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		tree[name] = keysOf(f.Type)
	}
	return tree
}

// checkKeys reads one JSON value from dec and refuses what encoding/json
// lets through silently: a key given twice in an object (it keeps the
// last) and a key that is a field's name only when case is folded ("Action",
// "deleteMIRROR", a Kelvin sign for a k: it takes them for the field).
// Unknown keys are DisallowUnknownFields' to refuse.
func checkKeys(dec *json.Decoder, tree keyTree) error {
	tok, err := dec.Token()
	if err != nil {
		return &InvalidError{Reason: ReasonNotJSON, Detail: err.Error()}
	}
	if tok != json.Delim('{') && tok != json.Delim('[') {
		return nil
	}
	seen := map[string]bool{}
	for dec.More() {
		sub := tree
		if tok == json.Delim('{') {
			k, err := dec.Token()
			if err != nil {
				return &InvalidError{Reason: ReasonNotJSON, Detail: err.Error()}
			}
			key, _ := k.(string)
			if seen[key] {
				return &InvalidError{Reason: ReasonDuplicateKey, Detail: fmt.Sprintf("key %q given twice", key)}
			}
			seen[key] = true
			var exact bool
			if sub, exact = tree[key]; !exact {
				for name := range tree {
					if strings.EqualFold(name, key) {
						return &InvalidError{Reason: ReasonKeyCase, Detail: fmt.Sprintf("key %q: the field is %q", key, name)}
					}
				}
			}
		}
		if err := checkKeys(dec, sub); err != nil {
			return err
		}
	}
	if _, err := dec.Token(); err != nil { // the closing delimiter
		return &InvalidError{Reason: ReasonNotJSON, Detail: err.Error()}
	}
	return nil
}

// Validate checks a filter: a known role, at most 50 well-formed patterns
// of at most 256 bytes each.
func (f Filters) Validate() error {
	var errs []error
	switch f.MinAccessRole {
	case "", "freeBusyReader", "reader", "writer", "owner":
	default:
		errs = append(errs, fmt.Errorf("minAccessRole %q is not freeBusyReader, reader, writer or owner", f.MinAccessRole))
	}
	for name, list := range map[string][]string{"include": f.Include, "exclude": f.Exclude} {
		if len(list) > maxPatterns {
			errs = append(errs, fmt.Errorf("%s: at most %d patterns", name, maxPatterns))
		}
		for _, p := range list {
			if p == "" || len(p) > maxPatternLen {
				errs = append(errs, fmt.Errorf("%s: a pattern is empty or over %d bytes", name, maxPatternLen))
				continue
			}
			if _, err := path.Match(p, ""); err != nil {
				errs = append(errs, fmt.Errorf("%s: pattern %q: %v", name, p, err))
			}
		}
	}
	return errors.Join(errs...)
}

// validEmail: one bare address, ASCII only. Not internationalised
// addresses: Unicode case folding and compatibility forms (a Kelvin sign
// U+212A lower-cases to "k") would let a second spelling name an identity
// that is another's ASCII twin. Workspace and Google accounts are ASCII.
func validEmail(s string) bool {
	if len(s) > 320 || strings.TrimSpace(s) != s || strings.ContainsFunc(s, func(r rune) bool { return r > unicode.MaxASCII }) {
		return false
	}
	a, err := mail.ParseAddress(s)
	return err == nil && a.Address == s && a.Name == ""
}

// Attributes returns the Pub/Sub attributes a product may set on a control
// message (none is required; version helps filtering).
func (c Control) Attributes() map[string]string {
	return map[string]string{"version": fmt.Sprint(c.Version), "action": c.Action}
}
