package store

import "time"

// The rules the store's transactions apply belong to the packages that
// decide (the coalescing rule to shared/syncer, the 404 streak to
// shared/lifecycle), which import this one. These tests apply the real ones
// all the same: rules_ext_test.go (package store_test, which may import
// them) sets these before any test runs.
var (
	Coalesce   CoalescingRule
	NextStreak func(p NotFoundPolicy, c Calendar, now time.Time) NotFoundStreak
)

// streak is the 404 streak rule under policy p.
func streak(p NotFoundPolicy) NotFoundRule {
	return func(c Calendar, now time.Time) NotFoundStreak { return NextStreak(p, c, now) }
}
