package stack

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// The functions and their FUNCTION_TARGET names.
const (
	Webhook       = "Webhook"
	SyncWorker    = "SyncWorker"
	RenewChannels = "RenewChannels"
	Connect       = "Connect"
)

// State of an instance's process.
const (
	StateStarting = "starting" // started, not listening yet: gets no requests
	StateUp       = "up"       // running and served by its front
	StatePaused   = "paused"   // SIGSTOP: keeps its requests, gets no new ones
	StateDown     = "down"     // not running (killed, exited, or not started yet)
)

// Instance is one OS process of a function: the function binary with
// FUNCTION_TARGET, PORT and the function's environment, in its own process
// group, its output appended to LogPath.
type Instance struct {
	Function string
	Index    int
	LogPath  string

	bin   string
	fnEnv map[string]string // the function's environment, without FUNCTION_TARGET and PORT
	echo  io.Writer
	spawn *spawner
	// onCrash is told when a process ends that nobody stopped.
	onCrash func(in *Instance, status string)

	mu      sync.Mutex
	port    int
	url     string
	cmd     *exec.Cmd
	state   string
	exited  chan struct{} // closed when the current process has exited
	starts  int
	exitErr string // how the last process ended

	inFlight atomic.Int64
	served   atomic.Int64
	reqMu    sync.Mutex
	reqSeq   uint64
	reqs     map[uint64]time.Time // start of each request in flight
}

// InstanceInfo is what Instances reports of one process.
type InstanceInfo struct {
	Function string `json:"function"`
	Index    int    `json:"index"`
	PID      int    `json:"pid"`
	Port     int    `json:"port"`
	State    string `json:"state"`
	Starts   int    `json:"starts"` // processes started for this slot (1 + restarts)
	InFlight int64  `json:"inFlight"`
	// OldestInFlight is how long the oldest request in flight has run (0: none).
	OldestInFlight time.Duration `json:"oldestInFlight"`
	Served         int64         `json:"served"` // requests finished
	LogPath        string        `json:"logPath"`
}

// Name is e.g. "SyncWorker-1".
func (in *Instance) Name() string { return in.Function + "-" + strconv.Itoa(in.Index) }

// Port is the instance's PORT.
func (in *Instance) Port() int {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.port
}

// URL is http://127.0.0.1:PORT.
func (in *Instance) URL() string {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.url
}

func (in *Instance) setPort(port int) {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.port, in.url = port, "http://127.0.0.1:"+strconv.Itoa(port)
}

// Info describes the instance now.
func (in *Instance) Info() InstanceInfo {
	in.mu.Lock()
	info := InstanceInfo{Function: in.Function, Index: in.Index, Port: in.port, State: in.state, Starts: in.starts, LogPath: in.LogPath}
	if in.cmd != nil && in.cmd.Process != nil && in.state != StateDown {
		info.PID = in.cmd.Process.Pid
	}
	in.mu.Unlock()
	info.InFlight = in.inFlight.Load()
	info.Served = in.served.Load()
	in.reqMu.Lock()
	for _, t := range in.reqs {
		if d := time.Since(t); d > info.OldestInFlight {
			info.OldestInFlight = d
		}
	}
	in.reqMu.Unlock()
	return info
}

// State is up, paused or down.
func (in *Instance) State() string {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.state
}

// PID of the running process (0 if down).
func (in *Instance) PID() int { return in.Info().PID }

// begin counts a request the front sends to this instance; the returned
// func ends it.
func (in *Instance) begin() func() {
	in.inFlight.Add(1)
	in.reqMu.Lock()
	in.reqSeq++
	id := in.reqSeq
	if in.reqs == nil {
		in.reqs = map[uint64]time.Time{}
	}
	in.reqs[id] = time.Now()
	in.reqMu.Unlock()
	return func() {
		in.reqMu.Lock()
		delete(in.reqs, id)
		in.reqMu.Unlock()
		in.inFlight.Add(-1)
		in.served.Add(1)
	}
}

// errPortTaken: the process could not listen on its port (something took
// the port between our check and its bind).
var errPortTaken = errors.New("port taken")

