// Package browser drives Debian's headless Chromium from Go tests (through
// chromedp and the DevTools protocol), so pages are tested as a user meets
// them: real forms, real redirects, real keyboard. Every helper fails the
// test on error; a missing Chromium fails it too, naming the fix.
package browser

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// chromiumPath is where Debian's chromium package puts the browser
// (a variable so a test can prove a missing one fails loudly).
var chromiumPath = "/usr/bin/chromium"

// Browser is one headless Chromium with one tab, alive until the test ends.
type Browser struct {
	t   testing.TB
	ctx context.Context // the tab
	// Timeout bounds each helper call (default 30 s).
	Timeout time.Duration
}

// Start launches Chromium with a fresh profile for t. The flags are the
// ones this machine needs: no sandbox (tests run as root), no GPU, and no
// background traffic to Google's hosts (the network is closed; without
// these flags Chromium's own connections are refused, many at a time).
func Start(t testing.TB) *Browser {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Fatalf("browser: %s is missing (%v): install Debian's Chromium with `apt-get install -y chromium` (.ci/run does it)", chromiumPath, err)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("no-proxy-server", true), // tests reach loopback only
		chromedp.WindowSize(1024, 900),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(allocCtx)
	t.Cleanup(func() { cancelTab(); cancelAlloc() }) // stops Chromium before t.TempDir is removed
	// The first run launches the browser; it must not carry a timeout (that
	// would end the browser with it), so it is bounded from outside.
	started := make(chan error, 1)
	go func() { started <- chromedp.Do(ctx) }()
	select {
	case err := <-started:
		if err != nil {
			t.Fatalf("browser: start %s: %v", chromiumPath, err)
		}
	case <-time.After(60 * time.Second):
		cancelTab()
		cancelAlloc()
		t.Fatalf("browser: %s did not start within 60 s", chromiumPath)
	}
	return &Browser{t: t, ctx: ctx, Timeout: 30 * time.Second}
}

func (b *Browser) timeout() (context.Context, context.CancelFunc) {
	return context.WithTimeout(b.ctx, b.Timeout)
}

func (b *Browser) check(what string, err error) {
	b.t.Helper()
	if err != nil {
		b.t.Fatalf("browser: %s: %v (page %s)", what, err, b.currentURL())
	}
}

// Open loads url and returns the HTTP status of the page it ends on
// (after redirects).
func (b *Browser) Open(url string) int {
	b.t.Helper()
	ctx, cancel := b.timeout()
	defer cancel()
	resp, err := chromedp.Run(ctx, chromedp.NavigateResponse(url))
	b.check("open "+url, err)
	return int(resp.Status)
}

// Click clicks the element sel (a CSS selector) and does not wait for
// anything: use Submit for a click that loads a page.
func (b *Browser) Click(sel string) {
	b.t.Helper()
	ctx, cancel := b.timeout()
	defer cancel()
	b.check("click "+sel, chromedp.Do(ctx, chromedp.Click(chromedp.CSS(sel))))
}

// Submit clicks sel, waits for the page the click loads (after
// redirects) and returns its HTTP status.
func (b *Browser) Submit(sel string) int {
	b.t.Helper()
	return b.loads("submit "+sel, chromedp.Click(chromedp.CSS(sel)))
}

// loads runs step, which loads a page, and returns that page's status.
func (b *Browser) loads(what string, step chromedp.Action[chromedp.Void]) int {
	b.t.Helper()
	ctx, cancel := b.timeout()
	defer cancel()
	resp, err := chromedp.RunResponse(ctx, step)
	b.check(what, err)
	return int(resp.Status)
}

// Checked says whether the checkbox or radio button sel is checked.
func (b *Browser) Checked(sel string) bool {
	b.t.Helper()
	ctx, cancel := b.timeout()
	defer cancel()
	on, err := chromedp.Run(ctx, chromedp.JavascriptAttribute[bool](chromedp.CSS(sel), "checked"))
	b.check("read checkbox "+sel, err)
	return on
}

// SetChecked clicks the checkbox sel if it is not already in the wanted
// state, as a user would, and checks that it then is.
func (b *Browser) SetChecked(sel string, checked bool) {
	b.t.Helper()
	if b.Checked(sel) != checked {
		b.Click(sel)
	}
	if b.Checked(sel) != checked {
		b.t.Fatalf("browser: %s still not checked=%v after a click", sel, checked)
	}
}

// Type focuses sel and types text with the keyboard (kb.Enter and the
// other keys of chromedp/kb work too).
func (b *Browser) Type(sel, text string) {
	b.t.Helper()
	ctx, cancel := b.timeout()
	defer cancel()
	b.check("type into "+sel, chromedp.Do(ctx, chromedp.SendKeys(chromedp.CSS(sel), text)))
}

// TypeSubmit types text into sel, as Type, when the keys load a page
// (kb.Enter in a form field): it waits for that page and returns its status.
func (b *Browser) TypeSubmit(sel, text string) int {
	b.t.Helper()
	return b.loads("type into "+sel, chromedp.SendKeys(chromedp.CSS(sel), text))
}

// Text is the visible text of the element sel.
func (b *Browser) Text(sel string) string {
	b.t.Helper()
	ctx, cancel := b.timeout()
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
	b.check("read text of "+sel, err)
	return s
}

// URL is the address of the page the tab shows.
func (b *Browser) URL() string {
	b.t.Helper()
	ctx, cancel := b.timeout()
	defer cancel()
	u, err := chromedp.Run(ctx, chromedp.Location())
	b.check("read the URL", err)
	return u
}

// currentURL is URL for error messages: it never fails the test.
func (b *Browser) currentURL() string {
	ctx, cancel := context.WithTimeout(b.ctx, 2*time.Second)
	defer cancel()
	u, err := chromedp.Run(ctx, chromedp.Location())
	if err != nil {
		return "unknown"
	}
	return u
}

// Screenshot saves a PNG of the whole page (beyond the window) to path.
func (b *Browser) Screenshot(path string) {
	b.t.Helper()
	ctx, cancel := b.timeout()
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	b.check("screenshot", err)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		b.t.Fatalf("browser: screenshot: %v", err)
	}
	if err := os.WriteFile(path, png, 0o644); err != nil {
		b.t.Fatalf("browser: screenshot: %v", err)
	}
}
