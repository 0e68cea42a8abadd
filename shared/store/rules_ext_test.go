package store_test

import (
	"github.com/calsync/calsync/shared/lifecycle"
	"github.com/calsync/calsync/shared/store"
	"github.com/calsync/calsync/shared/syncer"
)

// The real rules for the store's tests (rules_test.go).
func init() {
	store.Coalesce = syncer.Coalesce
	store.NextStreak = lifecycle.NextStreak
}
