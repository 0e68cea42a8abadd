package calendaremu

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"
	admin "google.golang.org/api/admin/directory/v1"
	"google.golang.org/api/calendar/v3"
	"google.golang.org/api/option"
)

// delegated is a token source for domain-wide delegation as subject, the
// way Google runs it without a key: the emulator's IAM signJwt signs the
// assertion as client, its token endpoint's JWT-bearer grant exchanges it.
func delegated(t *testing.T, base, client, subject string, scopes ...string) oauth2.TokenSource {
	t.Helper()
	return oauth2.ReuseTokenSource(nil, tokenFunc(func() (*oauth2.Token, error) {
		now := time.Now()
		assertion, err := signJwt(base, client, map[string]any{"iss": client, "sub": subject, "scope": strings.Join(scopes, " "),
			"aud": GoogleTokenAudience, "iat": now.Unix(), "exp": now.Add(time.Hour).Unix()})
		if err != nil {
			return nil, err
		}
		cfg := &oauth2.Config{Endpoint: oauth2.Endpoint{TokenURL: base + "/token", AuthStyle: oauth2.AuthStyleInParams}}
		return cfg.Exchange(context.Background(), "", oauth2.SetAuthURLParam("grant_type", jwtBearerGrant),
			oauth2.SetAuthURLParam("assertion", assertion))
	}))
}

// signJwt has the emulator's IAM sign claims as client.
func signJwt(base, client string, claims map[string]any) (string, error) {
	payload, _ := json.Marshal(claims)
	body, _ := json.Marshal(map[string]string{"payload": string(payload)})
	resp, err := http.Post(base+"/v1/projects/-/serviceAccounts/"+client+":signJwt", "application/json", bytes.NewReader(body))
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var signed struct{ SignedJwt string }
	if err := json.NewDecoder(resp.Body).Decode(&signed); err != nil || signed.SignedJwt == "" {
		return "", fmt.Errorf("signJwt: %d %v", resp.StatusCode, err)
	}
	return signed.SignedJwt, nil
}

type tokenFunc func() (*oauth2.Token, error)

func (f tokenFunc) Token() (*oauth2.Token, error) { return f() }

func directoryService(t *testing.T, base string, ts oauth2.TokenSource) *admin.Service {
	t.Helper()
	svc, err := admin.NewService(context.Background(), option.WithEndpoint(base+"/"), option.WithTokenSource(ts))
	if err != nil {
		t.Fatal(err)
	}
	return svc
}

const robot = "calsync@p.iam.gserviceaccount.com"

// workspaceFixture: corp.test with an admin, three users (one suspended,
// one deleted) and two rooms.
func workspaceFixture(t *testing.T, srv *Server) []Room {
	t.Helper()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(srv.CreateDomain("corp.test", "admin@corp.test"))
	for _, u := range []string{"ann@corp.test", "ben@corp.test", "cat@corp.test", "dan@corp.test"} {
		must(srv.AddDomainUser(u, false))
	}
	must(srv.SuspendUser("ben@corp.test", true))
	must(srv.DeleteDomainUser("dan@corp.test"))
	r1, err := srv.AddRoom("corp.test", "Room 1")
	must(err)
	r2, err := srv.AddRoom("corp.test", "Room 2")
	must(err)
	return []Room{r1, r2}
}

