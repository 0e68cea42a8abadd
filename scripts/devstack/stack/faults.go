package stack

import (
	"fmt"
	"maps"
	"sync"

	"github.com/calsync/calsync/shared/testing/faultproxy"
)

// Google Cloud's own faults (Options.ServiceFaults): a fault proxy between
// each SyncWorker process and the Firestore and Pub/Sub emulators, and
// between each Webhook process and Pub/Sub, in the stack's process, so it
// outlives the function processes a test kills. Every proxy starts without
// faults; SetServiceFaults turns them on and off together.
type serviceFaults struct {
	mu      sync.Mutex
	proxies []*faultproxy.Proxy
}

// proxyEnv points one instance's emulator variables at proxies of their
// own and returns its environment.
func (s *Stack) proxyEnv(fn string, index int, env map[string]string, seed uint64) (map[string]string, error) {
	hosts := map[string]bool{"PUBSUB_EMULATOR_HOST": true, "FIRESTORE_EMULATOR_HOST": fn == SyncWorker}
	env = maps.Clone(env)
	for _, name := range []string{"FIRESTORE_EMULATOR_HOST", "PUBSUB_EMULATOR_HOST"} {
		if !hosts[name] {
			continue
		}
		// A seed per proxy, so that processes do not draw the same faults.
		seed := seed*1000 + uint64(len(s.faults.proxies)) + 1
		p, err := faultproxy.Start("127.0.0.1:0", env[name], faultproxy.Options{Seed: seed})
		if err != nil {
			return nil, fmt.Errorf("fault proxy for %s-%d: %w", fn, index, err)
		}
		s.faults.mu.Lock()
		s.faults.proxies = append(s.faults.proxies, p)
		s.faults.mu.Unlock()
		env[name] = p.Addr()
	}
	return env, nil
}

// SetServiceFaults sets the fault rates of every proxy (Options.ServiceFaults);
// zero rates turn the faults off.
func (s *Stack) SetServiceFaults(r faultproxy.Rates) {
	s.faults.mu.Lock()
	defer s.faults.mu.Unlock()
	for _, p := range s.faults.proxies {
		p.SetRates(r)
	}
}

// ServiceFaultCounts adds up what every proxy saw and injected.
func (s *Stack) ServiceFaultCounts() faultproxy.Snapshot {
	s.faults.mu.Lock()
	defer s.faults.mu.Unlock()
	sum := faultproxy.Snapshot{Calls: map[string]int{}, Faults: map[faultproxy.Kind]map[string]int{}}
	for _, p := range s.faults.proxies {
		c := p.Counts()
		for m, n := range c.Calls {
			sum.Calls[m] += n
		}
		for k, ms := range c.Faults {
			if sum.Faults[k] == nil {
				sum.Faults[k] = map[string]int{}
			}
			for m, n := range ms {
				sum.Faults[k][m] += n
			}
		}
	}
	return sum
}

func (s *Stack) closeFaultProxies() {
	s.faults.mu.Lock()
	defer s.faults.mu.Unlock()
	for _, p := range s.faults.proxies {
		p.Close()
	}
}
