package syncer

import (
	"cmp"
	"strconv"
	"strings"
	"time"
)

// compareVersions orders two versions of one event (-1: a is older, 0: same
// or undecidable, 1: a is newer): by `updated`, then `sequence`, then the
// etag, which Google writes as a quoted decimal number that grows with every
// change. The mirror and the feed never go from a version to an older one.
// `sequence` counts only next to `updated`: a deletion's tombstone carries
// neither (Google promises only its id and status), and its missing sequence
// is not a lower one.
func compareVersions(updA string, seqA int64, etagA string, updB string, seqB int64, etagB string) int {
	if etagA == etagB {
		return 0
	}
	ta, errA := time.Parse(time.RFC3339Nano, updA)
	tb, errB := time.Parse(time.RFC3339Nano, updB)
	if errA == nil && errB == nil {
		if !ta.Equal(tb) {
			return ta.Compare(tb)
		}
		if seqA != seqB {
			return cmp.Compare(seqA, seqB)
		}
	}
	na, errA := strconv.ParseUint(strings.Trim(etagA, `"`), 10, 64)
	nb, errB := strconv.ParseUint(strings.Trim(etagB, `"`), 10, 64)
	if errA == nil && errB == nil {
		return cmp.Compare(na, nb)
	}
	return 0
}
