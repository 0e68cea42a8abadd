// Package store holds calsync's Firestore data model and the code that reads
// and writes it. This file is the model: collection names, document shapes and
// the calendar key. See README.md for the whole layout.
package store

import (
	"crypto/sha256"
	"encoding/base32"
	"slices"
	"strings"
	"time"

	"github.com/calsync/calsync/shared/messages"
	"github.com/calsync/calsync/shared/tenant"
)

// Collections.
const (
	CollCalendars   = "calendars"   // calendars/{calendarKey}
	CollEvents      = "events"      // calendars/{calendarKey}/events/{eventId}
	CollChannels    = "channels"    // channels/{channelId}
	CollCredentials = "credentials" // credentials/{credentialId}
)

// Calendar statuses.
const (
	StatusActive      = "active"
	StatusAuthRevoked = "auth_revoked"
	StatusNotFound    = "not_found"
	StatusError       = "error"
	StatusUnwatched   = "unwatched"
	// StatusFreeBusyOnly: no grant that lists the calendar sees more than
	// free/busy: it is not synced nor watched, and its mirror (if a better
	// reader left one) is not kept up to date.
	StatusFreeBusyOnly = "free_busy_only"
	// Google refuses the grant for a reason no retry cures; each says what
	// a person must do (lifecycle.Advice).
	StatusDelegationUnauthorized = "delegation_unauthorized" // unauthorized_client after the grace period
	StatusScopeMissing           = "auth_scope_missing"      // a scope not granted or not authorised
	StatusAPIDisabled            = "api_disabled"            // an API not enabled in the project
	StatusAdminPolicy            = "admin_policy"            // a Workspace admin policy blocks the app
	StatusClientDisabled         = "client_disabled"         // the OAuth client is disabled
	// A domain's admin may not read its directory (403 forbidden: no longer
	// an admin, or its role lost the privilege).
	StatusDirectoryForbidden = "directory_forbidden"
)

// Poll modes (Calendar.PollMode) and their reasons.
const (
	PollIncremental = "incremental"
	PollFull        = "full"

	PollReasonPushNotSupported = "push_not_supported"     // events.watch: 400 pushNotSupportedForRequestedResource
	PollReasonNoDeletions      = "deletions_not_reported" // birthdays (#contacts): incremental syncs miss deletions
)

// Auth modes: how a calendar is read.
const (
	AuthADC        = "adc"        // the function's own identity (calendar shared with its service account)
	AuthDelegation = "delegation" // domain-wide delegation impersonating Subject
	AuthOAuth      = "oauth"      // a user's refresh token, credentials/{CredentialID}
)

