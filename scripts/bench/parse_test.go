package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const sample = `goos: linux
goarch: amd64
pkg: github.com/calsync/calsync/shared/syncer
cpu: AMD EPYC 7B13
BenchmarkBurst-2   	       3	         0 ns/op	        19.00 calsync_lists	      1012 calsync_writes	         1.012 calsync_write_amp	      1780 calsync_lag_ms	      1000 per_notification_lists	      2800 per_notification_writes	         2.800 per_notification_write_amp	      9000 per_notification_lag_ms	      1000 forum_lists	    200000 forum_writes	       200.0 forum_write_amp	     -1.000 forum_lag_ms	 1234 B/op	 12 allocs/op
PASS
ok  	github.com/calsync/calsync/shared/syncer	120.1s
pkg: github.com/calsync/calsync/functions/webhook
BenchmarkWebhookVsBaselines-2   	      30	  12345678 ns/op	      9000 webhook_req/s	         2.1 webhook_p99_ms	      9500 minimal_req/s	         2.0 minimal_p99_ms	     30000 bare_req/s	         0.5 bare_p99_ms	         0.947 throughput_ratio_vs_minimal	         0.1 added_p99_ms_vs_minimal	         0.998 paired_throughput_ratio	         0.02 paired_added_p99_ms
--- FAIL: BenchmarkOther
FAIL	github.com/calsync/calsync/functions/other	1.0s
`

func TestParseAndSideBySide(t *testing.T) {
	rs, problems := Parse(strings.NewReader(sample))
	if len(rs) != 2 || len(problems) != 2 {
		t.Fatalf("results %+v problems %v", rs, problems)
	}
	burst := SideBySide(rs[0])
	if rs[0].Pkg != "github.com/calsync/calsync/shared/syncer" || rs[0].Name != "Burst" || rs[0].Procs != 2 || rs[0].N != 3 {
		t.Fatalf("burst result %+v", rs[0])
	}
	if strings.Join(burst.Variants, ",") != "calsync,per_notification,forum" ||
		strings.Join(burst.Measures, ",") != "lists,writes,write_amp,lag_ms" || burst.Cells["lag_ms"]["forum"] != -1 {
		t.Fatalf("burst table %+v", burst)
	}
	if len(burst.Other) != 3 { // ns/op, B/op, allocs/op
		t.Fatalf("other %+v", burst.Other)
	}
	if got := SideBySide(Result{Name: "WebhookVsBaselines", Metrics: []Metric{{1, "bare_req/s"}, {2, "minimal_req/s"}, {3, "webhook_req/s"}}}); strings.Join(got.Variants, ",") != "webhook,bare,minimal" {
		t.Fatalf("primary variant not first: %v", got.Variants)
	}
	wh := SideBySide(rs[1])
	if strings.Join(wh.Variants, ",") != "webhook,minimal,bare" || strings.Join(wh.Measures, ",") != "req/s,p99_ms" || len(wh.Other) != 5 {
		t.Fatalf("webhook table %+v", wh)
	}
}

func TestReportFromSavedOutput(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "in.txt")
	if err := os.WriteFile(in, []byte(sample), 0o644); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	// The sample has a failed package: the report is written and the run fails.
	if err := realMain(t.Context(), []string{"--from", in, "--out", dir}, &out, &out); err == nil || !strings.Contains(err.Error(), "functions/other") {
		t.Fatalf("want the failed package reported, got %v", err)
	}
	rep, err := os.ReadFile(filepath.Join(dir, "report.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"# calsync benchmark report", "| Machine |", "## Burst", "| lists | 19 | 1000 (52.63×) | 1000 (52.63×) |", "![Burst](chart-Burst.svg)", "## WebhookVsBaselines", "| `github.com/calsync/calsync/shared/syncer` | 2m0s | ok |", "**failed**"} {
		if !bytes.Contains(rep, []byte(want)) {
			t.Errorf("report lacks %q:\n%s", want, rep)
		}
	}
	svg, err := os.ReadFile(filepath.Join(dir, "chart-Burst.svg"))
	if err != nil || !bytes.HasPrefix(svg, []byte("<svg")) || !bytes.Contains(svg, []byte("per_notification")) {
		t.Fatalf("chart: %v %.200s", err, svg)
	}
	if _, err := os.Stat(filepath.Join(dir, "chart-WebhookVsBaselines.svg")); err == nil {
		t.Error("webhook got a chart; only burst and full-sync figures do")
	}
}
