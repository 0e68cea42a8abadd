// Package messages defines the JSON carried on calsync's two topics: the
// notifications topic (Webhook and RenewChannels → SyncWorker) and the changes
// topic (SyncWorker → consumers). Both sides import these types, so the wire
// format has one definition.
package messages

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"
)

// Resource states. Google sends sync, exists and not_exists; calsync's own
// requests (RenewChannels, the CLI) use reconcile and full_resync.
const (
	StateSync       = "sync"
	StateExists     = "exists"
	StateNotExists  = "not_exists"
	StateReconcile  = "reconcile"   // sync now, incrementally, whatever happened
	StateFullResync = "full_resync" // drop the token and list everything again
	// StatePurge asks to delete an unenrolled calendar's mirror, announcing a
	// "deleted" change for each event (shared/enroll publishes it).
	StatePurge = "purge"
)

// Resources a notification is about (Notification.Resource).
const (
	ResourceEvents       = ""             // a calendar's events: CalendarKey
	ResourceCalendarList = "calendarList" // an identity's calendar list: IdentityKey
)

// Attribute keys.
const (
	AttrCalendarKey   = "calendarKey"
	AttrResourceState = "resourceState"
	AttrEventID       = "eventId"
	AttrChange        = "change"
	AttrResource      = "resource"
	AttrIdentityKey   = "identityKey"
	AttrOrigin        = "origin"
	AttrSchemaVersion = "schemaVersion"
)

// Notification is one message on the notifications topic: about a
// calendar's events (CalendarKey), or, with Resource ResourceCalendarList,
// about an identity's calendar list (IdentityKey; its channel's token says so).
type Notification struct {
	Resource          string    `json:"resource,omitempty"`
	IdentityKey       string    `json:"identityKey,omitempty"`
	ChannelID         string    `json:"channelId,omitempty"`
	ResourceID        string    `json:"resourceId,omitempty"`
	ResourceURI       string    `json:"resourceUri,omitempty"`
	ResourceState     string    `json:"resourceState"`
	MessageNumber     int64     `json:"messageNumber,omitempty"`
	CalendarKey       string    `json:"calendarKey,omitempty"`
	ChannelExpiration string    `json:"channelExpiration,omitempty"`
	ReceivedAt        time.Time `json:"receivedAt"`
	// NotBefore, on calsync's own requests, is when the request may be acted
	// on: Pub/Sub cannot delay a message, so the SyncWorker waits for it
	// (holding no lease) before admitting the request. Set for a sync
	// deferred by a rate limit and for the follow-up of an empty push sync;
	// ReceivedAt is then NotBefore, so only a round started after it covers it.
	NotBefore time.Time `json:"notBefore,omitzero"`
	// FollowUp marks the one delayed sync after a push whose sync found
	// nothing (Google may push before the change is listed): it never asks
	// for another.
	FollowUp bool `json:"followUp,omitempty"`
	// Attempt counts how often a rate-limited sync was deferred (backoff).
	Attempt int `json:"attempt,omitempty"`
	// Operator marks a request an operator made (calsync resync): the
	// full-resync cooldown, a guard against runaway automatic resyncs, does
	// not hold it back.
	Operator bool `json:"operator,omitempty"`
	// MessageID is the Pub/Sub message id it was delivered as: transport
	// metadata the SyncWorker sets, never part of the payload.
	MessageID string `json:"-"`
}

// Attributes returns the Pub/Sub attributes of a notification.
func (n Notification) Attributes() map[string]string {
	if n.Resource != ResourceEvents {
		return map[string]string{AttrResource: n.Resource, AttrIdentityKey: n.IdentityKey, AttrResourceState: n.ResourceState}
	}
	return map[string]string{AttrCalendarKey: n.CalendarKey, AttrResourceState: n.ResourceState}
}

// ListRequest is calsync's own request to look at an identity's calendar
// list again (StateReconcile), ready to publish on the notifications topic.
func ListRequest(identityKey, state string, now time.Time) (data []byte, attrs map[string]string, err error) {
	n := Notification{Resource: ResourceCalendarList, IdentityKey: identityKey, ResourceState: state, ReceivedAt: now.UTC()}
	data, err = json.Marshal(n)
	return data, n.Attributes(), err
}

// Request is calsync's own sync request for a calendar (state
// StateReconcile or StateFullResync), ready to publish on the notifications
// topic.
func Request(calendarKey, state string, now time.Time) (data []byte, attrs map[string]string, err error) {
	return Notification{ResourceState: state, CalendarKey: calendarKey, ReceivedAt: now.UTC()}.Encode()
}

