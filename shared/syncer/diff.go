package syncer

import (
	"encoding/json"
	"reflect"
	"slices"

	"github.com/calsync/calsync/shared/messages"
	"github.com/calsync/calsync/shared/store"
)

// What changed in an updated event: the change message says which top-level
// Event fields differ from the mirror's previous version (changedFields) and,
// for the fields people ask about, what they were (previous). The previous
// version is the document the page's GetAll read anyway to compare etags
// (store.GetEventsKeeping keeps it for the events being replaced), so a diff
// costs no Firestore read; both sides are in the stored form (EventDoc: the
// API's JSON names, integers as int64), compared field by field.

// previousFields are the fields whose previous values a change carries.
var previousFields = []string{"start", "end", "status", "summary", "location", "recurrence"}

// diffEvent compares the stored previous document with the new one (both as
// store.EventDoc makes them; cur whole, not truncated). A previous document
// that had shed fields to fit Firestore makes the result Incomplete.
func diffEvent(prev, cur map[string]any) ([]string, *messages.Previous) {
	var changed []string
	for k, v := range cur {
		if store.IsDerived(k) {
			continue
		}
		if pv, ok := prev[k]; !ok || !reflect.DeepEqual(pv, v) {
			changed = append(changed, k)
		}
	}
	for k := range prev {
		if store.IsDerived(k) {
			continue
		}
		if _, ok := cur[k]; !ok {
			changed = append(changed, k)
		}
	}
	slices.Sort(changed)
	p := &messages.Previous{}
	if t, _ := prev[store.FieldTruncated].(bool); t {
		p.Incomplete = true
	}
	has := p.Incomplete
	for _, f := range previousFields {
		pv, ok := prev[f]
		if !ok || !slices.Contains(changed, f) {
			continue
		}
		switch f {
		case "status":
			p.Status, _ = pv.(string)
		case "summary":
			p.Summary, _ = pv.(string)
		case "location":
			p.Location, _ = pv.(string)
		default:
			raw, err := json.Marshal(pv)
			if err != nil {
				continue
			}
			switch f {
			case "start":
				p.Start = raw
			case "end":
				p.End = raw
			case "recurrence":
				p.Recurrence = raw
			}
		}
		has = true
	}
	if slices.Contains(changed, "attendees") {
		if r := responseChanges(prev["attendees"], cur["attendees"]); len(r) > 0 {
			p.AttendeeResponses, has = r, true
		}
	}
	if !has {
		p = nil
	}
	return changed, p
}

// responseChanges returns, per attendee whose responseStatus differs, the
// previous one ("" for an attendee who was not there). Attendees are named
// by email, or by id when they have none.
func responseChanges(prev, cur any) map[string]string {
	before, after := responses(prev), responses(cur)
	out := map[string]string{}
	for who, st := range after {
		if was, ok := before[who]; !ok || was != st {
			out[who] = was
		}
	}
	for who, was := range before {
		if _, ok := after[who]; !ok {
			out[who] = was
		}
	}
	return out
}

func responses(v any) map[string]string {
	list, _ := v.([]any)
	out := make(map[string]string, len(list))
	for _, a := range list {
		m, _ := a.(map[string]any)
		who, _ := m["email"].(string)
		if who == "" {
			who, _ = m["id"].(string)
		}
		if who == "" {
			continue
		}
		st, _ := m["responseStatus"].(string)
		out[who] = st
	}
	return out
}
