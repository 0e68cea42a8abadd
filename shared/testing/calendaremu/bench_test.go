package calendaremu

import (
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"net/url"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Benchmarks run against the handler in-process (no sockets), so they measure
// the emulator. Run: go test -run '^$' -bench . -benchmem ./shared/calendaremu/

func benchServe(tb testing.TB, srv *Server, method, target, body string) []byte {
	req := httptest.NewRequest(method, target, strings.NewReader(body))
	rec := httptest.NewRecorder()
	srv.ServeHTTP(rec, req)
	if rec.Code >= 300 {
		tb.Fatalf("%s %s: %d %s", method, target, rec.Code, rec.Body.String())
	}
	return rec.Body.Bytes()
}

// populate inserts n events and returns their ids.
func populate(tb testing.TB, srv *Server, n int) []string {
	ids := make([]string, n)
	base := time.Date(2026, 1, 1, 8, 0, 0, 0, time.UTC)
	for i := range n {
		st := base.Add(time.Duration(i) * 15 * time.Minute)
		body := fmt.Sprintf(`{"summary":"event %d","description":"bench","start":{"dateTime":%q},"end":{"dateTime":%q},"extendedProperties":{"private":{"calsync.n":"%d"}}}`,
			i, st.Format(time.RFC3339), st.Add(30*time.Minute).Format(time.RFC3339), i)
		var ev struct{ ID string }
		_ = json.Unmarshal(benchServe(tb, srv, "POST", evPath, body), &ev)
		ids[i] = ev.ID
	}
	return ids
}

type page struct {
	Items         []json.RawMessage `json:"items"`
	NextPageToken string            `json:"nextPageToken"`
	NextSyncToken string            `json:"nextSyncToken"`
}

// listPages follows pages of evPath+query and returns the item count, pages and sync token.
func listPages(tb testing.TB, srv *Server, query url.Values) (int, int, string) {
	n, pages := 0, 0
	for {
		var p page
		if err := json.Unmarshal(benchServe(tb, srv, "GET", evPath+"?"+query.Encode(), ""), &p); err != nil {
			tb.Fatal(err)
		}
		n += len(p.Items)
		pages++
		if p.NextPageToken == "" {
			return n, pages, p.NextSyncToken
		}
		query.Set("pageToken", p.NextPageToken)
	}
}

func peakRSSMB() float64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, "VmHWM:") {
			kb, _ := strconv.Atoi(strings.Fields(line)[1])
			return float64(kb) / 1024
		}
	}
	return 0
}

func BenchmarkFullList100k(b *testing.B) {
	// With b.Loop the function runs once, so this setup is neither repeated nor timed.
	big := New(Options{})
	start := time.Now()
	populate(b, big, 100_000)
	b.Logf("inserted 100000 events in %v", time.Since(start))
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	b.ResetTimer()
	for b.Loop() {
		n, pages, tok := listPages(b, big, url.Values{"maxResults": {"2500"}})
		if n != 100_000 || pages != 40 || tok == "" {
			b.Fatalf("full list: %d items in %d pages, token %q", n, pages, tok)
		}
	}
	b.ReportMetric(peakRSSMB(), "peak-RSS-MB")
	b.ReportMetric(float64(ms.HeapAlloc)/(1<<20), "heap-MB-100k")
}

func BenchmarkIncremental1k(b *testing.B) {
	srv := New(Options{})
	ids := populate(b, srv, 100_000)
	_, _, tok := listPages(b, srv, url.Values{"maxResults": {"2500"}})
	b.ResetTimer()
	round := 0
	for b.Loop() {
		b.StopTimer()
		round++
		for i := range 1000 {
			id := ids[(round*7919+i*97)%len(ids)]
			if i%10 == 0 && round == 1 {
				benchServe(b, srv, "DELETE", evPath+"/"+id, "")
				continue
			}
			benchServe(b, srv, "PATCH", evPath+"/"+id, fmt.Sprintf(`{"summary":"r%d-%d"}`, round, i))
		}
		b.StartTimer()
		n, _, next := listPages(b, srv, url.Values{"maxResults": {"2500"}, "syncToken": {tok}})
		if n != 1000 {
			b.Fatalf("incremental: %d items, want 1000", n)
		}
		tok = next
	}
	b.ReportMetric(peakRSSMB(), "peak-RSS-MB")
}
