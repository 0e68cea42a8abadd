package logging

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

func decode(t *testing.T, buf *bytes.Buffer) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(buf.Bytes(), &m); err != nil {
		t.Fatalf("not one JSON line: %q: %v", buf.String(), err)
	}
	return m
}

func TestCloudLoggingFields(t *testing.T) {
	for _, tc := range []struct {
		log  func(*slog.Logger)
		want string
	}{
		{func(l *slog.Logger) { l.Debug("m") }, "DEBUG"},
		{func(l *slog.Logger) { l.Info("m") }, "INFO"},
		{func(l *slog.Logger) { l.Warn("m") }, "WARNING"},
		{func(l *slog.Logger) { l.Error("m") }, "ERROR"},
		{func(l *slog.Logger) { l.Log(context.Background(), LevelCritical, "m") }, "CRITICAL"},
	} {
		var buf bytes.Buffer
		tc.log(New(&buf, slog.LevelDebug))
		m := decode(t, &buf)
		if m["severity"] != tc.want || m["message"] != "m" {
			t.Errorf("got %v, want severity %s and message", m, tc.want)
		}
		if _, ok := m["level"]; ok {
			t.Errorf("level key left in %v", m)
		}
		src, ok := m[FieldSourceLocation].(map[string]any)
		if !ok || !strings.HasSuffix(src["file"].(string), "logging_test.go") || src["line"].(float64) <= 0 {
			t.Errorf("source location missing or wrong: %v", m[FieldSourceLocation])
		}
	}
}

