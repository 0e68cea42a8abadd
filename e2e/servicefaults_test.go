package e2e

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/calsync/calsync/shared/testing/faultproxy"
)

// defaultFaultRate is the share of the SyncWorkers' and Webhooks' Firestore
// and Pub/Sub calls that get each service fault during the multi-process
// chaos test's storm (CHAOS_FAULT_RATE; 0 turns them off):
// UNAVAILABLE before the service, writes applied with their answer lost,
// and latency spikes. CHAOS_FAULT_BEFORE, CHAOS_FAULT_LOST and
// CHAOS_FAULT_LATENCY set one kind each.
const defaultFaultRate = 0.05

// serviceFaultRates reads the rates from the environment; a bad value fails
// the test rather than run without faults.
func serviceFaultRates(t *testing.T) faultproxy.Rates {
	t.Helper()
	rate := func(name string, def float64) float64 {
		v := envOr(name, "")
		if v == "" {
			return def
		}
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || f < 0 || f > 1 {
			t.Fatalf("%s=%q: want a share between 0 and 1", name, v)
		}
		return f
	}
	all := rate("CHAOS_FAULT_RATE", defaultFaultRate)
	return faultproxy.Rates{Before: rate("CHAOS_FAULT_BEFORE", all), Lost: rate("CHAOS_FAULT_LOST", all),
		Contention: rate("CHAOS_FAULT_CONTENTION", all), Latency: rate("CHAOS_FAULT_LATENCY", all)}
}

// faultReport says what the proxies injected between two snapshots: per
// kind, the total and the methods that got it.
func faultReport(before, after faultproxy.Snapshot) string {
	calls := 0
	for m, n := range after.Calls {
		calls += n - before.Calls[m]
	}
	parts := []string{fmt.Sprintf("%d calls", calls)}
	for _, k := range slices.Sorted(maps.Keys(after.Faults)) {
		total := after.Total(k) - before.Total(k)
		if total == 0 {
			continue
		}
		var by []string
		for _, m := range slices.Sorted(maps.Keys(after.Faults[k])) {
			if n := after.Faults[k][m] - before.Faults[k][m]; n > 0 {
				by = append(by, fmt.Sprintf("%s %d", m[strings.LastIndex(m, "/")+1:], n))
			}
		}
		parts = append(parts, fmt.Sprintf("%s %d (%s)", k, total, strings.Join(by, ", ")))
	}
	return strings.Join(parts, "; ")
}
