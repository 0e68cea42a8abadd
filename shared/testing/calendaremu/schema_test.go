package calendaremu

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/api/calendar/v3"
)

// discovery is the part of calendar-api.json the schema check reads.
type discovery struct {
	Schemas   map[string]*jschema `json:"schemas"`
	Resources map[string]struct {
		Methods map[string]struct {
			ID       string   `json:"id"`
			Scopes   []string `json:"scopes"`
			Response *struct {
				Ref string `json:"$ref"`
			} `json:"response"`
		} `json:"methods"`
	} `json:"resources"`
}

type jschema struct {
	Type                 string              `json:"type"`
	Format               string              `json:"format"`
	Ref                  string              `json:"$ref"`
	Properties           map[string]*jschema `json:"properties"`
	AdditionalProperties *jschema            `json:"additionalProperties"`
	Items                *jschema            `json:"items"`
}

// readDiscovery reads a discovery document of google.golang.org/api.
func readDiscovery(t *testing.T, rel ...string) []byte {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "google.golang.org/api").Output()
	if err != nil {
		t.Fatalf("go list google.golang.org/api: %v", err)
	}
	data, err := os.ReadFile(filepath.Join(append([]string{strings.TrimSpace(string(out))}, rel...)...))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func loadDiscovery(t *testing.T) *discovery {
	t.Helper()
	data := readDiscovery(t, "calendar", "v3", "calendar-api.json")
	var d discovery
	if err := json.Unmarshal(data, &d); err != nil {
		t.Fatal(err)
	}
	return &d
}

var dateRE = regexp.MustCompile(`^\d{4}-\d\d-\d\d$`)

// check validates v against s: no unknown fields, the right JSON types, int64
// as decimal strings, date-time as RFC 3339.
func (d *discovery) check(s *jschema, v any, path string) []string {
	if s.Ref != "" {
		ref := d.Schemas[s.Ref]
		if ref == nil {
			return []string{path + ": unknown $ref " + s.Ref}
		}
		return d.check(ref, v, path)
	}
	bad := func(msg string) []string { return []string{fmt.Sprintf("%s: %s (got %T %v)", path, msg, v, v)} }
	switch s.Type {
	case "string":
		str, ok := v.(string)
		if !ok {
			return bad("want string")
		}
		switch s.Format {
		case "int64", "uint64":
			if _, err := strconv.ParseInt(str, 10, 64); err != nil {
				return bad("want int64 string")
			}
		case "date-time":
			if _, err := time.Parse(time.RFC3339Nano, str); err != nil {
				return bad("want RFC 3339 date-time")
			}
		case "date":
			if !dateRE.MatchString(str) {
				return bad("want date")
			}
		}
	case "integer":
		n, ok := v.(json.Number)
		if !ok {
			return bad("want integer")
		}
		i, err := n.Int64()
		if err != nil || (s.Format == "int32" && (i > 1<<31-1 || i < -(1<<31))) {
			return bad("want " + s.Format)
		}
	case "number":
		if _, ok := v.(json.Number); !ok {
			return bad("want number")
		}
	case "boolean":
		if _, ok := v.(bool); !ok {
			return bad("want boolean")
		}
	case "array":
		arr, ok := v.([]any)
		if !ok {
			return bad("want array")
		}
		var errs []string
		for i, e := range arr {
			errs = append(errs, d.check(s.Items, e, fmt.Sprintf("%s[%d]", path, i))...)
		}
		return errs
	case "object":
		obj, ok := v.(map[string]any)
		if !ok {
			return bad("want object")
		}
		var errs []string
		for k, e := range obj {
			var sub *jschema
			if s.Properties != nil {
				sub = s.Properties[k]
			}
			if sub == nil {
				sub = s.AdditionalProperties
			}
			if sub == nil {
				errs = append(errs, path+": unknown field "+strconv.Quote(k))
				continue
			}
			errs = append(errs, d.check(sub, e, path+"."+k)...)
		}
		return errs
	case "any", "":
	default:
		return bad("unknown schema type " + s.Type)
	}
	return nil
}