// Calendar is calendars/{calendarKey}.
type Calendar struct {
	CalendarID string `firestore:"calendarId"`
	// Tenant owns the calendar ("": the default tenant): a calendar two
	// tenants enroll has a mirror for each (Key), never shared.
	Tenant string `firestore:"tenant,omitempty"`
	// ExternalID is the product's id of the identity it is read with (its
	// reader's, set with EnrolledBy), for change messages.
	ExternalID   string `firestore:"externalId,omitempty"`
	AuthMode     string `firestore:"authMode"`
	Subject      string `firestore:"subject,omitempty"`      // delegation: the Workspace user
	CredentialID string `firestore:"credentialId,omitempty"` // oauth: the stored refresh token
	Status       string `firestore:"status"`
	StatusReason string `firestore:"statusReason,omitempty"`
	// EnrolledBy is the reader the calendar is read with: the identity
	// (Grant.IdentityKey) whose calendar list gave the most access, or the
	// domain (store.DomainKey) whose rooms listed it; empty for a calendar
	// an operator registered (left alone by discovery).
	EnrolledBy string `firestore:"enrolledBy,omitempty"`
	// Readers: every lister (identity, or a domain's rooms) whose listing
	// has the calendar, with its grant and access role; the one of most
	// access reads it (shared/lifecycle, PlanListing). ReaderKeys are their
	// keys, for queries (CalendarsReadBy).
	Readers    map[string]Reader `firestore:"readers,omitempty"`
	ReaderKeys []string          `firestore:"readerKeys,omitempty"`
	// AccessRole is the role of the grant it is read with ("" unknown: an
	// operator's registration, a domain's rooms).
	AccessRole string `firestore:"accessRole,omitempty"`

	// A streak of 404s (events.list or events.watch): Google answers some
	// for a while after a calendar is shared. Only a streak of
	// NotFoundPolicy.Attempts spanning NotFoundPolicy.After sets not_found;
	// any success ends it. LastProbeAt: when a not_found calendar was last
	// tried again (RenewChannels, daily).
	NotFoundSince time.Time `firestore:"notFoundSince,omitempty"`
	NotFoundCount int       `firestore:"notFoundCount,omitempty"`
	LastProbeAt   time.Time `firestore:"lastProbeAt,omitempty"`

	// PollMode: "" (push channel), PollIncremental (Google will not watch
	// it: no channel, incremental syncs on a schedule) or PollFull (Google
	// does not report its deletions incrementally: every sync is full, with
	// the sweep). PollReason says why.
	PollMode   string `firestore:"pollMode,omitempty"`
	PollReason string `firestore:"pollReason,omitempty"`

	// ChannelEpoch names the calendar's current chain of channel ids
	// (shared/channels): a new chain gets a new, later one, so a channel id
	// never repeats, even after its records are deleted.
	ChannelEpoch string `firestore:"channelEpoch,omitempty"`

	// SyncToken is Google's nextSyncToken, stored only once every page of the
	// sync that produced it is written.
	SyncToken         string    `firestore:"syncToken,omitempty"`
	LastSyncStartedAt time.Time `firestore:"lastSyncStartedAt,omitempty"`
	LastSyncedAt      time.Time `firestore:"lastSyncedAt,omitempty"`
	LastFullSyncAt    time.Time `firestore:"lastFullSyncAt,omitempty"`
	// LastCompletedSyncStartedAt is when the last COMPLETED sync started: a
	// notification received before it is already covered.
	LastCompletedSyncStartedAt time.Time `firestore:"lastCompletedSyncStartedAt,omitempty"`

	// The lease: one sync per calendar at a time. LeaseOwner is unique per
	// acquisition ("instance/uuid"); LeaseGen counts acquisitions and is the
	// fencing token every write under the lease carries (see fence.go).
	LeaseOwner string    `firestore:"leaseOwner,omitempty"`
	LeaseGen   int64     `firestore:"leaseGen,omitempty"`
	LeaseUntil time.Time `firestore:"leaseUntil,omitempty"`
	// LeaseMessageID is the Pub/Sub message whose session holds the lease:
	// its own redelivery (the holder's instance died, or is still at it) is
	// not covered by the holder's rounds coming to an end, so it is retried
	// rather than acknowledged.
	LeaseMessageID string `firestore:"leaseMessageId,omitempty"`
	// LeaseOp is the id of the holder's last transaction (StartRound,
	// Heartbeat, Complete, Release): how a commit whose answer was lost is
	// recognised (ambiguous.go).
	LeaseOp string `firestore:"leaseOp,omitempty"`
	// Dirty: a notification arrived while a sync ran; the sync goes round once more.
	Dirty      bool      `firestore:"dirty"`
	DirtySince time.Time `firestore:"dirtySince,omitempty"`
	// ChannelMessages: per push channel, the message numbers most recently
	// admitted with a write (lease taken or dirty set); a push with one of
	// them is a duplicate (Admit). Written only with writes Admit makes anyway.
	ChannelMessages map[string]ChannelMessage `firestore:"channelMessages,omitempty"`
	// FullResyncRequested: a full_resync request arrived while a sync ran.
	FullResyncRequested bool `firestore:"fullResyncRequested,omitempty"`
	// FullResyncByOperator: that request was an operator's (calsync resync
	// --full), which FULL_RESYNC_COOLDOWN does not hold back, whoever runs it.
	FullResyncByOperator bool `firestore:"fullResyncByOperator,omitempty"`
	// Checkpointed: a round stands at a checkpoint (syncstate/checkpoint,
	// with CheckpointChunks chunks), so a round start reads it only then.
	Checkpointed     bool `firestore:"checkpointed,omitempty"`
	CheckpointChunks int  `firestore:"checkpointChunks,omitempty"`

	// Counters, each updated atomically with what it counts: eventCount and
	// changeCount in the same fenced batch as the event writes they count,
	// syncCount and fullSyncCount in the transaction that completes a round.
	EventCount    int64 `firestore:"eventCount"` // event documents in the mirror
	SyncCount     int64 `firestore:"syncCount"`  // completed rounds
	FullSyncCount int64 `firestore:"fullSyncCount"`
	ChangeCount   int64 `firestore:"changeCount"` // event documents written or deleted (changed versions only)

	CreatedAt time.Time `firestore:"createdAt"`
	UpdatedAt time.Time `firestore:"updatedAt"`
}

// Watches is what the channel watches, for old records (no Kind) too.
func (c Channel) Watches() ChannelKind {
	switch {
	case c.Kind != "":
		return c.Kind
	case c.Resource == string(WatchesCalendarList):
		return WatchesCalendarList
	}
	return WatchesEvents
}

// ChannelMessage is one entry of Calendar.ChannelMessages. The numbers are
// kept exactly, never as a maximum: X-Goog-Message-Number is not signed, and
// a replay carrying a huge number must not make later real ones look old.
type ChannelMessage struct {
	Numbers []int64 `firestore:"ns,omitempty"` // admitted, oldest first, at most channelNumbersKept
	// Number is the older shape's highest admitted number: read as one
	// admitted number (not a maximum), replaced by Numbers on the next write.
	Number int64     `firestore:"n,omitempty"`
	At     time.Time `firestore:"at"` // when it was admitted (entries age out)
}

// Admitted reports whether message number n of this channel was admitted.
func (m ChannelMessage) Admitted(n int64) bool {
	return n > 0 && (n == m.Number || slices.Contains(m.Numbers, n))
}

