package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"

	"github.com/calsync/calsync/schemas"
	"github.com/calsync/calsync/shared/messages"
)

// What the consumer did with a message (Outcome.Verdict).
const (
	VerdictApplied   = "applied"   // new to this consumer: acted on
	VerdictDuplicate = "duplicate" // its dedup key was seen: nothing done
	VerdictPoison    = "poison"    // fails its schema: acknowledged, logged, nothing done
)

// Message is one decoded and validated message: a change or a lifecycle
// message, never both.
type Message struct {
	Change    *messages.Change
	Lifecycle *messages.Lifecycle
}

// Outcome is what Handle decided about one message.
type Outcome struct {
	Verdict string
	// Action is what a product does (for a change: "initial import" or "new
	// event", ...; for a lifecycle message: "show a reconnect banner", ...).
	// Empty for poison.
	Action string
	Line   string // the one line printed for the message
	Key    string // the dedup key; empty for poison
	Err    error  // why a poison message is poison
}

// Consumer decodes, validates, deduplicates and decides. Safe for the
// concurrent callbacks of a Pub/Sub receiver.
//
// The dedup set is in memory and bounded (an LRU of dedupSize keys): a
// duplicate that arrives after dedupSize other messages, or after a restart,
// is acted on again. Pub/Sub redelivers within the ack deadline and its
// retries, so a recent window catches nearly all of them, but only nearly: a
// real product records the key in its own database, in the same transaction
// as the effect of the message, and then needs no window at all.
type Consumer struct {
	seen *lru.Cache[string, struct{}]

	mu       sync.Mutex
	verdicts map[string]int
	actions  map[string]int // of applied messages
}

// NewConsumer returns a consumer that remembers the last dedupSize keys.
func NewConsumer(dedupSize int) (*Consumer, error) {
	seen, err := lru.New[string, struct{}](dedupSize)
	if err != nil {
		return nil, fmt.Errorf("dedup set of %d keys: %w", dedupSize, err)
	}
	return &Consumer{seen: seen, verdicts: map[string]int{}, actions: map[string]int{}}, nil
}

// Handle decides about one message. The caller acknowledges every message,
// whatever the verdict: a duplicate is done, and a poison message fails its
// schema on every redelivery (see README, "Poison messages").
func (c *Consumer) Handle(attrs map[string]string, data []byte) Outcome {
	m, err := Decode(attrs, data)
	if err != nil {
		c.count(VerdictPoison, "")
		return Outcome{Verdict: VerdictPoison, Err: err, Line: "poison  " + describeAttrs(attrs) + ": " + oneLine(err)}
	}
	o := Outcome{Key: DedupKey(m), Action: Decide(m)}
	// Marked before acting: acting here is printing, which cannot fail. A
	// product whose effect can fail marks the key in the effect's transaction.
	if seen, _ := c.seen.ContainsOrAdd(o.Key, struct{}{}); seen {
		o.Verdict = VerdictDuplicate
		o.Line = "dup     " + describe(m) + " (already seen: nothing done)"
		c.count(o.Verdict, "")
		return o
	}
	o.Verdict = VerdictApplied
	o.Line = fmt.Sprintf("%-7s %s: %s", kindOf(m), describe(m), o.Action)
	c.count(o.Verdict, o.Action)
	return o
}

func (c *Consumer) count(verdict, action string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.verdicts[verdict]++
	if action != "" {
		c.actions[action]++
	}
}

// Summary is one line: messages by verdict, applied ones by action.
func (c *Consumer) Summary() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	v := c.verdicts
	var actions []string
	for _, a := range slices.Sorted(maps.Keys(c.actions)) {
		actions = append(actions, fmt.Sprintf("%d %s", c.actions[a], a))
	}
	return fmt.Sprintf("summary: %d messages, %d applied (%s), %d duplicates, %d poison",
		v[VerdictApplied]+v[VerdictDuplicate]+v[VerdictPoison], v[VerdictApplied], strings.Join(actions, ", "), v[VerdictDuplicate], v[VerdictPoison])
}