// start launches a new process for this slot and waits until it listens;
// if its port was taken meanwhile, it moves to another.
func (in *Instance) start(ctx context.Context) error {
	for attempt := 1; ; attempt++ {
		err := in.startOnce(ctx)
		if err == nil || attempt == 5 || !errors.Is(err, errPortTaken) {
			return err
		}
		l, lerr := net.Listen("tcp", "127.0.0.1:0")
		if lerr != nil {
			return err
		}
		in.setPort(l.Addr().(*net.TCPAddr).Port)
		l.Close()
	}
}

func (in *Instance) startOnce(ctx context.Context) error {
	in.mu.Lock()
	if in.state != StateDown {
		in.mu.Unlock()
		return fmt.Errorf("%s: already running", in.Name())
	}
	in.starts++
	n, port := in.starts, in.port
	in.mu.Unlock()

	logf, err := os.OpenFile(in.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	fmt.Fprintf(logf, "=== devstack: %s process #%d starting at %s\n", in.Name(), n, time.Now().Format(time.RFC3339Nano))
	cmd := exec.Command(in.bin)
	cmd.Env = processEnv(in.fnEnv, in.Function, port)
	var out io.Writer = logf
	if in.echo != nil {
		out = io.MultiWriter(logf, &prefixWriter{w: in.echo, prefix: "[" + in.Name() + "] "})
	}
	cmd.Stdout, cmd.Stderr = out, out
	if err := in.spawn.start(cmd); err != nil {
		logf.Close()
		return fmt.Errorf("%s: %w", in.Name(), err)
	}
	exited := make(chan struct{})
	in.mu.Lock()
	in.cmd, in.exited, in.state = cmd, exited, StateStarting
	in.mu.Unlock()
	go func() {
		err := cmd.Wait()
		status := "exit 0"
		if err != nil {
			status = err.Error()
		}
		fmt.Fprintf(logf, "=== devstack: %s process #%d (pid %d) ended at %s: %s\n", in.Name(), n, cmd.Process.Pid, time.Now().Format(time.RFC3339Nano), status)
		logf.Close()
		in.mu.Lock()
		unexpected := false
		if in.cmd == cmd {
			unexpected = in.state != StateDown // not killed or stopped by us
			in.state, in.exitErr = StateDown, status
		}
		in.mu.Unlock()
		close(exited)
		if unexpected && in.onCrash != nil {
			in.onCrash(in, status)
		}
	}()
	// Listening means ready: the functions build their clients on first use.
	// The listening socket must be the process's own: something else may hold
	// the port (then the process fails to bind and exits).
	pid := cmd.Process.Pid
	deadline := time.Now().Add(60 * time.Second)
	for {
		if listensOn(pid, port) {
			in.mu.Lock()
			defer in.mu.Unlock()
			if in.cmd != cmd || in.state != StateStarting {
				return fmt.Errorf("%s was stopped while starting", in.Name())
			}
			in.state = StateUp
			return nil
		}
		select {
		case <-exited:
			tail := tailFile(in.LogPath, 20)
			err := fmt.Errorf("%s exited at start (%s); its log %s ends:\n%s", in.Name(), in.lastExit(), in.LogPath, tail)
			if strings.Contains(tail, "address already in use") {
				err = fmt.Errorf("%w: %w", errPortTaken, err)
			}
			return err
		case <-ctx.Done():
			in.kill()
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			in.kill()
			return fmt.Errorf("%s not listening on port %d after 60s; its log %s ends:\n%s", in.Name(), port, in.LogPath, tailFile(in.LogPath, 20))
		}
	}
}

// listensOn says whether process pid holds a listening TCP socket on port.
func listensOn(pid, port int) bool {
	inodes := map[string]bool{}
	for _, table := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, err := os.ReadFile(table)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			f := strings.Fields(line)
			if len(f) < 10 || f[3] != "0A" { // 0A: LISTEN
				continue
			}
			if _, p, ok := strings.Cut(f[1], ":"); ok {
				if n, err := strconv.ParseInt(p, 16, 32); err == nil && int(n) == port {
					inodes["socket:["+f[9]+"]"] = true
				}
			}
		}
	}
	if len(inodes) == 0 {
		return false
	}
	dir := "/proc/" + strconv.Itoa(pid) + "/fd"
	fds, err := os.ReadDir(dir)
	if err != nil {
		return false
	}
	for _, fd := range fds {
		if l, err := os.Readlink(dir + "/" + fd.Name()); err == nil && inodes[l] {
			return true
		}
	}
	return false
}