// OperatorRequest is Request marked as an operator's (Operator).
func OperatorRequest(calendarKey, state string, now time.Time) (data []byte, attrs map[string]string, err error) {
	return Notification{ResourceState: state, CalendarKey: calendarKey, ReceivedAt: now.UTC(), Operator: true}.Encode()
}

// Delayed is a reconcile request to act on at notBefore (see NotBefore).
func Delayed(calendarKey string, notBefore time.Time, followUp bool, attempt int) Notification {
	at := notBefore.UTC()
	return Notification{ResourceState: StateReconcile, CalendarKey: calendarKey, ReceivedAt: at, NotBefore: at,
		FollowUp: followUp, Attempt: attempt}
}

// Encode is the message's data and attributes.
func (n Notification) Encode() (data []byte, attrs map[string]string, err error) {
	data, err = json.Marshal(n)
	return data, n.Attributes(), err
}

// ErrInvalid marks a message that can never be processed (acknowledge it).
// Every error ParseNotification returns is an *InvalidError matching it.
var ErrInvalid = errors.New("invalid message")

// Why a notification is invalid: the reason field of the SyncWorker's
// invalid_message log line (and a label of its metric).
const (
	ReasonNotJSON              = "not_json"
	ReasonNoCalendarKey        = "no_calendar_key"
	ReasonBadCalendarKey       = "bad_calendar_key"
	ReasonUnknownResourceState = "unknown_resource_state"
	ReasonUnknownCalendar      = "unknown_calendar" // well formed, but no such calendar is registered
	ReasonUnknownResource      = "unknown_resource"
	ReasonBadIdentityKey       = "bad_identity_key"
)

// InvalidError says why a message can never be processed. Detail may quote
// the message: clip it before logging.
type InvalidError struct {
	Reason string // one of the Reason* constants (or a caller's own)
	Detail string
}

func (e *InvalidError) Error() string { return "invalid message: " + e.Reason + ": " + e.Detail }

// Is makes errors.Is(err, ErrInvalid) hold.
func (e *InvalidError) Is(target error) bool { return target == ErrInvalid }

// InvalidReason returns the reason of an invalid-message error, or "".
func InvalidReason(err error) string {
	var ie *InvalidError
	if errors.As(err, &ie) {
		return ie.Reason
	}
	return ""
}

// CalendarKeyLen is the length of a calendar key: "c" and 26 base32hex digits.
const CalendarKeyLen = 27

// ValidCalendarKey reports whether s has the form store.CalendarKey gives
// every key ("c" + 26 lowercase base32hex characters, ^c[0-9a-v]{26}$). The
// key becomes a Firestore document id, so anything else ("../../x", "") is
// refused before it reaches the store. (messages cannot import store: the
// store's tests check that its keys always pass.)
func ValidCalendarKey(s string) bool {
	if len(s) != CalendarKeyLen || s[0] != 'c' {
		return false
	}
	for i := 1; i < len(s); i++ {
		if c := s[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'v') {
			return false
		}
	}
	return true
}

// IdentityKeyLen is the length of an identity key: "i" and 26 base32hex digits.
const IdentityKeyLen = 27

// ValidIdentityKey reports whether s has the form store.Grant.IdentityKey gives
// ("i" + 26 lowercase base32hex characters).
func ValidIdentityKey(s string) bool {
	return len(s) == IdentityKeyLen && s[0] == 'i' && ValidCalendarKey("c"+s[1:])
}

// ParseNotification decodes and checks a notification. Its errors are
// *InvalidError: redelivering the message cannot help.
func ParseNotification(data []byte) (Notification, error) {
	var n Notification
	if err := json.Unmarshal(data, &n); err != nil {
		return n, &InvalidError{Reason: ReasonNotJSON, Detail: err.Error()}
	}
	switch n.Resource {
	case ResourceEvents:
	case ResourceCalendarList:
		if !ValidIdentityKey(n.IdentityKey) {
			return n, &InvalidError{Reason: ReasonBadIdentityKey, Detail: fmt.Sprintf("identityKey %q is not i + 26 base32hex characters", n.IdentityKey)}
		}
		switch n.ResourceState {
		case StateSync, StateExists, StateNotExists, StateReconcile:
		default:
			return n, &InvalidError{Reason: ReasonUnknownResourceState, Detail: fmt.Sprintf("resourceState %q of a calendarList notification", n.ResourceState)}
		}
		return n, nil
	default:
		return n, &InvalidError{Reason: ReasonUnknownResource, Detail: fmt.Sprintf("unknown resource %q", n.Resource)}
	}
	if n.CalendarKey == "" {
		return n, &InvalidError{Reason: ReasonNoCalendarKey, Detail: "no calendarKey"}
	}
	if !ValidCalendarKey(n.CalendarKey) {
		return n, &InvalidError{Reason: ReasonBadCalendarKey, Detail: fmt.Sprintf("calendarKey %q is not c + 26 base32hex characters", n.CalendarKey)}
	}
	switch n.ResourceState {
	case StateSync, StateExists, StateNotExists, StateReconcile, StateFullResync, StatePurge:
	default:
		return n, &InvalidError{Reason: ReasonUnknownResourceState, Detail: fmt.Sprintf("unknown resourceState %q", n.ResourceState)}
	}
	return n, nil
}

