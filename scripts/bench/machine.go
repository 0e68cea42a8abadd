package main

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// Machine describes where the benchmarks ran.
type Machine struct {
	Date     string
	Host     string
	OS       string
	Kernel   string
	CPU      string
	Cores    int
	MemoryGB float64
	Go       string
	Java     string
	SDK      string // Google Cloud CLI (emulators) version
	Commit   string
	Modules  []string // key module versions
}

func machine(ctx context.Context) Machine {
	m := Machine{Date: time.Now().UTC().Format(time.RFC3339), OS: runtime.GOOS + "/" + runtime.GOARCH, Cores: runtime.NumCPU()}
	m.Host, _ = os.Hostname()
	m.Kernel = strings.TrimSpace(readFile("/proc/sys/kernel/osrelease"))
	m.CPU = cpuModel()
	m.MemoryGB = memGB()
	m.Go = strings.TrimSpace(run(ctx, "go", "version"))
	if j := strings.SplitN(run(ctx, "java", "-version"), "\n", 2); len(j) > 0 {
		m.Java = strings.TrimSpace(j[0])
	}
	sdk := os.Getenv("CLOUDSDK_ROOT")
	if sdk == "" {
		sdk = "/usr/lib/google-cloud-sdk"
	}
	m.SDK = strings.TrimSpace(readFile(filepath.Join(sdk, "VERSION")))
	if c, err := exec.CommandContext(ctx, "git", "log", "-1", "--format=%h %s").Output(); err == nil {
		m.Commit = strings.TrimSpace(string(c))
		if dirty, err := exec.CommandContext(ctx, "git", "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(strings.TrimSpace(string(dirty))) > 0 {
			m.Commit += " (working tree modified)"
		}
	}
	for _, mod := range []string{"github.com/GoogleCloudPlatform/functions-framework-go", "cloud.google.com/go/firestore",
		"cloud.google.com/go/pubsub/v2", "google.golang.org/api"} {
		if v := strings.TrimSpace(run(ctx, "go", "list", "-m", mod)); v != "" {
			m.Modules = append(m.Modules, v)
		}
	}
	return m
}

func run(ctx context.Context, name string, args ...string) string {
	out, _ := exec.CommandContext(ctx, name, args...).CombinedOutput()
	return string(out)
}

func readFile(p string) string {
	b, _ := os.ReadFile(p)
	return string(b)
}

func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return runtime.GOARCH
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return runtime.GOARCH
}

func memGB() float64 {
	for _, l := range strings.Split(readFile("/proc/meminfo"), "\n") {
		if strings.HasPrefix(l, "MemTotal:") {
			f := strings.Fields(l)
			if len(f) >= 2 {
				kb, _ := strconv.ParseFloat(f[1], 64)
				return kb / (1 << 20)
			}
		}
	}
	return 0
}
