// Package testenv gives tests the real Firestore and Pub/Sub emulators. When
// FIRESTORE_EMULATOR_HOST / PUBSUB_EMULATOR_HOST are set it uses those;
// otherwise it starts the emulators installed with the Google Cloud CLI (see
// shared/emulators), once per test binary, on free loopback ports, each in its
// own process group, and Main stops them when the tests end. A test that needs
// an emulator fails loudly when it cannot have one: nothing is skipped.
package testenv

import (
	"context"
	"os"
	"sync"
	"testing"

	"github.com/calsync/calsync/shared/testing/emulators"
)

// shared is the emulator of one kind that all tests of a binary use.
type shared struct {
	kind emulators.Kind
	once sync.Once
	host string
	proc *emulators.Process
	err  error
}

var (
	firestoreEmu = &shared{kind: emulators.Firestore}
	pubsubEmu    = &shared{kind: emulators.PubSub}
)

// Firestore returns the host:port of a running Firestore emulator and sets
// FIRESTORE_EMULATOR_HOST for the clients of this process.
func Firestore(tb testing.TB) string { tb.Helper(); return firestoreEmu.get(tb) }

// PubSub returns the host:port of a running Pub/Sub emulator and sets
// PUBSUB_EMULATOR_HOST for the clients of this process.
func PubSub(tb testing.TB) string { tb.Helper(); return pubsubEmu.get(tb) }

// Main runs the tests and then stops every emulator this package started.
// Use it as TestMain: func TestMain(m *testing.M) { testenv.Main(m) }.
func Main(m *testing.M) {
	code := m.Run()
	StopAll()
	os.Exit(code)
}

// StopAll kills the emulators started by this process.
func StopAll() {
	for _, e := range []*shared{firestoreEmu, pubsubEmu} {
		if e.proc != nil {
			e.proc.Stop()
		}
	}
}

func (e *shared) get(tb testing.TB) string {
	tb.Helper()
	e.once.Do(func() {
		if h := os.Getenv(e.kind.EnvVar()); h != "" {
			e.host = h
			return
		}
		e.proc, e.err = emulators.Start(context.Background(), e.kind, 0)
		if e.err == nil {
			e.host = e.proc.Host
			os.Setenv(e.kind.EnvVar(), e.host)
		}
	})
	if e.err != nil {
		tb.Fatalf("testenv: this test needs the %s emulator and it could not start: %v\n(set %s to use a running one)", e.kind, e.err, e.kind.EnvVar())
	}
	return e.host
}

// NewPubSub starts a Pub/Sub emulator of the test's own on port (0: a free
// one), for tests that stop and restart it; it is stopped when the test ends.
func NewPubSub(tb testing.TB, port int) *emulators.Process {
	tb.Helper()
	p, err := emulators.Start(context.Background(), emulators.PubSub, port)
	if err != nil {
		tb.Fatalf("testenv: private Pub/Sub emulator could not start: %v", err)
	}
	tb.Cleanup(p.Stop)
	return p
}
