//go:build race

package e2e

// raceEnabled: the test binary runs under -race, so binaries it builds use
// -race too and reuse the packages already compiled for it.
const raceEnabled = true