// exerciseAll calls every implemented method at least once.
func exerciseAll(t *testing.T, svc *calendar.Service, hook string) {
	t.Helper()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	c, err := svc.Calendars.Insert(&calendar.Calendar{Summary: "schema", TimeZone: "America/New_York"}).Do()
	must(err)
	_, err = svc.Calendars.Get(c.Id).Do()
	must(err)
	_, err = svc.CalendarList.List().Do()
	must(err)
	_, err = svc.CalendarList.Get(c.Id).Do()
	must(err)
	must(svc.CalendarList.Delete(c.Id).Do())
	_, err = svc.CalendarList.Insert(&calendar.CalendarListEntry{Id: c.Id}).Do()
	must(err)
	lch, err := svc.CalendarList.Watch(&calendar.Channel{Id: "schema-list-" + hook, Type: "web_hook", Address: "http://127.0.0.1:1/hook"}).Do()
	must(err)
	must(svc.Channels.Stop(&calendar.Channel{Id: lch.Id, ResourceId: lch.ResourceId}).Do())
	full := &calendar.Event{Summary: "all fields", Description: "d", Location: "l", ColorId: "3",
		Start:        &calendar.EventDateTime{DateTime: "2026-05-01T09:00:00-04:00", TimeZone: "America/New_York"},
		End:          &calendar.EventDateTime{DateTime: "2026-05-01T10:00:00-04:00", TimeZone: "America/New_York"},
		Recurrence:   []string{"RRULE:FREQ=WEEKLY;BYDAY=FR,MO;UNTIL=20260701T000000Z"},
		Attendees:    []*calendar.EventAttendee{{Email: "a@x.test", DisplayName: "A", Optional: true, AdditionalGuests: 2}, {Email: "b@x.test"}},
		Reminders:    &calendar.EventReminders{Overrides: []*calendar.EventReminder{{Method: "popup", Minutes: 10}}, ForceSendFields: []string{"UseDefault"}},
		Transparency: "transparent", Visibility: "private", GuestsCanModify: true,
		Source:             &calendar.EventSource{Title: "t", Url: "https://x.test"},
		ExtendedProperties: &calendar.EventExtendedProperties{Private: map[string]string{"a.b": "1"}, Shared: map[string]string{"c": "2"}}}
	ev, err := svc.Events.Insert(c.Id, full).MaxAttendees(1).Do()
	must(err)
	_, err = svc.Events.Get(c.Id, ev.Id).Do()
	must(err)
	_, err = svc.Events.Patch(c.Id, ev.Id, &calendar.Event{Summary: "patched"}).Do()
	must(err)
	inst, err := svc.Events.Instances(c.Id, ev.Id).MaxResults(3).Do()
	must(err)
	_, err = svc.Events.Update(c.Id, inst.Items[0].Id, inst.Items[0]).Do()
	must(err)
	must(svc.Events.Delete(c.Id, inst.Items[1].Id).Do())
	allDay, err := svc.Events.Insert(c.Id, &calendar.Event{Summary: "day", Start: &calendar.EventDateTime{Date: "2026-05-02"}, End: &calendar.EventDateTime{Date: "2026-05-04"}}).Do()
	must(err)
	must(svc.Events.Delete(c.Id, allDay.Id).Do())
	for _, call := range []*calendar.EventsListCall{
		svc.Events.List(c.Id).ShowDeleted(true),
		svc.Events.List(c.Id).SingleEvents(true).OrderBy("startTime").MaxResults(5),
		svc.Events.List(c.Id).OrderBy("updated"),
	} {
		res, err := call.Do()
		must(err)
		if res.NextSyncToken != "" {
			_, err = svc.Events.List(c.Id).SyncToken(res.NextSyncToken).Do()
			must(err)
		}
	}
	ch, err := svc.Events.Watch(c.Id, &calendar.Channel{Id: "schema-" + hook, Type: "web_hook", Address: "http://127.0.0.1:1/hook", Token: "t"}).Do()
	must(err)
	must(svc.Channels.Stop(&calendar.Channel{Id: ch.Id, ResourceId: ch.ResourceId}).Do())
	must(svc.Calendars.Delete(c.Id).Do())
}

