package messages

import _ "embed"

// ChangeSchema is the JSON Schema (draft 2020-12) of a change message of
// schema version ChangeSchemaVersion: the published contract, which tests
// check every change message the syncer builds against
// (shared/testing/syncertest).
//
//go:embed schemas/change.v1.json
var ChangeSchema []byte