// Change kinds on the changes topic.
const (
	ChangeCreated = "created"
	ChangeUpdated = "updated"
	ChangeDeleted = "deleted"
	// ChangeCancelled: one occurrence of a recurring event was cancelled
	// (Google's cancelled exception of a live series: recurringEventId and
	// originalStartTime, no summary). The series itself lives on.
	ChangeCancelled = "cancelled"
)

// ChangeSchemaVersion is the version of the change message's contract
// (README, "Change feed"): fields are only added within a version; a
// field removed or whose meaning changes makes the next version.
const ChangeSchemaVersion = 1

// Origins of a change: which kind of sync found it (Change.Origin).
const (
	// OriginInitial: the calendar's first full sync (its whole history,
	// announced created): a product skips its "new event" automations.
	OriginInitial = "initial"
	// OriginIncremental: an ordinary sync with the sync token.
	OriginIncremental = "incremental"
	// OriginResync: a full sync of a calendar synced before (Google's 410,
	// an operator's full resync, a change of reader, a purge).
	OriginResync = "resync"
	// OriginPurge: an unwatched calendar's mirror deleted on request
	// (unenroll with deleteMirror): the events were not deleted in Google.
	OriginPurge = "purge"
)

// Change is one message on the changes topic: one event that changed.
// Delivery is at least once: consumers deduplicate on (CalendarKey,
// EventID, Etag): one meeting is on every attendee's calendar under one id.
type Change struct {
	SchemaVersion int    `json:"schemaVersion"`
	Origin        string `json:"origin"`
	Attribution
	CalendarID   string `json:"calendarId"`
	CalendarKey  string `json:"calendarKey"`
	EventID      string `json:"eventId"`
	Change       string `json:"change"`
	Etag         string `json:"etag"`
	PreviousEtag string `json:"previousEtag,omitempty"`
	// ChangedFields (updated only): the top-level Event fields whose values
	// differ from the mirror's previous version, sorted; etag and updated
	// are among them whenever Google changed them, which is every update.
	ChangedFields []string `json:"changedFields,omitempty"`
	// Previous (updated only) holds the previous values of the changed
	// fields among start, end, status, summary, location and recurrence, and
	// the previous responseStatus of attendees whose response changed. A
	// changed field listed in ChangedFields without a value here was absent.
	Previous *Previous       `json:"previous,omitempty"`
	Sequence int64           `json:"sequence"`
	Updated  string          `json:"updated,omitempty"`
	SyncedAt time.Time       `json:"syncedAt"`
	Event    json.RawMessage `json:"event"`
	// LastKnown (deleted and cancelled): the event as the mirror last held
	// it (API JSON, calsync's own fields removed), so a consumer that never
	// stored it still knows what went away. Absent when the mirror did not
	// hold it (a ghost of a crashed sync) and for the exceptions deleted
	// with their series.
	LastKnown json.RawMessage `json:"lastKnown,omitempty"`
}

// Previous is what an updated event's changed fields were before.
type Previous struct {
	Start      json.RawMessage `json:"start,omitempty"`
	End        json.RawMessage `json:"end,omitempty"`
	Status     string          `json:"status,omitempty"`
	Summary    string          `json:"summary,omitempty"`
	Location   string          `json:"location,omitempty"`
	Recurrence json.RawMessage `json:"recurrence,omitempty"`
	// AttendeeResponses: per attendee (email, or id without one) whose
	// responseStatus changed, the previous one; "" for an attendee who was
	// not on the event before.
	AttendeeResponses map[string]string `json:"attendeeResponses,omitempty"`
	// Incomplete: the mirror held the previous version only in part (it was
	// too large, calsyncTruncated): fields it lacked count as changed.
	Incomplete bool `json:"incomplete,omitempty"`
}

// Attributes returns the Pub/Sub attributes of a change.
func (c Change) Attributes() map[string]string {
	a := map[string]string{AttrCalendarKey: c.CalendarKey, AttrEventID: c.EventID, AttrChange: c.Change,
		AttrOrigin: c.Origin, AttrSchemaVersion: strconv.Itoa(c.SchemaVersion)}
	c.Attribution.addTo(a)
	return a
}