func (in *Instance) lastExit() string {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.exitErr
}

// signal sends sig to the process group of the current process.
func (in *Instance) signal(sig syscall.Signal) (pid int, err error) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.cmd == nil || in.cmd.Process == nil || in.state == StateDown {
		return 0, fmt.Errorf("%s is not running", in.Name())
	}
	pid = in.cmd.Process.Pid
	return pid, syscall.Kill(-pid, sig)
}

// kill SIGKILLs the process group and waits for the process to end.
func (in *Instance) kill() {
	in.mu.Lock()
	cmd, exited := in.cmd, in.exited
	if cmd != nil && in.state != StateDown {
		in.state = StateDown // the front stops choosing it now
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	in.mu.Unlock()
	if exited != nil {
		<-exited
	}
}

// stop asks the process to end (SIGTERM), then kills it after grace.
func (in *Instance) stop(grace time.Duration) {
	in.mu.Lock()
	cmd, exited, state := in.cmd, in.exited, in.state
	if cmd != nil && state != StateDown {
		in.state = StateDown
		// A stopped process handles SIGTERM only once continued.
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGCONT)
	}
	in.mu.Unlock()
	if exited == nil {
		return
	}
	select {
	case <-exited:
	case <-time.After(grace):
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-exited
	}
}

// Kill SIGKILLs the instance's process (its requests in flight fail; the
// front answers them 503) and waits until it is gone. Restart brings it back.
func (in *Instance) Kill() error {
	if in.State() == StateDown {
		return fmt.Errorf("%s is not running", in.Name())
	}
	in.kill()
	return nil
}

// Restart kills the process if it runs and starts a new one on the same port.
func (in *Instance) Restart(ctx context.Context) error {
	in.kill()
	return in.start(ctx)
}

// Pause SIGSTOPs the process: its requests in flight wait, its leases run
// out; the front sends it nothing new until Resume.
func (in *Instance) Pause() error {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.state != StateUp {
		return fmt.Errorf("%s is %s, not up", in.Name(), in.state)
	}
	pid := in.cmd.Process.Pid
	if err := syscall.Kill(-pid, syscall.SIGSTOP); err != nil {
		return err
	}
	in.state = StatePaused
	// The signal is delivered asynchronously: return once it has stopped.
	for deadline := time.Now().Add(2 * time.Second); procStateOf(pid) != "T"; {
		if time.Now().After(deadline) {
			return fmt.Errorf("%s (pid %d) not stopped 2s after SIGSTOP (state %q)", in.Name(), pid, procStateOf(pid))
		}
		time.Sleep(time.Millisecond)
	}
	return nil
}

// procStateOf is the state letter of /proc/PID/stat (R, S, T, Z...), "" if gone.
func procStateOf(pid int) string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return ""
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return ""
	}
	f := strings.Fields(s[i+1:])
	if len(f) == 0 {
		return ""
	}
	return f[0]
}

// Resume SIGCONTs a paused process.
func (in *Instance) Resume() error {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.state != StatePaused {
		return fmt.Errorf("%s is %s, not paused", in.Name(), in.state)
	}
	if err := syscall.Kill(-in.cmd.Process.Pid, syscall.SIGCONT); err != nil {
		return err
	}
	in.state = StateUp
	return nil
}

// Function is the instances of one function and the front before them.
type Function struct {
	Name      string
	Instances []*Instance
	Front     *Front
}

// Infos describes every instance.
func (f *Function) Infos() []InstanceInfo {
	out := make([]InstanceInfo, len(f.Instances))
	for i, in := range f.Instances {
		out[i] = in.Info()
	}
	return out
}

// Instance returns instance i or an error naming the valid range.
func (f *Function) Instance(i int) (*Instance, error) {
	if i < 0 || i >= len(f.Instances) {
		return nil, fmt.Errorf("%s has instances 0..%d, not %d", f.Name, len(f.Instances)-1, i)
	}
	return f.Instances[i], nil
}

// spawner starts every child from one OS thread that stays locked for the
// life of the process: Pdeathsig follows the thread that forked, so if this
// process dies, its function processes die with it.
type spawner struct {
	reqs chan spawnReq
	once sync.Once
}

