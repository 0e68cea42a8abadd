// Package emulators starts the real Firestore and Pub/Sub emulators that the
// Google Cloud CLI installs, on loopback, each in its own process group, and
// kills the whole group on Stop. Tests (through shared/testenv) and the local
// stack (scripts/devstack) both use it.
package emulators

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// SDKRoot is where the Google Cloud CLI keeps its emulators; CLOUDSDK_ROOT overrides it.
func SDKRoot() string {
	if v := os.Getenv("CLOUDSDK_ROOT"); v != "" {
		return v
	}
	return "/usr/lib/google-cloud-sdk"
}

// Kind names an emulator.
type Kind string

// The emulators calsync uses.
const (
	Firestore Kind = "firestore"
	PubSub    Kind = "pubsub"
)

// EnvVar is the variable the Google Cloud client libraries read for kind.
func (k Kind) EnvVar() string {
	if k == Firestore {
		return "FIRESTORE_EMULATOR_HOST"
	}
	return "PUBSUB_EMULATOR_HOST"
}

func (k Kind) argv(port int) []string {
	p := strconv.Itoa(port)
	if k == Firestore {
		// Run Java directly (the wrapper script does not exec), so the
		// process we signal is the emulator itself.
		jar := filepath.Join(SDKRoot(), "platform/cloud-firestore-emulator/cloud-firestore-emulator.jar")
		return []string{"java", "-Duser.language=en", "-cp", jar,
			"com.google.cloud.datastore.emulator.firestore.CloudFirestore",
			"start", "--host=127.0.0.1", "--port=" + p}
	}
	return []string{filepath.Join(SDKRoot(), "platform/pubsub-emulator/bin/cloud-pubsub-emulator"),
		"--host=127.0.0.1", "--port=" + p}
}

// Process is one running emulator.
type Process struct {
	Kind   Kind
	Host   string // 127.0.0.1:PORT
	cmd    *exec.Cmd
	output *syncBuffer
	once   sync.Once
}

// Start launches an emulator on port (0: a free one) and waits until it answers.
func Start(ctx context.Context, kind Kind, port int) (*Process, error) {
	if port == 0 {
		var err error
		if port, err = FreePort(); err != nil {
			return nil, err
		}
	}
	argv := kind.argv(port)
	if _, err := exec.LookPath(argv[0]); err != nil {
		return nil, fmt.Errorf("%s emulator: %w (install the Google Cloud CLI emulators, or set %s)", kind, err, kind.EnvVar())
	}
	p := &Process{Kind: kind, Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), output: &syncBuffer{}}
	errc := make(chan error, 1)
	// Pdeathsig follows the OS thread that forked the child, so fork from a
	// thread that stays locked while this process lives: if we die, the
	// emulator dies with us.
	go func() {
		runtime.LockOSThread()
		cmd := exec.Command(argv[0], argv[1:]...)
		cmd.Stdout, cmd.Stderr = p.output, p.output
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
		err := cmd.Start()
		p.cmd = cmd
		errc <- err
		if err == nil {
			select {} // keep this thread, and so the child's Pdeathsig, alive
		}
	}()
	if err := <-errc; err != nil {
		return nil, fmt.Errorf("%s emulator: %w", kind, err)
	}
	if err := waitReady(ctx, "http://"+p.Host+"/", 90*time.Second); err != nil {
		p.Stop()
		return nil, fmt.Errorf("%s emulator: %w; its output:\n%s", kind, err, p.output.String())
	}
	return p, nil
}

// Port is the emulator's TCP port.
func (p *Process) Port() int {
	_, port, _ := net.SplitHostPort(p.Host)
	n, _ := strconv.Atoi(port)
	return n
}

// Stop kills the emulator's whole process group (the Java process included).
func (p *Process) Stop() {
	p.once.Do(func() {
		if p.cmd == nil || p.cmd.Process == nil {
			return
		}
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		_, _ = p.cmd.Process.Wait()
	})
}

// Output is what the emulator printed (its head), for error messages.
func (p *Process) Output() string { return p.output.String() }

func waitReady(ctx context.Context, url string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	client := &http.Client{Timeout: 2 * time.Second}
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if resp, err := client.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return errors.New("not ready after " + timeout.String())
		case <-time.After(200 * time.Millisecond):
		}
	}
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
	if s.b.Len() < 1<<20 { // keep the head only: it has the start-up errors
		s.b.Write(p)
	}
	return len(p), nil
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
