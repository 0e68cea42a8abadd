package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"
)

// Google's list prices, read on 26 Nov 2026 with the search tool (the
// stored copies of the pages below), USD, no free tier counted (calsync's
// named Firestore database has none, and a fleet uses up the others):
//
//   - Firestore, Standard edition, us-central1 (firebase.google.com/docs/firestore/standard-edition,
//     cloud.google.com/firestore/pricing): $0.03 per 100,000 document reads,
//     $0.09 per 100,000 writes, $0.01 per 100,000 deletes.
//   - Pub/Sub (cloud.google.com/pubsub/pricing): $40 per TiB of throughput
//     (publish and delivery), at least 1,000 bytes billed per publish, push
//     or pull request.
//   - Cloud Run functions, request-based billing, Tier 1
//     (cloud.google.com/run/pricing): $0.40 per million requests,
//     $0.000024 per vCPU-second, $0.0000025 per GiB-second of instance time
//     while it handles at least one request.
//   - Google Calendar API and Admin SDK Directory API: no charge in the
//     Standard tier (developers.google.com/workspace/calendar/api/guides/quotas:
//     "enabled by default at no cost ... with published usage limits"); the
//     Scaled tier's prices were not in the pages read, so calls are counted
//     (they spend quota: 600 a minute per user) and priced at $0.
const (
	priceRead       = 0.03 / 100_000
	priceWrite      = 0.09 / 100_000
	priceDelete     = 0.01 / 100_000
	pricePubSubByte = 40.0 / (1 << 40)
	priceRequest    = 0.40 / 1_000_000
	priceVCPUSecond = 0.000024
	priceGiBSecond  = 0.0000025
	pricesRead      = "26 Nov 2026"
	secondsPerMonth = 30 * 86400
	minBilledBytes  = 1000
)

// Function sizes as terraform/functions.tf deploys them: vCPU, GiB.
var (
	webhookSize = [2]float64{1, 0.25}
	syncSize    = [2]float64{1, 1}
	renewSize   = [2]float64{1, 0.5}
)

func instanceCost(busySeconds float64, size [2]float64) float64 {
	return busySeconds * (size[0]*priceVCPUSecond + size[1]*priceGiBSecond)
}

// costs is one column of the cost table, dollars per 1,000 calendars per month.
type costs struct{ reads, writes, deletes, pubsub, requests, compute float64 }

func (c costs) total() float64 {
	return c.reads + c.writes + c.deletes + c.pubsub + c.requests + c.compute
}

