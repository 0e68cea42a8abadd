package syncer

import "testing"

func TestCompareVersions(t *testing.T) {
	const t1, t2 = "2026-11-23T10:00:00.000Z", "2026-11-23T10:00:01.000Z"
	for _, tc := range []struct {
		name         string
		updA, updB   string
		seqA, seqB   int64
		etagA, etagB string
		want         int
	}{
		{"same etag", t1, t2, 0, 5, `"7"`, `"7"`, 0},
		{"updated decides", t1, t2, 9, 0, `"9"`, `"1"`, -1},
		{"updated decides, newer", t2, t1, 0, 9, `"1"`, `"9"`, 1},
		{"same updated: sequence", t1, t1, 1, 2, `"9"`, `"1"`, -1},
		{"same updated and sequence: etag as a number", t1, t1, 2, 2, `"10"`, `"9"`, 1},
		{"unparseable updated: the etag, not the sequence", "x", t1, 3, 2, `"1"`, `"2"`, -1},
		{"a tombstone (no updated, no sequence) with a newer etag is newer", "", t1, 0, 4, `"20"`, `"10"`, 1},
		{"a tombstone with an older etag is older", "", t1, 0, 4, `"5"`, `"10"`, -1},
		{"nothing comparable", "", "", 0, 0, `"a"`, `"b"`, 0},
		{"offsets are instants", "2026-11-23T11:00:00+01:00", t1, 0, 0, `"1"`, `"2"`, -1},
	} {
		if got := compareVersions(tc.updA, tc.seqA, tc.etagA, tc.updB, tc.seqB, tc.etagB); got != tc.want {
			t.Errorf("%s: got %d, want %d", tc.name, got, tc.want)
		}
	}
}
