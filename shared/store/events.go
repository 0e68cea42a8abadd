package store

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"cloud.google.com/go/firestore"
	"golang.org/x/sync/errgroup"
	"google.golang.org/api/calendar/v3"
	"google.golang.org/api/iterator"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Derived fields added to every event document next to Google's own fields.
// None of them is a field of the Calendar API's Event resource.
const (
	FieldStartTime = "startTime" // timestamp: start.dateTime, or start.date at 00:00 in the calendar's zone
	FieldEndTime   = "endTime"   // timestamp: end.dateTime, or end.date at 00:00 in the calendar's zone
	FieldSyncedAt  = "syncedAt"  // timestamp: when calsync wrote the document
)

// FieldTruncated marks a document that had to shed fields to fit Firestore's
// 1 MiB document limit (see MaxEventJSON).
const FieldTruncated = "calsyncTruncated"

// FieldProblem marks an event Firestore could not store as Google sent it:
// the document holds what could be stored, and says why (ProblemTooLarge,
// ProblemTimeOutOfRange, or ProblemRejected with Firestore's reason). The
// change feed still carries the whole event.
const FieldProblem = "calsyncProblem"

// Values of FieldProblem.
const (
	ProblemTooLarge       = "too_large"         // over MaxEventJSON even without description and attendees
	ProblemTimeOutOfRange = "time_out_of_range" // a start or end outside Firestore's timestamps (years 1-9999)
	ProblemRejected       = "rejected"          // Firestore refused the document
)

// MaxEventJSON bounds the event JSON stored in one document: Firestore
// refuses documents over 1 MiB, and one refused document would block its
// calendar's sync forever. A bigger event is stored without its largest
// free-text and list fields (description, attendees), with FieldTruncated
// set; the change message still carries the whole event.
const MaxEventJSON = 900 * 1024

var derived = []string{FieldStartTime, FieldEndTime, FieldSyncedAt}

// Firestore stores timestamps from 0001-01-01 to 9999-12-31 (UTC).
var (
	minTimestamp = time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC)
	maxTimestamp = time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC)
)

// EventDoc turns an event, as Google returns it, into the document stored at
// calendars/{key}/events/{id}: the API's JSON field names and values (integers
// as int64, so sequence stays an integer) plus the derived fields. loc is the
// calendar's time zone (nil: UTC), used for all-day dates.
func EventDoc(ev *calendar.Event, loc *time.Location, syncedAt time.Time) (map[string]any, error) {
	raw, err := json.Marshal(ev)
	if err != nil {
		return nil, fmt.Errorf("event %s: %w", ev.Id, err)
	}
	doc, err := decodeJSONMap(raw)
	if err != nil {
		return nil, fmt.Errorf("event %s: %w", ev.Id, err)
	}
	if len(raw) > MaxEventJSON {
		delete(doc, "description")
		delete(doc, "attendees")
		doc[FieldTruncated] = true
		if rest, _ := json.Marshal(doc); len(rest) > MaxEventJSON {
			doc = MinimalEventDoc(ev, ProblemTooLarge)
		}
	}
	start := ev.Start
	if start == nil {
		start = ev.OriginalStartTime // a cancelled occurrence carries only this
	}
	for field, when := range map[string]*calendar.EventDateTime{FieldStartTime: start, FieldEndTime: ev.End} {
		t, ok := eventTime(when, loc)
		switch {
		case !ok:
		case t.Before(minTimestamp) || t.After(maxTimestamp):
			// Firestore would refuse the whole document: store it without
			// the derived field, flagged.
			doc[FieldProblem] = ProblemTimeOutOfRange
		default:
			doc[field] = t
		}
	}
	doc[FieldSyncedAt] = syncedAt.UTC()
	return doc, nil
}