// Decode validates a message against its schema, chosen by the type
// attribute (only lifecycle messages have one), decodes it, and checks that
// the attributes a subscription filters on say what the body says: a
// message chosen by a filter on attributes that its body contradicts may
// not be this subscriber's at all.
func Decode(attrs map[string]string, data []byte) (Message, error) {
	var m Message
	if _, ok := attrs[messages.AttrType]; ok {
		m.Lifecycle = new(messages.Lifecycle)
		return m, decodeInto(schemas.Lifecycle, data, m.Lifecycle, attrs, lifecycleAttrs(m.Lifecycle))
	}
	m.Change = new(messages.Change)
	return m, decodeInto(schemas.Change, data, m.Change, attrs, changeAttrs(m.Change))
}

// decodeInto validates data against schema, decodes it into v, and
// compares attrs with what want (called after decoding) says they must be.
func decodeInto(schema string, data []byte, v any, attrs map[string]string, want func() map[string]string) error {
	if err := schemas.Validate(schema, data); err != nil {
		return err
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("valid by %s but not decodable: %w", schema, err)
	}
	var errs []error
	for k, w := range want() {
		if attrs[k] != w {
			errs = append(errs, fmt.Errorf("attribute %s is %q, the body says %q", k, attrs[k], w))
		}
	}
	return errors.Join(errs...)
}

// changeAttrs is what a change's attributes must say, once c is decoded.
func changeAttrs(c *messages.Change) func() map[string]string {
	return func() map[string]string {
		return map[string]string{messages.AttrTenant: c.Tenant, messages.AttrIdentityKey: c.IdentityKey,
			messages.AttrExternalID: c.ExternalID, messages.AttrOrigin: c.Origin, messages.AttrCalendarKey: c.CalendarKey,
			messages.AttrEventID: c.EventID, messages.AttrChange: c.Change, messages.AttrSchemaVersion: strconv.Itoa(c.SchemaVersion)}
	}
}

// lifecycleAttrs is what a lifecycle message's attributes must say.
func lifecycleAttrs(l *messages.Lifecycle) func() map[string]string {
	return func() map[string]string {
		return map[string]string{messages.AttrType: l.Type, messages.AttrTenant: l.Tenant, messages.AttrIdentityKey: l.IdentityKey,
			messages.AttrExternalID: l.ExternalID, messages.AttrCalendarKey: l.CalendarKey,
			messages.AttrSchemaVersion: strconv.Itoa(l.SchemaVersion)}
	}
}

// DedupKey is the key calsync documents for the message: (calendarKey,
// eventId, etag) for a change (one meeting is on every attendee's calendar
// under one event id), the tenant's requestId for a control answer, and
// (type, identityKey, calendarKey, domain, occurredAt) for other lifecycle messages.
func DedupKey(m Message) string {
	if c := m.Change; c != nil {
		return strings.Join([]string{"change", c.CalendarKey, c.EventID, c.Etag}, "\x00")
	}
	l := m.Lifecycle
	if l.Control != nil {
		return strings.Join([]string{"control", l.Tenant, l.Control.RequestID}, "\x00")
	}
	return strings.Join([]string{"lifecycle", l.Type, l.IdentityKey, l.CalendarKey, l.Domain, l.OccurredAt.UTC().Format(time.RFC3339Nano)}, "\x00")
}

// Decide says what a product does with a message it has not seen.
func Decide(m Message) string {
	if m.Change != nil {
		return decideChange(m.Change)
	}
	return decideLifecycle(m.Lifecycle)
}

