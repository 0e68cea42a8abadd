package messages

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/mail"
	"path"
	"regexp"
	"strings"
	"time"
	"unicode"
)

// Control is one message on the control topic: what a product backend asks
// of calsync for one of its users. Version 1:
//
//	{"version": 1, "action": "enroll", "subject": "ann@corp.example",
//	 "filters": {"minAccessRole": "reader", "exclude": ["*#holiday@group.v.calendar.google.com"]}}
//	{"version": 1, "action": "enroll", "credentialId": "cred-…", "sealedRefreshToken": "sealed:v1:…", "email": "bob@gmail.com"}
//	{"version": 1, "action": "unenroll", "subject": "ann@corp.example", "deleteMirror": true}
//	{"version": 1, "action": "resync", "credentialId": "cred-…", "full": true}
//
// The identity is either a Workspace user read by domain-wide delegation
// (subject) or a user's OAuth grant (credentialId: an id from
// credentials.NewID; to enroll a new one, its refresh token sealed to the
// deployment's public key with credentials.AAD(credentialId) as context).
// Unknown fields are refused, so a misspelt option never goes unnoticed.
type Control struct {
	Version int    `json:"version"`
	Action  string `json:"action"`
	// RequestID is the product's own id for the request (logged, at most 128 chars).
	RequestID  string    `json:"requestId,omitempty"`
	IssuedAt   time.Time `json:"issuedAt"`
	ExternalID string    `json:"externalId,omitempty"`

	Subject            string `json:"subject,omitempty"`
	CredentialID       string `json:"credentialId,omitempty"`
	SealedRefreshToken string `json:"sealedRefreshToken,omitempty"`
	Email              string `json:"email,omitempty"` // the grant's user, for operators

	// enroll
	Filters *Filters `json:"filters,omitempty"`
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
)

// ParseControl decodes and checks a control message. Its errors are
// *InvalidError: redelivering the message cannot help.
func ParseControl(data []byte) (Control, error) {
	var c Control
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		reason := ReasonNotJSON
		if strings.Contains(err.Error(), "unknown field") {
			reason = ReasonUnknownField
		}
		return c, &InvalidError{Reason: reason, Detail: err.Error()}
	}
	if dec.More() {
		return c, &InvalidError{Reason: ReasonNotJSON, Detail: "more than one JSON value"}
	}
	invalid := func(reason, format string, a ...any) (Control, error) {
		return c, &InvalidError{Reason: reason, Detail: fmt.Sprintf(format, a...)}
	}
	if c.Version != ControlVersion {
		return invalid(ReasonUnsupportedVersion, "version %d (this deployment reads version %d)", c.Version, ControlVersion)
	}
	switch c.Action {
	case ActionEnroll, ActionUnenroll, ActionResync:
	default:
		return invalid(ReasonUnknownAction, "action %q is not enroll, unenroll or resync", c.Action)
	}
	if len(c.RequestID) > 128 || strings.ContainsFunc(c.RequestID, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return invalid(ReasonBadRequestID, "requestId: at most 128 printable characters")
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
	if c.DeleteMirror && c.Action != ActionUnenroll {
		return invalid(ReasonBadOption, "deleteMirror is for unenroll only")
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
