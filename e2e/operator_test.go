package e2e

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

var (
	cliOnce  sync.Once
	cliBin   string
	cliErr   error
	cliState string
)

// calsyncCLI builds the operator CLI (scripts/calsync) once, with -race when
// the tests run under it, and writes the stack's state file for it.
func calsyncCLI(t *testing.T) (bin, state string) {
	t.Helper()
	cliOnce.Do(func() {
		dir, err := os.MkdirTemp("", "e2e-cli-")
		if err != nil {
			cliErr = err
			return
		}
		cliBin, cliState = filepath.Join(dir, "calsync"), filepath.Join(dir, "state.json")
		args := []string{"build", "-o", cliBin}
		if raceEnabled {
			args = append(args, "-race")
		}
		if out, err := exec.Command("go", append(args, "../scripts/calsync")...).CombinedOutput(); err != nil {
			cliErr = err
			cliBin = string(out)
			return
		}
		cliErr = sys.WriteState(cliState)
	})
	if cliErr != nil {
		t.Fatalf("building the calsync CLI: %v\n%s", cliErr, cliBin)
	}
	return cliBin, cliState
}

// cli runs `calsync <args> --state-file <stack state>` as an operator would
// and returns its stdout; a non-zero exit fails the test.
func cli(t *testing.T, ctx context.Context, cmd string, args ...string) string {
	t.Helper()
	code, stdout, stderr := runCLI(t, ctx, cmd, args...)
	if code != 0 {
		t.Fatalf("calsync %s %s: exit %d\nstdout: %s\nstderr: %s", cmd, strings.Join(args, " "), code, stdout, stderr)
	}
	return stdout
}

// runCLI is cli for a command that may fail: its exit code and output.
func runCLI(t *testing.T, ctx context.Context, cmd string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	bin, state := calsyncCLI(t)
	c := exec.CommandContext(ctx, bin, append([]string{cmd, "--state-file", state}, args...)...)
	var o, e bytes.Buffer
	c.Stdout, c.Stderr = &o, &e
	err := c.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exit):
		code = exit.ExitCode()
	default:
		t.Fatalf("calsync %s: %v", cmd, err)
	}
	return code, o.String(), e.String()
}

// watchCalendar is `calsync watch`: register the calendar (auth mode adc:
// with the emulator endpoint the functions act as its default user), create
// its channel, ask for the first full sync.
func watchCalendar(t *testing.T, ctx context.Context, calID string) {
	t.Helper()
	cli(t, ctx, "watch", "--calendar", calID)
	if len(liveChannels(calID)) == 0 {
		t.Fatalf("calsync watch made no channel for %s: %+v", calID, sys.Calendar.Channels())
	}
}

// unwatchCalendar is `calsync unwatch`: status unwatched, channels stopped.
func unwatchCalendar(t *testing.T, ctx context.Context, calID string) {
	t.Helper()
	cli(t, ctx, "unwatch", "--calendar", calID)
}
