package browser

import (
	"bytes"
	"fmt"
	"html"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/chromedp/chromedp/kb"
)

// The helpers against a real page in real Chromium: open, tick, type,
// submit a form (a POST answered by a redirect), read text and URL, and
// save a screenshot.
func TestHelpersDriveARealPage(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/form":
			fmt.Fprint(w, `<!DOCTYPE html><html lang="en"><title>form</title><form method="post" action="/post">
<input type="checkbox" id="a" name="box" value="a" checked><label for="a">A</label>
<input type="checkbox" id="b" name="box" value="b"><label for="b">B</label>
<label for="name">Name</label><input id="name" name="name">
<button id="go" type="submit">Go</button></form>`)
		case r.URL.Path == "/post" && r.Method == http.MethodPost:
			r.ParseForm()
			http.Redirect(w, r, "/done?box="+strings.Join(r.PostForm["box"], ",")+"&name="+r.PostForm.Get("name"), http.StatusSeeOther)
		case r.URL.Path == "/done":
			fmt.Fprintf(w, `<p id="out">%s</p>`, html.EscapeString(r.URL.RawQuery))
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	b := Start(t)
	if code := b.Open(srv.URL + "/form"); code != 200 {
		t.Fatalf("open: %d", code)
	}
	if !b.Checked("#a") || b.Checked("#b") {
		t.Fatal("initial checkbox states")
	}
	b.SetChecked("#a", false)
	b.SetChecked("#b", true)
	b.SetChecked("#b", true) // already so: no click, still checked
	b.Type("#name", "ann")
	if code := b.Submit("#go"); code != 200 {
		t.Fatalf("submit: %d", code)
	}
	if got, want := b.URL(), srv.URL+"/done?box=b&name=ann"; got != want {
		t.Fatalf("URL %q, want %q", got, want)
	}
	if got := b.Text("#out"); got != "box=b&name=ann" {
		t.Fatalf("text %q", got)
	}
	if code := b.Open(srv.URL + "/missing"); code != 404 {
		t.Fatalf("status of a missing page: %d", code)
	}
	// Enter in a text field submits the form, as keyboard users do.
	b.Open(srv.URL + "/form")
	if code := b.TypeSubmit("#name", "bo"+kb.Enter); code != 200 {
		t.Fatalf("Enter: %d", code)
	}
	if got := b.Text("#out"); got != "box=a&name=bo" {
		t.Fatalf("after Enter: %q", got)
	}
	shot := filepath.Join(t.TempDir(), "shots", "done.png")
	b.Screenshot(shot)
	data, err := os.ReadFile(shot)
	if err != nil || !bytes.HasPrefix(data, []byte("\x89PNG\r\n\x1a\n")) || len(data) < 100 {
		t.Fatalf("screenshot: %v, %d bytes", err, len(data))
	}
}

// fatalTB records the failure instead of ending the real test.
type fatalTB struct {
	testing.TB
	mu  sync.Mutex
	msg string
}

func (f *fatalTB) Helper() {}
func (f *fatalTB) Fatalf(format string, args ...any) {
	f.mu.Lock()
	f.msg = fmt.Sprintf(format, args...)
	f.mu.Unlock()
	runtime.Goexit()
}

// Without Chromium a browser test fails, naming the package to install;
// it never skips.
func TestMissingChromiumFailsLoudly(t *testing.T) {
	old := chromiumPath
	chromiumPath = filepath.Join(t.TempDir(), "no-chromium")
	defer func() { chromiumPath = old }()
	tb := &fatalTB{TB: t}
	done := make(chan struct{})
	go func() { defer close(done); Start(tb); t.Error("Start returned without Chromium") }()
	<-done
	if !strings.Contains(tb.msg, "apt-get install -y chromium") || !strings.Contains(tb.msg, "no-chromium") {
		t.Fatalf("failure message %q", tb.msg)
	}
}