func TestResponsesMatchDiscovery(t *testing.T) {
	d := loadDiscovery(t)
	respSchema := map[string]string{}
	for rname, r := range d.Resources {
		for mname, m := range r.Methods {
			if m.Response != nil {
				respSchema[rname+"."+mname] = m.Response.Ref
			}
		}
	}
	_, _, svc := startTest(t, Options{})
	exerciseAll(t, svc, "a")
	capMu.Lock()
	seen := append([]captured(nil), caps...)
	capMu.Unlock()
	checked := map[string]int{}
	for _, c := range seen {
		if c.status >= 300 {
			continue
		}
		ref, ok := respSchema[c.method]
		if !ok {
			if len(c.body) != 0 {
				t.Errorf("%s: body for a method without a response schema", c.method)
			}
			checked[c.method]++
			continue
		}
		dec := json.NewDecoder(bytes.NewReader(c.body))
		dec.UseNumber()
		var v any
		if err := dec.Decode(&v); err != nil {
			t.Errorf("%s: invalid JSON: %v", c.method, err)
			continue
		}
		for _, e := range d.check(&jschema{Ref: ref}, v, c.method) {
			t.Error(e)
		}
		checked[c.method]++
	}
	want := []string{"calendarList.delete", "calendarList.get", "calendarList.insert", "calendarList.list", "calendarList.watch", "calendars.delete", "calendars.get", "calendars.insert",
		"channels.stop", "events.delete", "events.get", "events.insert", "events.instances", "events.list",
		"events.patch", "events.update", "events.watch"}
	var missing []string
	for _, m := range want {
		if checked[m] == 0 {
			missing = append(missing, m)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("methods never checked: %v", missing)
	}
	t.Logf("checked responses: %v", checked)
}

func TestErrorBodyShape(t *testing.T) {
	_, _, svc := startTest(t, Options{})
	_, err := svc.Events.Get("primary", "nosuchevent").Context(context.Background()).Do()
	wantErr(t, err, 404, "notFound")
	e := errNotFound()
	var body map[string]map[string]any
	if err := json.Unmarshal(e.body(), &body); err != nil {
		t.Fatal(err)
	}
	inner := body["error"]
	if inner["code"] != float64(404) || inner["message"] != "Not Found" || inner["status"] != "NOT_FOUND" {
		t.Fatalf("error body: %v", inner)
	}
	item := inner["errors"].([]any)[0].(map[string]any)
	if item["domain"] != "global" || item["reason"] != "notFound" {
		t.Fatalf("error item: %v", item)
	}
}

// The scopes each emulated method accepts are those the discovery document lists.
func TestMethodScopesMatchDiscovery(t *testing.T) {
	d := loadDiscovery(t)
	for res, r := range d.Resources {
		for name := range r.Methods {
			if _, ok := methodScopes[res+"."+name]; !ok {
				t.Errorf("%s.%s: missing from the scope table", res, name)
			}
		}
	}
	for method, got := range methodScopes {
		res, name, _ := strings.Cut(method, ".")
		m, ok := d.Resources[res].Methods[name]
		if !ok {
			t.Errorf("%s: not in the discovery document", method)
			continue
		}
		var want []string
		for _, s := range m.Scopes {
			want = append(want, strings.TrimPrefix(s, scopePrefix))
		}
		if strings.Join(want, " ") != strings.Join(got, " ") {
			t.Errorf("%s: scopes %v, discovery says %v", method, got, want)
		}
	}
}

// The Directory methods take the scopes admin-api.json lists.
func TestDirectoryScopesMatchDiscovery(t *testing.T) {
	type node struct {
		Resources map[string]*node
		Methods   map[string]struct{ Scopes []string }
	}
	var root node
	if err := json.Unmarshal(readDiscovery(t, "admin", "directory", "v1", "admin-api.json"), &root); err != nil {
		t.Fatal(err)
	}
	for method, got := range directoryScopes {
		parts := strings.Split(method, ".")
		n := &root
		for _, r := range parts[:len(parts)-1] {
			if n = n.Resources[r]; n == nil {
				t.Fatalf("%s: not in admin-api.json", method)
			}
		}
		want := n.Methods[parts[len(parts)-1]].Scopes
		if strings.Join(want, " ") != strings.Join(got, " ") {
			t.Errorf("%s: scopes %v, discovery says %v", method, got, want)
		}
	}
}