func TestDirectoryUsersAndRooms(t *testing.T) {
	srv, base, _ := startTest(t, Options{})
	srv.respHook = nil // the Calendar schema check is not for Directory answers (see below)
	rooms := workspaceFixture(t, srv)
	ctx := context.Background()
	dir := directoryService(t, base, delegated(t, base, robot, "admin@corp.test",
		admin.AdminDirectoryUserReadonlyScope, admin.AdminDirectoryResourceCalendarReadonlyScope))

	var got []string
	err := dir.Users.List().Customer("my_customer").MaxResults(2).Pages(ctx, func(u *admin.Users) error {
		if len(u.Users) > 2 {
			return fmt.Errorf("page of %d", len(u.Users))
		}
		for _, x := range u.Users {
			got = append(got, fmt.Sprintf("%s:%v:%v", x.PrimaryEmail, x.Suspended, x.IsAdmin))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := "admin@corp.test:false:true,ann@corp.test:false:false,ben@corp.test:true:false,cat@corp.test:false:false"; strings.Join(got, ",") != want {
		t.Fatalf("users.list: %v", got)
	}
	active, err := dir.Users.List().Domain("corp.test").Query("isSuspended=false").Do()
	if err != nil || len(active.Users) != 3 {
		t.Fatalf("isSuspended=false: %v %v", active, err)
	}
	// An admin narrowed to one organisational unit: the listing succeeds, shorter.
	_ = srv.SetOrgUnit("ann@corp.test", "/sales/east")
	_ = srv.SetOrgUnit("cat@corp.test", "/salesforce")
	if err := srv.NarrowListing("corp.test", "/sales"); err != nil {
		t.Fatal(err)
	}
	narrow, err := dir.Users.List().Domain("corp.test").Do()
	if err != nil || len(narrow.Users) != 1 || narrow.Users[0].PrimaryEmail != "ann@corp.test" {
		t.Fatalf("narrowed listing: %v %v", narrow, err)
	}
	_ = srv.NarrowListing("corp.test", "")
	if all, err := dir.Users.List().Domain("corp.test").Do(); err != nil || len(all.Users) != 4 {
		t.Fatalf("listing widened again: %v %v", all, err)
	}
	deleted, err := dir.Users.List().Customer("my_customer").ShowDeleted("true").Do()
	if err != nil || len(deleted.Users) != 1 || deleted.Users[0].PrimaryEmail != "dan@corp.test" || deleted.Users[0].DeletionTime == "" {
		t.Fatalf("showDeleted: %+v %v", deleted, err)
	}
	res, err := dir.Resources.Calendars.List("my_customer").Do()
	if err != nil || len(res.Items) != 2 || res.Items[0].ResourceEmail != rooms[0].Email || res.Items[1].ResourceId != rooms[1].ResourceID {
		t.Fatalf("resources.calendars.list: %+v %v", res, err)
	}

	// What Google answers otherwise.
	_, err = dir.Users.List().Do()
	wantErr(t, err, 400, "badRequest")
	_, err = dir.Users.List().Domain("elsewhere.test").Do()
	wantErr(t, err, 404, "notFound")
	_, err = dir.Users.List().Customer("my_customer").MaxResults(501).Do()
	wantErr(t, err, 400, "invalid")
	_, err = dir.Users.List().Customer("my_customer").Query("name:ann").Do()
	wantErr(t, err, 400, "invalid")
	notAdmin := directoryService(t, base, delegated(t, base, robot, "ann@corp.test", admin.AdminDirectoryUserReadonlyScope))
	_, err = notAdmin.Users.List().Customer("my_customer").Do()
	wantErr(t, err, 403, "forbidden")
	noScope := directoryService(t, base, delegated(t, base, robot, "admin@corp.test", calendar.CalendarReadonlyScope))
	_, err = noScope.Users.List().Customer("my_customer").Do()
	wantErr(t, err, 403, "insufficientPermissions")
	anon, _ := admin.NewService(ctx, option.WithEndpoint(base+"/"), option.WithoutAuthentication())
	_, err = anon.Users.List().Customer("my_customer").Do()
	wantErr(t, err, 401, "required")
	srv.FailNext("directory.users.list", 1, 503, "backendError")
	_, err = dir.Users.List().Customer("my_customer").Do()
	wantErr(t, err, 503, "backendError")

	// The admin reads room calendars; deleting a room deletes its calendar
	// and stops its channels.
	cal := calendarAs(t, base, delegated(t, base, robot, "admin@corp.test", calendar.CalendarReadonlyScope))
	if _, err := cal.Events.List(rooms[0].Email).Do(); err != nil {
		t.Fatalf("admin reads the room: %v", err)
	}
	ann := calendarAs(t, base, delegated(t, base, robot, "ann@corp.test", calendar.CalendarReadonlyScope))
	_, err = ann.Events.List(rooms[0].Email).Do()
	wantErr(t, err, 404, "notFound")
	rc := newReceiver(t)
	if _, err := cal.Events.Watch(rooms[0].Email, &calendar.Channel{Id: "room-1", Type: "web_hook", Address: rc.URL}).Do(); err != nil {
		t.Fatal(err)
	}
	if err := srv.DeleteRoom("corp.test", rooms[0].ResourceID); err != nil {
		t.Fatal(err)
	}
	_, err = cal.Events.List(rooms[0].Email).Do()
	wantErr(t, err, 404, "notFound")
	res, _ = dir.Resources.Calendars.List("my_customer").Do()
	if len(res.Items) != 1 {
		t.Fatalf("rooms after delete: %d", len(res.Items))
	}
	for _, c := range srv.Channels() {
		if c.ID == "room-1" && !c.Stopped {
			t.Fatal("the deleted room's channel still lives")
		}
	}
}

func calendarAs(t *testing.T, base string, ts oauth2.TokenSource) *calendar.Service {
	t.Helper()
	svc, err := NewService(context.Background(), base, option.WithTokenSource(ts))
	if err != nil {
		t.Fatal(err)
	}
	return svc
}

func TestDelegationTokenErrors(t *testing.T) {
	srv, base, _ := startTest(t, Options{})
	srv.respHook = nil
	workspaceFixture(t, srv)
	tokenErr := func(subject string) (int, string) {
		t.Helper()
		_, err := delegated(t, base, robot, subject, calendar.CalendarReadonlyScope).Token()
		var re *oauth2.RetrieveError
		if !errors.As(err, &re) {
			t.Fatalf("%s: want *oauth2.RetrieveError, got %v", subject, err)
		}
		var body struct {
			Error string `json:"error"`
		}
		_ = json.Unmarshal(re.Body, &body)
		return re.Response.StatusCode, body.Error
	}
	for _, who := range []string{"ben@corp.test", "dan@corp.test", "nobody@corp.test"} {
		if code, e := tokenErr(who); code != 400 || e != "invalid_grant" {
			t.Errorf("%s: %d %s, want 400 invalid_grant", who, code, e)
		}
	}
	// Acting as ann reads ann's calendar, not the admin's.
	ann := calendarAs(t, base, delegated(t, base, robot, "ann@corp.test", calendar.CalendarReadonlyScope))
	if _, err := ann.Events.List("primary").Do(); err != nil {
		t.Fatal(err)
	}
	_, err := ann.Events.List("admin@corp.test").Do()
	wantErr(t, err, 404, "notFound")
	// Delegation limited to another client: unauthorized_client.
	if err := srv.SetDelegation("corp.test", "other@p.iam.gserviceaccount.com"); err != nil {
		t.Fatal(err)
	}
	if code, e := tokenErr("ann@corp.test"); code != 401 || e != "unauthorized_client" {
		t.Errorf("revoked delegation: %d %s", code, e)
	}
	// An expired assertion, and one that is not a JWT.
	now := time.Now()
	old, err := signJwt(base, robot, map[string]any{"iss": robot, "sub": "x@y.test", "scope": calendar.CalendarReadonlyScope,
		"aud": base + "/token", "iat": now.Add(-2 * time.Hour).Unix(), "exp": now.Add(-time.Hour).Unix()})
	if err != nil {
		t.Fatal(err)
	}
	for _, assertion := range []string{old, "not-a-jwt"} {
		resp, err := http.PostForm(base+"/token", url.Values{"grant_type": {jwtBearerGrant}, "assertion": {assertion}})
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 400 || !strings.Contains(string(body), `"invalid_grant"`) {
			t.Errorf("assertion %.20s…: %d %s", assertion, resp.StatusCode, body)
		}
	}
}

// The Directory answers match admin-api.json, as the Calendar answers match
// calendar-api.json (schema_test.go).
func TestDirectoryResponsesMatchDiscovery(t *testing.T) {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "google.golang.org/api").Output()
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(strings.TrimSpace(string(out)), "admin", "directory", "v1", "admin-api.json"))
	if err != nil {
		t.Fatal(err)
	}
	var d discovery
	if err := json.Unmarshal(data, &d); err != nil {
		t.Fatal(err)
	}
	srv, base, _ := startTest(t, Options{})
	workspaceFixture(t, srv)
	var bodies []captured
	var mu sync.Mutex
	srv.respHook = func(method string, status int, body []byte) {
		mu.Lock()
		bodies = append(bodies, captured{method, status, append([]byte(nil), body...)})
		mu.Unlock()
	}
	dir := directoryService(t, base, delegated(t, base, robot, "admin@corp.test",
		admin.AdminDirectoryUserReadonlyScope, admin.AdminDirectoryResourceCalendarReadonlyScope))
	if _, err := dir.Users.List().Customer("my_customer").Do(); err != nil {
		t.Fatal(err)
	}
	if _, err := dir.Users.List().Customer("my_customer").ShowDeleted("true").Do(); err != nil {
		t.Fatal(err)
	}
	if _, err := dir.Resources.Calendars.List("my_customer").Do(); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"directory.users.list": "Users", "directory.resources.calendars.list": "CalendarResources"}
	checked := 0
	for _, c := range bodies {
		ref, ok := want[c.method]
		if !ok {
			continue
		}
		dec := json.NewDecoder(bytes.NewReader(c.body))
		dec.UseNumber()
		var v any
		if err := dec.Decode(&v); err != nil {
			t.Fatal(err)
		}
		for _, e := range d.check(&jschema{Ref: ref}, v, c.method) {
			t.Error(e)
		}
		checked++
	}
	if checked != 3 {
		t.Fatalf("checked %d responses, want 3", checked)
	}
}