func (m *measured) write(o options) error {
	cal := float64(o.calendars)
	notifications := float64(m.Webhook.Invocations)
	changes := float64(m.Changes)
	// Stream totals → per 1,000 calendars per month at --cost-load changes a
	// calendar a day: the costs of a change are the same at any rate low
	// enough that changes to one calendar rarely share a burst (which only
	// makes them cheaper), so they scale with the number of changes.
	perMonth := o.costLoad * 30 * 1000 / max(1, changes)
	lists := float64(m.Calendar["events.list"])
	var calls int
	for method, n := range m.Calendar {
		if method != "events.patch" { // the stream's own changes, not calsync's
			calls += n
		}
	}
	changeBytes := float64(m.Sync.PublishBytes)
	// Pub/Sub billed bytes: the Webhook's publishes, the push of each
	// notification to the SyncWorker (one request each), the SyncWorker's
	// publishes (changes, continuations), and the change feed delivered to
	// one consumer subscription pulling in batches (its bytes).
	pubsubBytes := float64(m.Webhook.PublishBilled) + float64(m.Deliveries)*minBilledBytes + float64(m.Sync.PublishBilled) + changeBytes
	stream := costs{
		reads:    float64(m.Sync.DocReads) * priceRead,
		writes:   float64(m.Sync.DocWrites) * priceWrite,
		deletes:  float64(m.Sync.DocDeletes) * priceDelete,
		pubsub:   pubsubBytes * pricePubSubByte,
		requests: float64(m.Webhook.Invocations+m.Deliveries) * priceRequest,
		compute:  instanceCost(m.Webhook.BusySeconds, webhookSize) + instanceCost(m.Sync.BusySeconds, syncSize),
	}
	stream = scale(stream, perMonth)
	// The floor: Google pushes once per change, so one Webhook invocation
	// per notification is the least; one list call and one SyncWorker
	// invocation per burst; one Firestore write and one change message per
	// changed event; no read; compute not counted.
	avgChange := changeBytes / max(1, float64(m.Sync.PublishMessages))
	floor := scale(costs{
		writes:   changes * priceWrite,
		pubsub:   (notifications*minBilledBytes + float64(m.Bursts)*minBilledBytes + 2*changes*avgChange) * pricePubSubByte,
		requests: (notifications + float64(m.Bursts)) * priceRequest,
	}, perMonth)

	// Background, per 1,000 calendars per month.
	rs := m.ReconcileSweep
	perCal := 1 / float64(max(1, rs.Units))
	reconcile := scale(costs{
		reads:    float64(rs.Sync.DocReads) * priceRead * perCal,
		writes:   float64(rs.Sync.DocWrites) * priceWrite * perCal,
		pubsub:   (float64(rs.Sync.PublishBilled) + float64(rs.Deliveries)*minBilledBytes*2) * pricePubSubByte * perCal,
		requests: float64(rs.Deliveries) * priceRequest * perCal,
		compute:  instanceCost(rs.Sync.BusySeconds, syncSize) * perCal,
	}, 120*1000) // at most 4 a day (RECONCILE_AFTER 6 h) for a calendar with no change in 6 h
	rr := m.RenewRun
	renew := scale(costs{
		reads:    float64(rr.Harness.DocReads) * priceRead,
		writes:   float64(rr.Harness.DocWrites) * priceWrite,
		requests: priceRequest,
		compute:  instanceCost(rr.Seconds, renewSize),
	}, 720*1000/cal) // hourly
	// Channel renewals: each channel (a calendar's, an identity's list's) is
	// replaced about 4.3 times a month with the default 7-day TTL: per
	// renewal 3 record writes and a read (the pending claim, its activation,
	// the old one ended), a watch and a stop at Google (free).
	channelsPer1000 := 1000 + 1000*float64(o.identities)/cal
	renewals := costs{reads: channelsPer1000 * 4.3 * priceRead, writes: channelsPer1000 * 4.3 * 3 * priceWrite}
	dd := m.DirectoryDiff
	directory := scale(costs{
		reads:    float64(dd.Harness.DocReads) * priceRead,
		writes:   float64(dd.Harness.DocWrites) * priceWrite,
		requests: priceRequest,
		compute:  instanceCost(dd.Seconds, renewSize),
	}, 30*1000/cal) // daily, in a RenewChannels run

	var b strings.Builder
	p := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	p("# Fleet benchmark\n\n")
	if m.RunAt == "" {
		m.RunAt = time.Now().UTC().Format("2 Jan 2006 15:04 UTC")
		m.Machine = fmt.Sprintf("%s (%d CPUs)", hostName(), runtime.NumCPU())
	}
	faults := ""
	if o.faultRate > 0 {
		faults = fmt.Sprintf(" --fault-rate %g", o.faultRate)
	}
	p("`go run ./scripts/bench/fleet --calendars %d --identities %d --workers %d --events %d --duration %s --rate %g%s` on %s, %s.\n\n",
		o.calendars, o.identities, o.workers, o.events, o.duration, o.rate, faults, m.Machine, m.RunAt)
	p("A Workspace of %d users with %d calendars each (%d calendars, %d events each) enrolled with one call (`EnrollDomain`: every user's calendar list, every calendar watched) and mirrored by %d SyncWorker processes in %.0f s; then a Poisson stream of %.1f changes a second (event updates, uniform over calendars) for %s: %d changes, %d bursts (changes to one calendar less than 2 s apart), %d Google pushes. The Webhook runs in a process of its own; a bridge delivers the notifications topic to the SyncWorkers in Pub/Sub's push format, round-robin, one message per request, as the push subscription does. Every Firestore operation is counted at each process's gRPC client, every Calendar API call at the emulator.\n\n",
		o.identities, o.calendars/o.identities, o.calendars, o.events, o.workers, m.EnrollSeconds, o.rate, o.duration, m.Changes, m.Bursts, int(notifications))
	p("## Per notification and per change\n\n")
	p("| | total | per notification | per change | floor per change |\n|---|---|---|---|---|\n")
	row := func(name string, total float64, floor string) {
		p("| %s | %.0f | %.2f | %.2f | %s |\n", name, total, total/max(1, notifications), total/max(1, changes), floor)
	}
	row("`events.list` calls", lists, fmt.Sprintf("%.2f (one per burst)", float64(m.Bursts)/max(1, changes)))
	row("Calendar API calls by calsync, all", float64(calls), "")
	row("Firestore document reads", float64(m.Sync.DocReads), "0")
	row("Firestore document writes (fences included)", float64(m.Sync.DocWrites), "1")
	row("Firestore deletes", float64(m.Sync.DocDeletes), "0")
	row("Firestore RPCs", float64(m.Sync.FirestoreRPCs), "")
	row("Webhook invocations", float64(m.Webhook.Invocations), "1 per notification")
	row("SyncWorker invocations", float64(m.Deliveries), fmt.Sprintf("%.2f (one per burst)", float64(m.Bursts)/max(1, changes)))
	row("sync rounds", float64(m.Sync.Extra["rounds"]), "")
	row("change messages", float64(m.Sync.Extra["changes"]), "1")
	row("Pub/Sub billed bytes", pubsubBytes, "")
	row("SyncWorker CPU ms", m.Sync.CPUSeconds*1000, "")
	row("SyncWorker busy ms (billed instance time)", m.Sync.BusySeconds*1000, "")
	row("Webhook busy ms", m.Webhook.BusySeconds*1000, "")
	p("\nSyncWorker answers: %v. Changes seen on the feed: %d of %d.\n\n", m.Sync.Answers, m.Seen, m.Changes)
	if len(m.Faults) > 0 {
		p("Google Cloud faults injected during the stream (`--fault-rate %g`: each kind on that share of the functions' Firestore and Pub/Sub calls): %v.\n\n", o.faultRate, m.Faults)
	}
	p("## Lag (change made → its message on the change feed)\n\np50 %.2f s, p90 %.2f s, p99 %.2f s, max %.2f s (%d changes).\n\n",
		m.LagP["p50"], m.LagP["p90"], m.LagP["p99"], m.LagP["max"], m.Seen)
	p("## Cost, dollars per 1,000 calendars per month\n\n")
	p("At %g changes a calendar a day (`--cost-load`; the stream ran at %.0f, to measure many changes in a short run; the costs of a change are the same at any rate where a calendar's changes rarely share a burst, which only makes them cheaper), a 30-day month, 1,000 calendars. Prices read %s (USD, no free tier): Firestore $0.03 / $0.09 / $0.01 per 100,000 reads / writes / deletes; Pub/Sub $40 per TiB, at least 1,000 bytes per request; Cloud Run functions $0.40 per million requests, $0.000024 per vCPU-second, $0.0000025 per GiB-second (request-based, Tier 1; sizes as `terraform/functions.tf`: Webhook 1 vCPU / 0.25 GiB, SyncWorker 1 / 1, RenewChannels 1 / 0.5); Calendar and Directory API calls $0 in the Standard tier (counted above: they spend quota).\n\n",
		o.costLoad, changes/m.StreamSeconds*86400/cal, pricesRead)
	p("| | change stream (measured) | floor | reconciles (quiet calendars, ≤ 4 a day) | RenewChannels runs (hourly) | channel renewals (weekly) | directory diffs (daily) |\n|---|---|---|---|---|---|---|\n")
	cols := []costs{stream, floor, reconcile, renew, renewals, directory}
	line := func(name string, f func(costs) float64) {
		p("| %s |", name)
		for _, c := range cols {
			p(" $%.2f |", f(c))
		}
		p("\n")
	}
	line("Firestore reads", func(c costs) float64 { return c.reads })
	line("Firestore writes", func(c costs) float64 { return c.writes })
	line("Firestore deletes", func(c costs) float64 { return c.deletes })
	line("Pub/Sub", func(c costs) float64 { return c.pubsub })
	line("function requests", func(c costs) float64 { return c.requests })
	line("function compute", func(c costs) float64 { return c.compute })
	line("**total**", func(c costs) float64 { return c.total() })
	all := stream.total() + reconcile.total() + renew.total() + renewals.total() + directory.total()
	p("\nIn all, with every background cost at its most: **$%.2f per 1,000 calendars per month**, against a floor of $%.2f for the changes alone; one change costs $%.7f (floor $%.7f).\n",
		all, floor.total(), stream.total()/(o.costLoad*30*1000), floor.total()/(o.costLoad*30*1000))
	p("\nMeasured background: a reconcile of every calendar took %.0f s (%d Calendar calls, %d reads, %d writes); a RenewChannels run %.2f s (%d reads, %d writes); a directory diff %.2f s (%d Directory requests, %d Calendar calls, %d reads, %d writes). Channel renewals are estimated (3 writes and a read per renewal), not measured.\n",
		rs.Seconds, sumMap(rs.Calendar), rs.Sync.DocReads, rs.Sync.DocWrites, rr.Seconds, rr.Harness.DocReads, rr.Harness.DocWrites,
		dd.Seconds, dd.Directory, sumMap(dd.Calendar), dd.Harness.DocReads, dd.Harness.DocWrites)
	if err := os.MkdirAll(o.out, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(o.out, "fleet.md"), []byte(b.String()), 0o644); err != nil {
		return err
	}
	raw, _ := json.MarshalIndent(m, "", "  ")
	if err := os.WriteFile(filepath.Join(o.out, "fleet.json"), raw, 0o644); err != nil {
		return err
	}
	fmt.Print(b.String())
	return nil
}

func scale(c costs, k float64) costs {
	return costs{c.reads * k, c.writes * k, c.deletes * k, c.pubsub * k, c.requests * k, c.compute * k}
}

func sumMap(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

func hostName() string {
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "model name") {
				if _, v, ok := strings.Cut(l, ":"); ok {
					return strings.TrimSpace(v)
				}
			}
		}
	}
	return runtime.GOARCH
}
