package e2e

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/calsync/calsync/scripts/devstack/stack"
)

// The built devstack binary, stopped with SIGTERM, leaves no process behind
// (the function processes and the emulators' Java processes included), frees
// its ports and removes its state file and run directory; a second run starts
// clean.
func TestDevstackBinaryStopsEverything(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "devstack")
	args := []string{"build", "-o", bin}
	if raceEnabled {
		args = append(args, "-race")
	}
	build := exec.Command("go", append(args, "../scripts/devstack")...)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	for run := 1; run <= 2; run++ {
		t.Run("run"+strconv.Itoa(run), func(t *testing.T) { runAndTerminate(t, bin) })
	}
}

func runAndTerminate(t *testing.T, bin string) {
	state := filepath.Join(t.TempDir(), "state.json")
	args := []string{"--state-file", state, "--renew-interval", "0", "--sync-workers", "2"}
	if raceEnabled {
		args = append(args, "--race")
	}
	cmd := exec.Command(bin, args...)
	// Its own emulators, not the test binary's.
	cmd.Env = filteredEnv("FIRESTORE_EMULATOR_HOST", "PUBSUB_EMULATOR_HOST", "FUNCTION_TARGET")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() { _ = cmd.Process.Kill() }()

	var st stack.State
	deadline := time.Now().Add(2 * time.Minute)
	for {
		var err error
		if st, err = stack.ReadState(state); err == nil {
			break
		}
		select {
		case err := <-exited:
			t.Fatalf("devstack exited early: %v\n%s", err, out.String())
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("no state file after 2m:\n%s", out.String())
		}
	}
	if st.PID != cmd.Process.Pid || st.WebhookURL == "" || st.ProjectID == "" || st.ChangesTopic == "" || st.NotificationsTopic == "" ||
		len(st.Instances) != 5 || st.RunDir == "" || len(st.PushSubscriptions) == 0 {
		t.Fatalf("state file: %+v", st)
	}
	ports := []string{st.FirestoreEmulatorHost, st.PubSubEmulatorHost, strings.TrimPrefix(st.CalendarBaseURL, "http://")}
	for _, u := range []string{st.WebhookURL, st.SyncWorkerURL, st.RenewChannelsURL, st.ConnectURL, strings.TrimSuffix(st.ProductURL, "/product/")} {
		ports = append(ports, strings.TrimPrefix(u, "http://"))
	}
	for _, in := range st.Instances {
		ports = append(ports, "127.0.0.1:"+strconv.Itoa(in.Port))
	}
	for _, hp := range ports {
		if !listening(hp) {
			t.Fatalf("%s not listening", hp)
		}
	}
	desc := descendants(cmd.Process.Pid)
	javas := 0
	for _, p := range desc {
		if strings.Contains(cmdline(p), "java") {
			javas++
		}
	}
	if javas < 2 {
		t.Fatalf("want the two emulators' Java processes among the children, got %d of %v", javas, desc)
	}
	targets := map[string]int{}
	for _, in := range st.Instances {
		if !slices.Contains(desc, in.PID) {
			t.Fatalf("function process %s-%d (pid %d) is not a child of devstack: %v", in.Function, in.Index, in.PID, desc)
		}
		env, _ := os.ReadFile("/proc/" + strconv.Itoa(in.PID) + "/environ")
		for _, kv := range strings.Split(string(env), "\x00") {
			if t, ok := strings.CutPrefix(kv, "FUNCTION_TARGET="); ok {
				targets[t]++
			}
		}
	}
	if targets["Webhook"] != 1 || targets["SyncWorker"] != 2 || targets["RenewChannels"] != 1 || targets["Connect"] != 1 {
		t.Fatalf("FUNCTION_TARGET of the function processes: %v", targets)
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("devstack exit after SIGTERM: %v\n%s", err, out.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("devstack still running 30s after SIGTERM:\n%s", out.String())
	}
	deadline = time.Now().Add(10 * time.Second)
	for {
		var alive []string
		for _, p := range desc {
			if processAlive(p) {
				alive = append(alive, fmt.Sprintf("%d %s", p, cmdline(p)))
			}
		}
		for _, hp := range ports {
			if listening(hp) {
				alive = append(alive, "port "+hp)
			}
		}
		if len(alive) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("left behind after SIGTERM: %v", alive)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if _, err := os.Stat(state); !os.IsNotExist(err) {
		t.Fatalf("state file still there: %v", err)
	}
	if _, err := os.Stat(st.RunDir); !os.IsNotExist(err) {
		t.Fatalf("run directory %s still there: %v", st.RunDir, err)
	}
}

func filteredEnv(drop ...string) []string {
	var env []string
next:
	for _, kv := range os.Environ() {
		for _, d := range drop {
			if strings.HasPrefix(kv, d+"=") {
				continue next
			}
		}
		env = append(env, kv)
	}
	return env
}

func listening(hostport string) bool {
	c, err := net.DialTimeout("tcp", hostport, 500*time.Millisecond)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// descendants lists every process below pid, from /proc.
func descendants(pid int) []int {
	children := map[int][]int{}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces, so cut at the last ')'.
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) < 2 {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		children[ppid] = append(children[ppid], p)
	}
	var out []int
	queue := []int{pid}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		for _, c := range children[p] {
			out = append(out, c)
			queue = append(queue, c)
		}
	}
	return out
}

func processAlive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i >= 0 && !strings.HasPrefix(strings.TrimSpace(s[i+1:]), "Z")
}

func cmdline(pid int) string {
	b, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	return strings.ReplaceAll(string(b), "\x00", " ")
}