func decideChange(c *messages.Change) string {
	switch c.Change {
	case messages.ChangeCreated:
		if c.Origin == messages.OriginInitial {
			return "initial import" // the calendar's history: no "new meeting" automation
		}
		return "new event"
	case messages.ChangeUpdated:
		return "updated " + strings.Join(c.ChangedFields, ",")
	case messages.ChangeCancelled:
		return "occurrence cancelled"
	}
	if c.Origin == messages.OriginPurge {
		return "removed from the mirror" // unenrolled with deleteMirror: not deleted in Google
	}
	return "deleted"
}

func decideLifecycle(l *messages.Lifecycle) string {
	switch l.Type {
	case messages.LifecycleIdentityEnrolled:
		return "user connected"
	case messages.LifecycleIdentityUnenrolled:
		return "user disconnected"
	case messages.LifecycleIdentityAuthProblem, messages.LifecycleCalendarAuthProblem, messages.LifecycleDomainAuthProblem:
		return userAction(l.UserAction)
	case messages.LifecycleCalendarAdded:
		return "calendar added"
	case messages.LifecycleCalendarRemoved:
		return "calendar removed"
	case messages.LifecycleInitialSyncComplete:
		return "initial import complete (new-event automations on from here)"
	case messages.LifecycleCalendarNotFound:
		return "calendar gone: hide it"
	case messages.LifecycleCalendarRestored, messages.LifecycleDomainRestored:
		return "back: clear the warning"
	case messages.LifecycleCalendarPolled:
		return "calendar polled: its changes arrive late"
	case messages.LifecycleCalendarFreeBusy:
		return "free/busy only: not mirrored"
	case messages.LifecycleControlAccepted:
		return "request accepted"
	case messages.LifecycleControlRejected:
		return "request refused"
	}
	return "no action"
}

func userAction(a string) string {
	switch a {
	case messages.UserReconnect:
		return "show a reconnect banner"
	case messages.UserGrantScopes:
		return "ask to reconnect with every permission ticked"
	case messages.UserAskAdmin:
		return "tell the user their Workspace admin must act"
	}
	return "calsync's operator must act"
}

func kindOf(m Message) string {
	if m.Change != nil {
		return "change"
	}
	return "life"
}

// describe names a message for its line: whose it is and what it is about.
func describe(m Message) string {
	if c := m.Change; c != nil {
		s := fmt.Sprintf("%s %s origin=%s tenant=%s", c.Change, c.EventID, c.Origin, c.Tenant)
		if c.ExternalID != "" {
			s += " externalId=" + c.ExternalID
		}
		event := c.Event
		if len(c.LastKnown) > 0 { // deleted: what it was, though the product may never have stored it
			event = c.LastKnown
		}
		var e struct{ Summary string }
		if json.Unmarshal(event, &e) == nil && e.Summary != "" {
			s += fmt.Sprintf(" summary=%q", e.Summary)
		}
		return s
	}
	l := m.Lifecycle
	s := fmt.Sprintf("%s tenant=%s", l.Type, l.Tenant)
	for _, kv := range [][2]string{{"externalId", l.ExternalID}, {"calendar", l.CalendarID}, {"domain", l.Domain}, {"reason", l.Reason}} {
		if kv[1] != "" {
			s += " " + kv[0] + "=" + kv[1]
		}
	}
	if l.Events != nil {
		s += " events=" + strconv.Itoa(*l.Events)
	}
	if l.Control != nil {
		s += " requestId=" + l.Control.RequestID + " action=" + l.Control.Action
		if l.Control.Duplicate {
			s += " (calsync had done it before)"
		}
	}
	return s
}

// describeAttrs names a message that did not decode, by its attributes.
func describeAttrs(attrs map[string]string) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(attrs)) {
		parts = append(parts, k+"="+strconv.Quote(attrs[k]))
	}
	return "{" + strings.Join(parts, " ") + "}"
}

// oneLine is err on one line (schema errors list their causes on several),
// cut to a few hundred bytes.
func oneLine(err error) string {
	s := strings.Join(strings.Fields(err.Error()), " ")
	if len(s) > 300 {
		s = strings.ToValidUTF8(s[:300], "") + "…"
	}
	return s
}
