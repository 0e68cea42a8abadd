package main

import (
	"bufio"
	"io"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// Result is one benchmark line of `go test -bench` output.
type Result struct {
	Pkg     string
	Name    string // without the "Benchmark" prefix and the -GOMAXPROCS suffix
	Procs   int
	N       int64
	Metrics []Metric // in output order
}

// Metric is one value/unit pair.
type Metric struct {
	Value float64
	Unit  string
}

var (
	benchLine = regexp.MustCompile(`^Benchmark(\S+?)(?:-(\d+))?\s+(\d+)\s+(.*)$`)
	pkgLine   = regexp.MustCompile(`^pkg:\s+(\S+)`)
)

// Parse reads `go test -bench` output (any number of packages) and returns
// every benchmark result, plus the lines that say something went wrong.
func Parse(r io.Reader) (results []Result, problems []string) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	pkg := ""
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), " \t")
		if m := pkgLine.FindStringSubmatch(line); m != nil {
			pkg = m[1]
			continue
		}
		if m := benchLine.FindStringSubmatch(line); m != nil {
			res := Result{Pkg: pkg, Name: m[1]}
			res.Procs, _ = strconv.Atoi(m[2])
			res.N, _ = strconv.ParseInt(m[3], 10, 64)
			f := strings.Fields(m[4])
			for i := 0; i+1 < len(f); i += 2 {
				v, err := strconv.ParseFloat(f[i], 64)
				if err != nil {
					break
				}
				res.Metrics = append(res.Metrics, Metric{Value: v, Unit: f[i+1]})
			}
			results = append(results, res)
			continue
		}
		if strings.HasPrefix(line, "FAIL") || strings.HasPrefix(line, "--- FAIL") || strings.HasPrefix(line, "panic:") {
			problems = append(problems, line)
		}
	}
	return results, problems
}

// Table is one benchmark's figures side by side: a row per measure, a column
// per variant (calsync and its baselines), found from metric units named
// "<variant>_<measure>" that share a measure with at least one other variant.
type Table struct {
	Variants []string
	Measures []string
	Cells    map[string]map[string]float64 // measure → variant → value
	// Other are the metrics that belong to no variant (ns/op, ratios, ...).
	Other []Metric
}

// SideBySide splits a result's metrics into the variant table and the rest.
func SideBySide(r Result) Table {
	// For each unit, the candidate (variant, measure) splits at each '_'.
	prefixes := map[string]map[string]bool{} // measure → variants
	for _, m := range r.Metrics {
		for i := 0; i < len(m.Unit); i++ {
			if m.Unit[i] == '_' && i > 0 && i < len(m.Unit)-1 {
				meas := m.Unit[i+1:]
				if prefixes[meas] == nil {
					prefixes[meas] = map[string]bool{}
				}
				prefixes[meas][m.Unit[:i]] = true
			}
		}
	}
	t := Table{Cells: map[string]map[string]float64{}}
	seenV, seenM := map[string]bool{}, map[string]bool{}
	for _, m := range r.Metrics {
		placed := false
		// The earliest split whose measure is shared by two variants wins.
		for i := 0; i < len(m.Unit) && !placed; i++ {
			if m.Unit[i] != '_' || i == 0 || i == len(m.Unit)-1 {
				continue
			}
			variant, meas := m.Unit[:i], m.Unit[i+1:]
			if len(prefixes[meas]) < 2 {
				continue
			}
			if !seenV[variant] {
				seenV[variant] = true
				t.Variants = append(t.Variants, variant)
			}
			if !seenM[meas] {
				seenM[meas] = true
				t.Measures = append(t.Measures, meas)
			}
			if t.Cells[meas] == nil {
				t.Cells[meas] = map[string]float64{}
			}
			t.Cells[meas][variant] = m.Value
			placed = true
		}
		if !placed {
			t.Other = append(t.Other, m)
		}
	}
	return primaryFirst(prune(t, r.Metrics), r.Name)
}

// primaryFirst puts calsync's own variant first (named calsync, or named like
// the benchmark, e.g. webhook in WebhookVsBaselines); go test prints metrics
// sorted by unit, so the output order says nothing.
func primaryFirst(t Table, bench string) Table {
	lower := strings.ToLower(bench)
	best := -1
	for i, v := range t.Variants {
		if v == "calsync" {
			best = i
			break
		}
		if best < 0 && strings.HasPrefix(lower, strings.ToLower(v)) {
			best = i
		}
	}
	if best > 0 {
		v := t.Variants[best]
		t.Variants = append([]string{v}, append(t.Variants[:best:best], t.Variants[best+1:]...)...)
	}
	return t
}

// prune moves to Other the "variants" that have fewer measures than the
// richest one when that one has several (e.g. throughput_ratio_vs_minimal
// and added_p99_ms_vs_minimal are figures, not variants).
func prune(t Table, all []Metric) Table {
	count := map[string]int{}
	most := 0
	for _, meas := range t.Measures {
		for v := range t.Cells[meas] {
			count[v]++
			most = max(most, count[v])
		}
	}
	if most < 2 {
		return t
	}
	drop := map[string]bool{}
	var keep []string
	for _, v := range t.Variants {
		if count[v] < most {
			drop[v] = true
		} else {
			keep = append(keep, v)
		}
	}
	if len(drop) == 0 {
		return t
	}
	out := Table{Variants: keep, Cells: map[string]map[string]float64{}}
	for _, meas := range t.Measures {
		for v, x := range t.Cells[meas] {
			if drop[v] {
				continue
			}
			if out.Cells[meas] == nil {
				out.Cells[meas] = map[string]float64{}
				out.Measures = append(out.Measures, meas)
			}
			out.Cells[meas][v] = x
		}
	}
	// Other keeps the output order.
	placed := map[string]bool{}
	for _, meas := range out.Measures {
		for v := range out.Cells[meas] {
			placed[v+"_"+meas] = true
		}
	}
	for _, m := range all {
		if !placed[m.Unit] {
			out.Other = append(out.Other, m)
		}
	}
	return out
}

// sortResults orders results by package then name.
func sortResults(rs []Result) {
	sort.SliceStable(rs, func(i, j int) bool {
		if rs[i].Pkg != rs[j].Pkg {
			return rs[i].Pkg < rs[j].Pkg
		}
		return rs[i].Name < rs[j].Name
	})
}
