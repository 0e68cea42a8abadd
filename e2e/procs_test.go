package e2e

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/calsync/calsync/scripts/devstack/stack"
)

// procChaos kills and restarts SyncWorker processes in the background, one
// operation per instance at a time, and counts what it did.
type procChaos struct {
	t      *testing.T
	mu     sync.Mutex
	busy   map[int]bool
	wg     sync.WaitGroup
	killed int
	errs   []error
}

func newProcChaos(t *testing.T) *procChaos { return &procChaos{t: t, busy: map[int]bool{}} }

// killAndRestart SIGKILLs SyncWorker i now and starts it again after delay,
// unless i is already being killed, restarted or paused.
func (p *procChaos) killAndRestart(ctx context.Context, i int, delay time.Duration) bool {
	if !p.claim(i) {
		return false
	}
	in := sys.SyncWorker.Instances[i]
	if in.State() != stack.StateUp {
		p.release(i)
		return false
	}
	if err := in.Kill(); err != nil {
		p.fail(err)
		p.release(i)
		return false
	}
	p.mu.Lock()
	p.killed++
	p.mu.Unlock()
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		defer p.release(i)
		select {
		case <-time.After(delay):
		case <-ctx.Done():
		}
		if err := in.Restart(context.WithoutCancel(ctx)); err != nil {
			p.fail(err)
		}
	}()
	return true
}

func (p *procChaos) claim(i int) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.busy[i] {
		return false
	}
	p.busy[i] = true
	return true
}

func (p *procChaos) release(i int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.busy, i)
}

func (p *procChaos) fail(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.errs = append(p.errs, err)
}

func (p *procChaos) kills() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.killed
}

// wait lets every pending restart finish and fails the test if one failed.
func (p *procChaos) wait() {
	p.t.Helper()
	p.wg.Wait()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, err := range p.errs {
		p.t.Errorf("process control: %v", err)
	}
	p.errs = nil
}