// A customer with two domains, as Google runs it: resources.calendars.list
// is customer-wide (the same rooms and equipment, with their category,
// whichever domain's admin asks, paged), users.list by customer covers both
// domains, and another customer's admin sees none of it.
func TestDirectoryCustomerWideResources(t *testing.T) {
	srv, base, _ := startTest(t, Options{})
	srv.respHook = nil
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(srv.CreateDomain("one.test", "admin@one.test"))
	must(srv.CreateSecondaryDomain("two.test", "admin@two.test", "one.test"))
	must(srv.CreateDomain("other.test", "admin@other.test"))
	must(srv.AddDomainUser("ann@two.test", false))
	var want []string
	for i := range 3 {
		r, err := srv.AddRoom("one.test", fmt.Sprintf("Room %d", i))
		must(err)
		want = append(want, r.Email+":CONFERENCE_ROOM")
	}
	beamer, err := srv.AddResource("two.test", "Beamer", CategoryOther)
	must(err)
	want = append(want, beamer.Email+":OTHER")
	_, err = srv.AddResource("two.test", "Beamer", "PROJECTOR")
	if err == nil {
		t.Fatal("an unknown category was accepted")
	}
	scopes := []string{admin.AdminDirectoryUserReadonlyScope, admin.AdminDirectoryResourceCalendarReadonlyScope}
	for _, who := range []string{"admin@one.test", "admin@two.test"} {
		dir := directoryService(t, base, delegated(t, base, robot, who, scopes...))
		var got []string
		err := dir.Resources.Calendars.List("my_customer").MaxResults(3).Pages(context.Background(), func(p *admin.CalendarResources) error {
			if len(p.Items) > 3 {
				return fmt.Errorf("page of %d", len(p.Items))
			}
			for _, r := range p.Items {
				got = append(got, r.ResourceEmail+":"+r.ResourceCategory)
			}
			return nil
		})
		if err != nil || strings.Join(got, ",") != strings.Join(want, ",") {
			t.Fatalf("%s: resources %v %v, want %v", who, got, err, want)
		}
		users, err := dir.Users.List().Customer("my_customer").Do()
		if err != nil || len(users.Users) != 3 {
			t.Fatalf("%s: users.list of the customer: %+v %v", who, users, err)
		}
		if _, err := dir.Users.List().Domain("one.test").Do(); err != nil {
			t.Fatalf("%s: users.list of the customer's other domain: %v", who, err)
		}
		_, err = dir.Users.List().Domain("other.test").Do()
		wantErr(t, err, 403, "forbidden")
		// The customer's admins read every resource's calendar.
		cal := calendarAs(t, base, delegated(t, base, robot, who, calendar.CalendarReadonlyScope))
		if _, err := cal.Events.List(beamer.Email).Do(); err != nil {
			t.Fatalf("%s reads the equipment: %v", who, err)
		}
	}
	other := directoryService(t, base, delegated(t, base, robot, "admin@other.test", scopes...))
	if res, err := other.Resources.Calendars.List("my_customer").Do(); err != nil || len(res.Items) != 0 {
		t.Fatalf("another customer's resources: %+v %v", res, err)
	}
}