// MinimalEventDoc is what is stored of an event Firestore cannot take whole:
// its identity, version and timing fields as Google sent them (no derived
// timestamps), flagged with problem. Never refused: its strings are short and
// its values plain.
func MinimalEventDoc(ev *calendar.Event, problem string) map[string]any {
	doc := map[string]any{"kind": "calendar#event", "id": ev.Id, "etag": ev.Etag, "status": ev.Status,
		"updated": ev.Updated, "sequence": ev.Sequence, FieldTruncated: true, FieldProblem: problem}
	if ev.RecurringEventId != "" {
		doc["recurringEventId"] = ev.RecurringEventId
	}
	if n := min(len(ev.Recurrence), 50); n > 0 {
		rules := make([]any, n)
		for i, r := range ev.Recurrence[:n] {
			rules[i] = clip(r, 1024)
		}
		doc["recurrence"] = rules
	}
	for name, t := range map[string]*calendar.EventDateTime{"start": ev.Start, "end": ev.End, "originalStartTime": ev.OriginalStartTime} {
		if t != nil {
			doc[name] = map[string]any{"date": clip(t.Date, 64), "dateTime": clip(t.DateTime, 64), "timeZone": clip(t.TimeZone, 64)}
		}
	}
	if ev.Summary != "" {
		doc["summary"] = clip(ev.Summary, 1024)
	}
	return doc
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// EventJSON is the inverse of EventDoc: the event's JSON as Google sent it
// (derived fields removed; object keys sorted).
func EventJSON(doc map[string]any) ([]byte, error) {
	clean := make(map[string]any, len(doc))
	for k, v := range doc {
		clean[k] = v
	}
	for _, k := range derived {
		delete(clean, k)
	}
	return json.Marshal(unescapeKeys(clean))
}

func unescapeKeys(v any) any {
	switch x := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[unescapeKey(k)] = unescapeKeys(e)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = unescapeKeys(e)
		}
		return out
	}
	return v
}

// decodeJSONMap decodes a JSON object keeping integers as int64 (and other
// numbers as float64), the types Firestore stores faithfully.
func decodeJSONMap(raw []byte) (map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		return nil, err
	}
	return convertNumbers(m).(map[string]any), nil
}

// KeyEscape prefixes map keys Firestore cannot store as field names: the
// empty key and reserved names (__x__), and, so that the escape reverses,
// keys that already start with it. Event JSON has free-form keys only in
// extendedProperties.
const KeyEscape = "~"

func escapeKey(k string) string {
	if k == "" || strings.HasPrefix(k, KeyEscape) || (len(k) >= 4 && strings.HasPrefix(k, "__") && strings.HasSuffix(k, "__")) {
		return KeyEscape + k
	}
	return k
}

func unescapeKey(k string) string { return strings.TrimPrefix(k, KeyEscape) }

func convertNumbers(v any) any {
	switch x := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[escapeKey(k)] = convertNumbers(e)
		}
		return out
	case []any:
		for i, e := range x {
			x[i] = convertNumbers(e)
		}
		return x
	case json.Number:
		if i, err := x.Int64(); err == nil {
			return i
		}
		f, _ := x.Float64()
		return f
	}
	return v
}

// eventTime is the instant of an EventDateTime: dateTime as given, or an
// all-day date at 00:00 in loc (UTC when loc is nil).
func eventTime(t *calendar.EventDateTime, loc *time.Location) (time.Time, bool) {
	if t == nil {
		return time.Time{}, false
	}
	if t.DateTime != "" {
		if v, err := time.Parse(time.RFC3339, t.DateTime); err == nil {
			return v.UTC(), true
		}
		return time.Time{}, false
	}
	if t.Date != "" {
		if loc == nil {
			loc = time.UTC
		}
		if v, err := time.ParseInLocation(time.DateOnly, t.Date, loc); err == nil {
			return v.UTC(), true
		}
	}
	return time.Time{}, false
}

// EventMeta is what the syncer needs to know of a stored event.
type EventMeta struct {
	ID               string
	Exists           bool
	Etag             string
	Updated          string // RFC 3339, as Google sent it
	Sequence         int64
	Status           string
	RecurringEventID string
	Series           bool // a recurring series master (has recurrence)
	// UpdateTime and Fields are the stored document's update time and
	// top-level fields: a replacement planned from this version is written
	// only over it (EventWrite.Replaces).
	UpdateTime time.Time
	Fields     []string
	// Doc is the stored document, kept by GetEventsKeeping only for events
	// about to be replaced (their listed etag differs): the previous version
	// a change message's diff is computed from. Nil otherwise.
	Doc map[string]any
}

