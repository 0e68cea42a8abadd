//go:build race

package stack

// raceEnabled: the tests run under -race, so the function binary they build
// has it too.
const raceEnabled = true