type spawnReq struct {
	cmd  *exec.Cmd
	done chan error
}

func (s *spawner) start(cmd *exec.Cmd) error {
	s.once.Do(func() {
		s.reqs = make(chan spawnReq)
		go func() {
			runtime.LockOSThread() // never unlocked: the thread lives as long as the process
			for r := range s.reqs {
				r.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
				r.done <- r.cmd.Start()
			}
		}()
	})
	done := make(chan error, 1)
	s.reqs <- spawnReq{cmd: cmd, done: done}
	return <-done
}

var processSpawner = &spawner{}

// processEnv is a function process's environment: the function's variables,
// FUNCTION_TARGET and PORT, and only what a Go program needs from ours
// (PATH, HOME, TMPDIR, GORACE).
func processEnv(fnEnv map[string]string, target string, port int) []string {
	var env []string
	for _, k := range []string{"PATH", "HOME", "TMPDIR", "GORACE"} {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	keys := make([]string, 0, len(fnEnv))
	for k := range fnEnv {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		env = append(env, k+"="+fnEnv[k])
	}
	return append(env, "FUNCTION_TARGET="+target, "PORT="+strconv.Itoa(port))
}

// prefixWriter writes whole lines to w, each behind prefix.
type prefixWriter struct {
	mu     sync.Mutex
	w      io.Writer
	prefix string
	buf    []byte
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.buf = append(p.buf, b...)
	for {
		i := bytes.IndexByte(p.buf, '\n')
		if i < 0 {
			break
		}
		if _, err := fmt.Fprintf(p.w, "%s%s\n", p.prefix, p.buf[:i]); err != nil {
			return len(b), nil // echo is best effort; the log file has it
		}
		p.buf = p.buf[i+1:]
	}
	return len(b), nil
}

// tailFile returns the last n lines of a file.
func tailFile(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "(" + err.Error() + ")"
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// scanLogs returns the lines of every log under dir that contain one of
// the markers, prefixed with the file name.
func scanLogs(dir string, markers ...string) ([]string, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.log"))
	if err != nil {
		return nil, err
	}
	var out []string
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			return nil, err
		}
		sc := bufio.NewScanner(fh)
		sc.Buffer(make([]byte, 64<<10), 4<<20)
		for sc.Scan() {
			for _, m := range markers {
				if strings.Contains(sc.Text(), m) {
					out = append(out, filepath.Base(f)+": "+sc.Text())
					break
				}
			}
		}
		fh.Close()
	}
	return out, nil
}

// socketOwner finds which of pids holds the TCP connection whose local end
// is peer (host:port) and remote end is server: how the stack tells which
// function process made a request it serves (e.g. to the Calendar emulator).
func socketOwner(peer, server string, pids []int) (int, error) {
	inode, err := tcpInode(peer, server)
	if err != nil {
		return 0, err
	}
	target := "socket:[" + inode + "]"
	for _, pid := range pids {
		dir := "/proc/" + strconv.Itoa(pid) + "/fd"
		fds, err := os.ReadDir(dir)
		if err != nil {
			continue
		}
		for _, fd := range fds {
			if l, err := os.Readlink(dir + "/" + fd.Name()); err == nil && l == target {
				return pid, nil
			}
		}
	}
	return 0, fmt.Errorf("no process of %v holds the connection %s -> %s", pids, peer, server)
}

// tcpInode reads /proc/net/tcp for the socket local→remote (IPv4 loopback).
func tcpInode(local, remote string) (string, error) {
	l, err := procAddr(local)
	if err != nil {
		return "", err
	}
	r, err := procAddr(remote)
	if err != nil {
		return "", err
	}
	b, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(string(b), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) >= 10 && f[1] == l && f[2] == r {
			return f[9], nil
		}
	}
	return "", errors.New("no socket " + local + " -> " + remote + " in /proc/net/tcp")
}

// procAddr turns 127.0.0.1:8080 into /proc/net/tcp's 0100007F:1F90.
func procAddr(hostport string) (string, error) {
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return "", err
	}
	ip := net.ParseIP(host).To4()
	if ip == nil {
		return "", fmt.Errorf("%s is not IPv4", hostport)
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("%02X%02X%02X%02X:%04X", ip[3], ip[2], ip[1], ip[0], p), nil
}
