package messages

import (
	"encoding/json"
	"strconv"
	"time"
)

// Lifecycle is one message on the lifecycle topic: one transition of an
// identity, a calendar or a Workspace domain, or the answer to a control
// message. A product reacts to it (a "reconnect" banner, "initial sync
// complete", a refused request) without reading calsync's Firestore.
// Published at least once, after the transition is recorded; deduplicate
// on (type, identityKey, calendarKey, domain, occurredAt), or requestId for
// control answers. Version 1, schemas/lifecycle.v1.json.
type Lifecycle struct {
	SchemaVersion int    `json:"schemaVersion"`
	Type          string `json:"type"`
	Attribution
	CalendarKey string `json:"calendarKey,omitempty"`
	CalendarID  string `json:"calendarId,omitempty"`
	Domain      string `json:"domain,omitempty"`
	// Status is the status the target has now (store's statuses).
	Status string `json:"status,omitempty"`
	// Reason is a machine-readable why: a control refusal's reason, an auth
	// problem's status, a poll mode's reason.
	Reason string `json:"reason,omitempty"`
	Detail string `json:"detail,omitempty"` // for people; never a secret
	// UserAction is what the end user (or their admin) must do, for an auth
	// problem: UserReconnect, UserGrantScopes, UserAskAdmin, UserOperator.
	UserAction string `json:"userAction,omitempty"`
	// Events: initial_sync_complete's count of events mirrored.
	Events *int `json:"events,omitempty"`
	// Control: the control message answered (control.accepted / rejected).
	Control    *ControlAnswer `json:"control,omitempty"`
	OccurredAt time.Time      `json:"occurredAt"`
}

// Attribution says whose a change or lifecycle message is, in its body and
// its Pub/Sub attributes (a consumer's subscription filters on them).
type Attribution struct {
	// Tenant owns the identity or calendar ("default": the operator's).
	Tenant string `json:"tenant"`
	// IdentityKey: the identity (or, for rooms, the domain) whose grant the
	// calendar is read with; empty for a calendar an operator watches.
	IdentityKey string `json:"identityKey,omitempty"`
	// ExternalID is the product's own id for that identity, from its enroll.
	ExternalID string `json:"externalId,omitempty"`
}

func (a Attribution) addTo(attrs map[string]string) {
	attrs[AttrTenant] = a.Tenant
	for k, v := range map[string]string{AttrIdentityKey: a.IdentityKey, AttrExternalID: a.ExternalID} {
		if v != "" {
			attrs[k] = v
		}
	}
}

// ControlAnswer names the control message a lifecycle message answers.
type ControlAnswer struct {
	RequestID string `json:"requestId"`
	Action    string `json:"action"`
	// Duplicate: the request id was done before; nothing was done again.
	Duplicate bool `json:"duplicate,omitempty"`
}

// LifecycleVersion is the lifecycle schema's version.
const LifecycleVersion = 1

// Lifecycle message types.
const (
	LifecycleIdentityEnrolled    = "identity.enrolled"
	LifecycleIdentityUnenrolled  = "identity.unenrolled"
	LifecycleIdentityAuthProblem = "identity.auth_problem"
	LifecycleCalendarAdded       = "calendar.added"
	LifecycleCalendarRemoved     = "calendar.removed"
	LifecycleInitialSyncComplete = "calendar.initial_sync_complete"
	LifecycleCalendarNotFound    = "calendar.not_found"
	LifecycleCalendarRestored    = "calendar.restored"
	LifecycleCalendarPolled      = "calendar.polled"
	LifecycleCalendarFreeBusy    = "calendar.free_busy_only"
	LifecycleCalendarAuthProblem = "calendar.auth_problem"
	LifecycleDomainAuthProblem   = "domain.auth_problem"
	LifecycleDomainRestored      = "domain.restored"
	LifecycleControlAccepted     = "control.accepted"
	LifecycleControlRejected     = "control.rejected"
)

// Why a control message is refused when acted on (besides ParseControl's
// reasons and the Reason* of control.go).
const (
	ReasonStaleRequest  = "stale_request"  // issuedAt outside CONTROL_MAX_AGE before now (or over a minute ahead): a replay
	ReasonSuperseded    = "superseded"     // the identity's control message issued later was applied first
	ReasonOutsideTenant = "outside_tenant" // the tenant may not enroll that subject (TENANTS domains, subjects) or OAuth grants
	ReasonOtherTenant   = "other_tenant"   // the identity belongs to another tenant
)

// What the end user must do about an auth problem (Lifecycle.UserAction).
const (
	UserReconnect   = "reconnect"    // the grant was revoked or expired: consent again
	UserGrantScopes = "grant_scopes" // consent was given without a scope calsync needs
	UserAskAdmin    = "ask_admin"    // a Workspace admin must authorise delegation or lift a policy
	UserOperator    = "operator"     // the deployment's operator must act (an API disabled, the OAuth client disabled)
)

// Pub/Sub attributes of lifecycle messages (with AttrIdentityKey,
// AttrSchemaVersion and AttrCalendarKey), so a consumer filters.
const (
	AttrType       = "type"
	AttrTenant     = "tenant"
	AttrExternalID = "externalId"
)

// Encode is the message's data and attributes.
func (l Lifecycle) Encode() (data []byte, attrs map[string]string, err error) {
	l.SchemaVersion = LifecycleVersion
	l.OccurredAt = l.OccurredAt.UTC()
	data, err = json.Marshal(l)
	attrs = map[string]string{AttrType: l.Type, AttrSchemaVersion: strconv.Itoa(LifecycleVersion)}
	l.Attribution.addTo(attrs)
	if l.CalendarKey != "" {
		attrs[AttrCalendarKey] = l.CalendarKey
	}
	return data, attrs, err
}