// Channel states.
const (
	ChannelPending = "pending" // record written, watch call not yet answered
	ChannelActive  = "active"
	ChannelStopped = "stopped"
	ChannelExpired = "expired"
)

// ChannelKind is what a channel watches.
type ChannelKind string

// Channel kinds.
const (
	WatchesEvents       ChannelKind = "events"       // a calendar's events (events.watch)
	WatchesCalendarList ChannelKind = "calendarList" // an identity's calendar list (calendarList.watch)
)

// Channel is channels/{channelId}: one Google push channel.
type Channel struct {
	ChannelID string `firestore:"channelId"`
	// Kind is what the channel watches, and so what Key is; records written
	// before it was stored have none (Watches reads Resource then).
	Kind ChannelKind `firestore:"kind,omitempty"`
	// Key is the key of what the channel watches: a calendar's
	// (CalendarKey) or an identity's (Grant.IdentityKey). Stored under the
	// name older records use.
	Key string `firestore:"calendarKey"`
	// CalendarID names what it watches for operators: the calendar id, or
	// the grant's key for a list.
	CalendarID string `firestore:"calendarId"`
	// Resource is the kind as older instances read it ("" events,
	// "calendarList"): still written, so they keep working during a rollout.
	Resource    string    `firestore:"resource,omitempty"`
	ResourceID  string    `firestore:"resourceId,omitempty"`
	ResourceURI string    `firestore:"resourceUri,omitempty"`
	Expiration  time.Time `firestore:"expiration"` // as granted by Google
	State       string    `firestore:"state"`
	CreatedAt   time.Time `firestore:"createdAt"`
	StoppedAt   time.Time `firestore:"stoppedAt,omitempty"`
	// ExpireAt is the Firestore TTL field: the record is deleted after it.
	ExpireAt time.Time `firestore:"expireAt,omitempty"`
	// TokenKeyID is the id of the key that signed the channel's token (the
	// token itself is not stored); empty for channels made before it was
	// recorded, whose tokens are version 1. Key rotation counts and renews
	// by it.
	TokenKeyID string `firestore:"tokenKeyId,omitempty"`
	// Creator is the grant that made the channel: Google lets only it stop
	// the channel, whoever reads the calendar now (a new best reader, a
	// room's other domain). Empty for records made before it was stored.
	Creator *Grant `firestore:"creator,omitempty"`
}

// Credential is credentials/{credentialId}: a user's OAuth refresh token,
// never in clear at rest. Sealed (shared/sealed: HPKE to the deployment's
// public key, SealedKeyID naming it), or, for credentials stored before
// sealing existed, encrypted with AES-256-GCM under the key KeyID
// (Ciphertext) until they are migrated.
type Credential struct {
	Subject     string `firestore:"subject"` // the user's email, for operators
	Sealed      string `firestore:"sealed,omitempty"`
	SealedKeyID string `firestore:"sealedKeyId,omitempty"`
	// Legacy AES-256-GCM fields, removed when the credential is sealed.
	KeyID      string `firestore:"keyId,omitempty"`
	Ciphertext []byte `firestore:"ciphertext,omitempty"`
	Status     string `firestore:"status"` // active or auth_revoked
	// Scopes Google granted (the token reply's scope), checked to hold
	// every one calsync needs when stored; empty for credentials stored
	// before they were recorded.
	Scopes    []string  `firestore:"scopes,omitempty"`
	CreatedAt time.Time `firestore:"createdAt"`
	UpdatedAt time.Time `firestore:"updatedAt"`
	RevokedAt time.Time `firestore:"revokedAt,omitempty"`
}

var keyEncoding = base32.HexEncoding.WithPadding(base32.NoPadding)

// Attribution says whose the calendar's messages are: its tenant, the
// identity it is read with and that identity's externalId.
func (c Calendar) Attribution() messages.Attribution {
	return messages.Attribution{Tenant: tenant.Of(c.Tenant), IdentityKey: c.EnrolledBy, ExternalID: c.ExternalID}
}

// Key is the calendar's key: its tenant's CalendarKeyIn.
func (c Calendar) Key() string { return CalendarKeyIn(c.Tenant, c.CalendarID) }

// CalendarKeyIn is the key of a calendar id in a tenant's mirror: the
// default tenant's is CalendarKey (as before tenants existed); another
// tenant's hashes the tenant's name in, so the same Google calendar
// enrolled by two tenants has two mirrors.
func CalendarKeyIn(tenantName, calendarID string) string {
	if tenant.Stored(tenantName) == "" {
		return CalendarKey(calendarID)
	}
	return CalendarKey("tenant:" + tenantName + "\n" + calendarID)
}

// CalendarKey is the stable, document-id-safe key of a calendar id: "c" and
// 26 base32hex characters of its SHA-256 (calendar ids contain '@', '#', '/'
// and can be long; the key also travels in every channel token).
func CalendarKey(calendarID string) string {
	sum := sha256.Sum256([]byte(calendarID))
	return "c" + strings.ToLower(keyEncoding.EncodeToString(sum[:16]))
}
