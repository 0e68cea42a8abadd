// Package testenv gives tests the real Firestore and Pub/Sub emulators. When
// FIRESTORE_EMULATOR_HOST / PUBSUB_EMULATOR_HOST are set it uses those;
// otherwise it starts the emulators installed with the Google Cloud CLI, once
// per test binary, on free loopback ports, each in its own process group, and
// Main stops them when the tests end. A test that needs an emulator fails
// loudly when it cannot have one: nothing is skipped.
package testenv

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// SDKRoot is where the Google Cloud CLI keeps its emulators; CLOUDSDK_ROOT overrides it.
func SDKRoot() string {
	if v := os.Getenv("CLOUDSDK_ROOT"); v != "" {
		return v
	}
	return "/usr/lib/google-cloud-sdk"
}

// emulator is one started emulator process.
type emulator struct {
	name    string
	envVar  string
	once    sync.Once
	host    string
	err     error
	cmd     *exec.Cmd
	output  *syncBuffer
	started bool
}

var (
	firestoreEmu = &emulator{name: "Firestore", envVar: "FIRESTORE_EMULATOR_HOST"}
	pubsubEmu    = &emulator{name: "Pub/Sub", envVar: "PUBSUB_EMULATOR_HOST"}
)

// Firestore returns the host:port of a running Firestore emulator and sets
// FIRESTORE_EMULATOR_HOST for the clients of this process.
func Firestore(tb testing.TB) string {
	tb.Helper()
	return firestoreEmu.get(tb, func(port int) []string {
		jar := filepath.Join(SDKRoot(), "platform/cloud-firestore-emulator/cloud-firestore-emulator.jar")
		// Run Java directly (the wrapper script does not exec), so the process
		// we signal is the emulator itself.
		return []string{"java", "-Duser.language=en", "-cp", jar,
			"com.google.cloud.datastore.emulator.firestore.CloudFirestore",
			"start", "--host=127.0.0.1", fmt.Sprintf("--port=%d", port)}
	})
}

// PubSub returns the host:port of a running Pub/Sub emulator and sets
// PUBSUB_EMULATOR_HOST for the clients of this process.
func PubSub(tb testing.TB) string {
	tb.Helper()
	return pubsubEmu.get(tb, pubsubArgs)
}

func pubsubArgs(port int) []string {
	return []string{filepath.Join(SDKRoot(), "platform/pubsub-emulator/bin/cloud-pubsub-emulator"),
		"--host=127.0.0.1", fmt.Sprintf("--port=%d", port)}
}

// Process is a Pub/Sub emulator of a test's own, for tests that stop and
// restart it (the shared one must stay up for the other tests).
type Process struct {
	Host string
	e    *emulator
}

// NewPubSub starts a private Pub/Sub emulator on port (0: a free one), stopped
// when the test ends.
func NewPubSub(tb testing.TB, port int) *Process {
	tb.Helper()
	e := &emulator{name: "Pub/Sub (private)"}
	args := pubsubArgs
	if port != 0 {
		args = func(int) []string { return pubsubArgs(port) }
	}
	host, err := e.start(args)
	if err != nil {
		tb.Fatalf("testenv: private Pub/Sub emulator could not start: %v", err)
	}
	tb.Cleanup(e.stop)
	return &Process{Host: host, e: e}
}

// Port is the emulator's TCP port.
func (p *Process) Port() int {
	_, port, _ := net.SplitHostPort(p.Host)
	n, _ := strconv.Atoi(port)
	return n
}

// Stop kills the emulator (and its whole process group) now.
func (p *Process) Stop() { p.e.stop() }

// Main runs the tests and then stops every emulator this package started.
// Use it as TestMain: func TestMain(m *testing.M) { testenv.Main(m) }.
func Main(m *testing.M) {
	code := m.Run()
	StopAll()
	os.Exit(code)
}

// StopAll kills the emulators started by this process (their whole process groups).
func StopAll() {
	for _, e := range []*emulator{firestoreEmu, pubsubEmu} {
		e.stop()
	}
}

func (e *emulator) get(tb testing.TB, args func(port int) []string) string {
	tb.Helper()
	e.once.Do(func() {
		if h := os.Getenv(e.envVar); h != "" {
			e.host = h
			return
		}
		e.host, e.err = e.start(args)
		if e.err == nil {
			os.Setenv(e.envVar, e.host)
		}
	})
	if e.err != nil {
		tb.Fatalf("testenv: the %s emulator is needed and could not start: %v\n(set %s to use a running one; the Google Cloud CLI emulators must be installed under %s)", e.name, e.err, e.envVar, SDKRoot())
	}
	return e.host
}

func (e *emulator) start(args func(port int) []string) (string, error) {
	port, err := FreePort()
	if err != nil {
		return "", err
	}
	argv := args(port)
	for _, a := range argv { // the args may name their own port
		if v, ok := strings.CutPrefix(a, "--port="); ok {
			port, _ = strconv.Atoi(v)
		}
	}
	host := fmt.Sprintf("127.0.0.1:%d", port)
	if _, err := exec.LookPath(argv[0]); err != nil {
		return "", fmt.Errorf("%s: %w", argv[0], err)
	}
	e.output = &syncBuffer{}
	errc := make(chan error, 1)
	// Pdeathsig follows the OS thread that forked the child, so fork from a
	// thread that stays locked for the life of the test binary: if the test
	// binary dies, the emulator dies with it.
	go func() {
		runtime.LockOSThread()
		cmd := exec.Command(argv[0], argv[1:]...)
		cmd.Stdout, cmd.Stderr = e.output, e.output
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
		err := cmd.Start()
		e.cmd = cmd
		errc <- err
		if err == nil {
			select {} // keep this thread (and so the child's Pdeathsig) alive
		}
	}()
	if err := <-errc; err != nil {
		return "", err
	}
	e.started = true
	if err := waitReady("http://"+host+"/", 90*time.Second); err != nil {
		e.stop()
		return "", fmt.Errorf("%w; emulator output:\n%s", err, e.output.String())
	}
	return host, nil
}

func (e *emulator) stop() {
	if !e.started || e.cmd == nil || e.cmd.Process == nil {
		return
	}
	_ = syscall.Kill(-e.cmd.Process.Pid, syscall.SIGKILL)
	_, _ = e.cmd.Process.Wait()
	e.started = false
}

func waitReady(url string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	client := &http.Client{Timeout: 2 * time.Second}
	for time.Now().Before(deadline) {
		resp, err := client.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	return errors.New("not ready after " + timeout.String())
}

// FreePort asks the kernel for a free loopback TCP port.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.b.Len() > 1<<20 { // keep the head only: it has the start-up errors
		return len(p), nil
	}
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