// metaAndData reads a document's meta and returns its data too (converted
// once from the snapshot).
func metaAndData(snap *firestore.DocumentSnapshot) (EventMeta, map[string]any) {
	m := EventMeta{ID: snap.Ref.ID, Exists: snap.Exists()}
	if !m.Exists {
		return m, nil
	}
	d := snap.Data()
	m.UpdateTime = snap.UpdateTime
	m.Fields = make([]string, 0, len(d))
	for k := range d {
		m.Fields = append(m.Fields, k)
	}
	m.Etag, _ = d["etag"].(string)
	m.Updated, _ = d["updated"].(string)
	m.Sequence, _ = d["sequence"].(int64)
	m.Status, _ = d["status"].(string)
	m.RecurringEventID, _ = d["recurringEventId"].(string)
	_, m.Series = d["recurrence"]
	return m, d
}

// GetEvents reads the stored state of the given events in one batch (GetAll).
func (s *Store) GetEvents(ctx context.Context, key string, ids []string) (map[string]EventMeta, error) {
	return s.GetEventsKeeping(ctx, key, ids, nil)
}

// GetEventsKeeping is GetEvents that also keeps the whole stored document
// (EventMeta.Doc) of each event whose stored etag differs from the one given
// for it in newEtags: the events about to be updated, whose previous version
// a change message compares against. GetAll reads whole documents anyway, so
// this costs no Firestore read; the documents of unchanged events are
// dropped at once, so what stays is at most the page being written.
func (s *Store) GetEventsKeeping(ctx context.Context, key string, ids []string, newEtags map[string]string) (map[string]EventMeta, error) {
	out := make(map[string]EventMeta, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	col := s.Events(key)
	refs := make([]*firestore.DocumentRef, len(ids))
	for i, id := range ids {
		refs[i] = col.Doc(id)
	}
	snaps, err := s.Client.GetAll(ctx, refs)
	if err != nil {
		return nil, err
	}
	for _, snap := range snaps {
		m, d := metaAndData(snap)
		if etag, ok := newEtags[m.ID]; ok && m.Exists && etag != m.Etag {
			m.Doc = d
		}
		out[snap.Ref.ID] = m
	}
	return out, nil
}

// EventFields is an event as EventDoc would store it, without the derived
// fields and never truncated: what a diff compares when the stored version
// of the new event had to shed fields.
func EventFields(ev *calendar.Event) (map[string]any, error) {
	raw, err := json.Marshal(ev)
	if err != nil {
		return nil, fmt.Errorf("event %s: %w", ev.Id, err)
	}
	return decodeJSONMap(raw)
}

// IsDerived reports whether a document field is calsync's, not the event's:
// the derived timestamps and the problem flags.
func IsDerived(field string) bool {
	switch field {
	case FieldStartTime, FieldEndTime, FieldSyncedAt, FieldTruncated, FieldProblem:
		return true
	}
	return false
}

// Exceptions lists the stored exceptions of a recurring series (documents
// whose recurringEventId is masterID), reading only their etag.
func (s *Store) Exceptions(ctx context.Context, key, masterID string) ([]EventMeta, error) {
	it := s.Events(key).Where("recurringEventId", "==", masterID).Select("etag").Documents(ctx)
	defer it.Stop()
	var out []EventMeta
	for {
		snap, err := it.Next()
		if err == iterator.Done {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		m := EventMeta{ID: snap.Ref.ID, Exists: true, RecurringEventID: masterID}
		m.Etag, _ = snap.Data()["etag"].(string)
		out = append(out, m)
	}
}

// ForEachEvent calls fn with the id and etag of every stored event of a
// calendar, reading only the etag field (a Select projection).
func (s *Store) ForEachEvent(ctx context.Context, key string, fn func(id, etag string) error) error {
	it := s.Events(key).Select("etag").Documents(ctx)
	defer it.Stop()
	for {
		snap, err := it.Next()
		if err == iterator.Done {
			return nil
		}
		if err != nil {
			return err
		}
		etag, _ := snap.Data()["etag"].(string)
		if err := fn(snap.Ref.ID, etag); err != nil {
			return err
		}
	}
}

// EventWrite is one write of an event document: Doc set, or deleted when
// Doc is nil. Delta is its change to eventCount: +1 for a document created,
// -1 for one deleted, 0 for one replaced.
type EventWrite struct {
	ID    string
	Doc   map[string]any
	Delta int64
	// Replaces, for a replacement, is the stored version it was planned
	// from (GetEvents): the document is replaced only if it is still that
	// version (its update time), so no write lands twice or over another.
	Replaces EventMeta
}

// Rejected is an event write Firestore refused on its own (InvalidArgument:
// e.g. a value it cannot store). Nothing of it was written.
type Rejected struct {
	ID  string
	Err error
}

// Write batching: a page's writes go out as WriteBatch commits of at most
// maxBatch documents, writeParallel at a time. (Measured on the emulator:
// BulkWriter, which sends 20 writes per request behind a rate limiter, was 4-15x
// slower for 200-2,500 documents.)
const (
	maxBatch      = 500
	minBatch      = 20
	writeParallel = 8
)

// WriteEvents applies writes under the lease l in parallel batched commits.
// Documents are replaced whole, never merged. Each batch is atomic and
// fenced (fence.go) and adds its own writes to the calendar's eventCount and
// changeCount, so the counters are exact whatever fails; every write carries
// a precondition a second application fails (a create, a counted delete, a
// replacement over the version it was planned from), so a batch applied
// with its answer lost is recognised by reading it back, never counted
// twice. A failed call may have applied some batches: callers re-read and
// re-plan rather than resend.
// A batch Firestore refuses as invalid is retried write by write, and the
// writes refused on their own come back as rejected, the others applied.
// ErrLeaseLost once another worker took the lease.
func (s *Store) WriteEvents(ctx context.Context, key string, l Lease, writes []EventWrite) (rejected []Rejected, err error) {
	if len(writes) == 0 {
		return nil, nil
	}
	size := min(max((len(writes)+writeParallel-1)/writeParallel, minBatch), maxBatch)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(writeParallel)
	var mu sync.Mutex
	for i := 0; i < len(writes); i += size {
		part := writes[i:min(i+size, len(writes))]
		g.Go(func() error {
			err := s.writeBatch(gctx, key, l, part)
			if status.Code(err) != codes.InvalidArgument || len(part) == 1 {
				if status.Code(err) == codes.InvalidArgument {
					mu.Lock()
					rejected = append(rejected, Rejected{ID: part[0].ID, Err: err})
					mu.Unlock()
					return nil
				}
				return err
			}
			for _, w := range part { // find the refused one(s)
				if err := s.writeBatch(gctx, key, l, []EventWrite{w}); status.Code(err) == codes.InvalidArgument {
					mu.Lock()
					rejected = append(rejected, Rejected{ID: w.ID, Err: err})
					mu.Unlock()
				} else if err != nil {
					return err
				}
			}
			return nil
		})
	}
	return rejected, g.Wait()
}

// writeBatch commits writes, the fence and their counter increments at once.
// A batch refused for contention (ABORTED: parallel batches all update the
// fence and the calendar's counters; Firestore's lock wait ran out) is
// committed again after a jittered pause, once the read-back says it did
// not land: the whole round would otherwise start over for it.
func (s *Store) writeBatch(ctx context.Context, key string, l Lease, writes []EventWrite) error {
	for attempt := 1; ; attempt++ {
		err := s.writeBatchOnce(ctx, key, l, writes)
		if status.Code(err) != codes.Aborted || errors.Is(err, ErrLeaseLost) || attempt == 5 {
			return err
		}
		pause := time.Duration(50<<attempt)*time.Millisecond + rand.N(100*time.Millisecond)
		select {
		case <-ctx.Done():
			return err
		case <-time.After(pause):
		}
	}
}

func (s *Store) writeBatchOnce(ctx context.Context, key string, l Lease, writes []EventWrite) error {
	b, err := s.fenced(key, l)
	if err != nil {
		return err
	}
	col := s.Events(key)
	var delta int64
	for _, w := range writes {
		// A document counted in or out carries the precondition that makes
		// it so: the client's retry of a batch that landed then fails as a
		// whole instead of counting it twice (eventCount stays exact).
		switch {
		case w.Doc == nil && w.Delta < 0:
			b.Delete(col.Doc(w.ID), firestore.Exists)
		case w.Doc == nil:
			b.Delete(col.Doc(w.ID))
		case w.Delta > 0:
			b.Create(col.Doc(w.ID), w.Doc)
		case w.Replaces.Exists && !w.Replaces.UpdateTime.IsZero():
			b.Update(col.Doc(w.ID), replacement(w.Doc, w.Replaces.Fields), firestore.LastUpdateTime(w.Replaces.UpdateTime))
		default:
			b.Set(col.Doc(w.ID), w.Doc)
		}
		delta += w.Delta
	}
	ups := []firestore.Update{{Path: "changeCount", Value: firestore.Increment(len(writes))}}
	if delta != 0 {
		ups = append(ups, firestore.Update{Path: "eventCount", Value: firestore.Increment(delta)})
	}
	b.Update(s.CalendarRef(key), ups)
	_, err = b.Commit(ctx)
	if err != nil && status.Code(err) != codes.InvalidArgument { // InvalidArgument: a document refused, nothing applied
		// A precondition failed (the fence's, or a document's: the
		// client's retry met the first attempt), or the outcome is unknown.
		err = s.resolveBatch(ctx, key, l, writes, err)
	}
	if err != nil {
		return fmt.Errorf("write %d events from %s: %w", len(writes), writes[0].ID, err)
	}
	return nil
}

// resolveBatch decides a batch of event writes whose outcome is unknown (or
// whose retry met it: a create that exists, a delete that is gone) from what
// Firestore holds: nil if every document is as the batch left it under a
// fence that still holds (a batch is atomic: it landed, counted once),
// ErrLeaseLost if the fence moved, err otherwise.
func (s *Store) resolveBatch(ctx context.Context, key string, l Lease, writes []EventWrite, err error) error {
	if !canReadBack(ctx) {
		return err
	}
	refs := []*firestore.DocumentRef{s.fenceRef(key)}
	for _, w := range writes {
		refs = append(refs, s.Events(key).Doc(w.ID))
	}
	snaps, rerr := s.Client.GetAll(ctx, refs)
	if rerr != nil {
		return err
	}
	if !s.Unfenced && !holdsFence(snaps[0], l) {
		return fmt.Errorf("%w (fence moved: another worker took the lease): %v", ErrLeaseLost, err)
	}
	for i, w := range writes {
		if !written(snaps[i+1], w) {
			return err
		}
	}
	return nil
}

// replacement is the update that makes a document with fields old hold
// exactly doc: every field of doc, and old's others deleted. (A Set cannot
// carry a precondition.)
func replacement(doc map[string]any, old []string) []firestore.Update {
	ups := make([]firestore.Update, 0, len(doc)+len(old))
	for k, v := range doc {
		ups = append(ups, firestore.Update{FieldPath: firestore.FieldPath{k}, Value: v})
	}
	for _, k := range old {
		if _, ok := doc[k]; !ok {
			ups = append(ups, firestore.Update{FieldPath: firestore.FieldPath{k}, Value: firestore.Delete})
		}
	}
	return ups
}

// written reports whether snap is what w leaves: gone for a delete, else a
// document of the same version (etag) and write (syncedAt).
func written(snap *firestore.DocumentSnapshot, w EventWrite) bool {
	if w.Doc == nil || !snap.Exists() {
		return (w.Doc == nil) != snap.Exists()
	}
	d := snap.Data()
	if d["etag"] != w.Doc["etag"] {
		return false
	}
	if at, ok := w.Doc[FieldSyncedAt].(time.Time); ok {
		got, _ := d[FieldSyncedAt].(time.Time)
		return got.Equal(at.Truncate(time.Microsecond)) // Firestore keeps microseconds
	}
	return true
}