func TestTraceFromHeaders(t *testing.T) {
	for _, tc := range []struct{ header, value, trace, span string }{
		{"X-Cloud-Trace-Context", "105445AA7843BC8BF206B12000100000/1;o=1", "projects/p/traces/105445aa7843bc8bf206b12000100000", "1"},
		{"traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "projects/p/traces/0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"},
		{"traceparent", "garbage", "", ""},
		{"X-Cloud-Trace-Context", "00000000000000000000000000000000/0", "", ""},
	} {
		r := httptest.NewRequest("POST", "/", nil)
		r.Header.Set(tc.header, tc.value)
		var buf bytes.Buffer
		New(&buf, slog.LevelInfo).Info("m", TraceAttrs("p", r)...)
		m := decode(t, &buf)
		got, _ := m[FieldTrace].(string)
		span, _ := m[FieldSpanID].(string)
		if got != tc.trace || span != tc.span {
			t.Errorf("%s=%q: trace %q span %q, want %q %q", tc.header, tc.value, got, span, tc.trace, tc.span)
		}
	}
}

func TestSecretsNeverLogged(t *testing.T) {
	const secret = "v=1&k=k1&c=cal&s=SUPERSECRETSIG"
	var buf bytes.Buffer
	l := New(&buf, slog.LevelDebug).With("channelToken", secret)
	l.Info("m", "token", secret, "refresh_token", secret, slog.Group("req", "Authorization", "Bearer "+secret), "calendarKey", "ck1")
	if strings.Contains(buf.String(), "SUPERSECRET") {
		t.Fatalf("secret leaked: %s", buf.String())
	}
	m := decode(t, &buf)
	if m["calendarKey"] != "ck1" {
		t.Errorf("calendarKey must not be redacted: %v", m)
	}
	if m["token"] != Redacted {
		t.Errorf("token not redacted: %v", m)
	}
}

func TestLoggerInContext(t *testing.T) {
	var buf bytes.Buffer
	l := New(&buf, slog.LevelInfo)
	FromContext(WithLogger(context.Background(), l)).Info("here")
	if decode(t, &buf)["message"] != "here" {
		t.Fatal("context logger not used")
	}
	if FromContext(context.Background()) == nil {
		t.Fatal("no default logger")
	}
}

func TestParseLevel(t *testing.T) {
	if l, ok := ParseLevel("WARNING"); !ok || l != slog.LevelWarn {
		t.Fatal("WARNING")
	}
	if _, ok := ParseLevel("loud"); ok {
		t.Fatal("loud accepted")
	}
}

func TestClip(t *testing.T) {
	if Clip("short") != "short" || Clip(strings.Repeat("a", MaxValueBytes)) != strings.Repeat("a", MaxValueBytes) {
		t.Fatal("a value within the bound was changed")
	}
	for _, s := range []string{strings.Repeat("a", 1000), strings.Repeat("é", 200), "a" + strings.Repeat("€", 100)} {
		got := Clip(s)
		if len(got) > MaxValueBytes || !strings.HasSuffix(got, "…") || !utf8.ValidString(got) || !strings.HasPrefix(s, strings.TrimSuffix(got, "…")) {
			t.Errorf("Clip(%d bytes) = %q (%d bytes)", len(s), got, len(got))
		}
	}
}

func TestUntrusted(t *testing.T) {
	for in, want := range map[string]string{
		"6.6.6.6":          "6.6.6.6",
		"a\nb":             `a\nb`,
		"\x1b[31mred":      `\x1b[31mred`,
		"evil\u202etxt":    `evil\u202etxt`,
		"caf\xe9":          `caf\xe9`,
		"é":                `\u00e9`,
		"":                 "",
		`quote"back\slash`: `quote"back\\slash`,
	} {
		if got := Untrusted(in); got != want {
			t.Errorf("Untrusted(%q) = %q, want %q", in, got, want)
		}
	}
	exact := strings.Repeat("a", MaxValueBytes-4) + "\n\n" // escapes to exactly MaxValueBytes
	if got := Untrusted(exact); got != strings.Repeat("a", MaxValueBytes-4)+`\n\n` {
		t.Errorf("a value escaping to exactly the bound was cut: %q", got)
	}
	for _, s := range []string{strings.Repeat("a", 60000), strings.Repeat("\x00", 1000), strings.Repeat("é", 200),
		strings.Repeat("a", MaxValueBytes-5) + "\u202e\u202e", strings.Repeat("\xff", 33)} {
		got := Untrusted(s)
		if len(got) > MaxValueBytes || !strings.HasSuffix(got, "…") || !utf8.ValidString(got) {
			t.Errorf("Untrusted(%d bytes) = %q (%d bytes)", len(s), got, len(got))
		}
		if body := strings.TrimSuffix(got, "…"); strings.HasSuffix(body, `\`) || regexp.MustCompile(`\\(x[0-9a-f]?|u[0-9a-f]{0,3})$`).MatchString(body) {
			t.Errorf("Untrusted cut an escape in two: %q", got)
		}
		for _, c := range []byte(strings.TrimSuffix(got, "…")) {
			if c < 0x20 || c >= 0x7f {
				t.Fatalf("Untrusted(%q...) kept byte %#x", s[:8], c)
			}
		}
	}
}

func FuzzUntrusted(f *testing.F) {
	f.Add("6.6.6.6, 10.0.0.1")
	f.Add("\x1b]0;title\x07\u202e")
	f.Fuzz(func(t *testing.T, s string) {
		got := Untrusted(s)
		if len(got) > MaxValueBytes {
			t.Fatalf("%d bytes", len(got))
		}
		body := strings.TrimSuffix(got, "…")
		for i := 0; i < len(body); i++ {
			if body[i] < 0x20 || body[i] >= 0x7f {
				t.Fatalf("kept byte %#x", body[i])
			}
		}
		if !strings.HasSuffix(got, "…") {
			// Not cut: the escaping must be reversible to the input.
			if back, err := strconv.Unquote(`"` + strings.ReplaceAll(got, `"`, `\"`) + `"`); err != nil || back != s {
				t.Fatalf("Untrusted(%q) = %q does not unquote back (%q, %v)", s, got, back, err)
			}
		}
	})
}
