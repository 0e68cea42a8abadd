package stack

import (
	"io"
	"net"
	"sync"
)

// PubSubAnswer is a chunk of the Pub/Sub emulator's answers on its way back
// to a SyncWorker process through the process's tap.
type PubSubAnswer struct {
	Instance *Instance
	Bytes    int // size of the chunk about to be relayed
}

// tap is a TCP relay between one SyncWorker instance and the Pub/Sub
// emulator (Options.PubSubTaps): the instance's PUBSUB_EMULATOR_HOST points
// at it, so the stack sees when an answer comes back to that process. A
// SyncWorker talks to Pub/Sub only to publish, so an answer means a publish
// just completed; a hook may pause the process before it gets it.
type tap struct {
	ln     net.Listener
	target string
	in     *Instance
	hook   func() func(PubSubAnswer)
	wg     sync.WaitGroup
	mu     sync.Mutex
	conns  map[net.Conn]bool
	closed bool
}

func newTap(target string, hook func() func(PubSubAnswer)) (*tap, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	t := &tap{ln: ln, target: target, hook: hook, conns: map[net.Conn]bool{}}
	t.wg.Add(1)
	go t.serve()
	return t, nil
}

func (t *tap) addr() string { return t.ln.Addr().String() }

func (t *tap) setInstance(in *Instance) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.in = in
}

func (t *tap) instance() *Instance {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.in
}

func (t *tap) serve() {
	defer t.wg.Done()
	for {
		c, err := t.ln.Accept()
		if err != nil {
			return
		}
		up, err := net.Dial("tcp", t.target)
		if err != nil {
			c.Close()
			continue
		}
		if !t.track(c, up) {
			return
		}
		var once sync.Once
		end := func() { once.Do(func() { c.Close(); up.Close(); t.untrack(c, up) }) }
		t.wg.Add(2)
		go func() { // requests: as they come
			defer t.wg.Done()
			defer end()
			_, _ = io.Copy(up, c)
		}()
		go func() { // answers: the hook sees each chunk first
			defer t.wg.Done()
			defer end()
			buf := make([]byte, 64<<10)
			for {
				n, err := up.Read(buf)
				if n > 0 {
					if h := t.hook(); h != nil {
						h(PubSubAnswer{Instance: t.instance(), Bytes: n})
					}
					if _, werr := c.Write(buf[:n]); werr != nil {
						return
					}
				}
				if err != nil {
					return
				}
			}
		}()
	}
}

func (t *tap) track(conns ...net.Conn) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		for _, c := range conns {
			c.Close()
		}
		return false
	}
	for _, c := range conns {
		t.conns[c] = true
	}
	return true
}

func (t *tap) untrack(conns ...net.Conn) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, c := range conns {
		delete(t.conns, c)
	}
}

func (t *tap) close() {
	t.mu.Lock()
	t.closed = true
	for c := range t.conns {
		c.Close()
	}
	t.mu.Unlock()
	t.ln.Close()
	t.wg.Wait()
}
