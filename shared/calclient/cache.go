package calclient

import (
	"container/list"

	"google.golang.org/api/calendar/v3"
)

// DefaultMaxClients bounds the Calendar clients a Factory keeps when
// Options.MaxClients is 0.
const DefaultMaxClients = 1000

// clientCache keeps the most recently used Calendar clients, at most max.
// A client of an OAuth identity holds its user's refresh token in clear (in
// its token source): the cache must not grow with every identity a process
// ever served. An evicted client is rebuilt on its identity's next use.
// Not safe for concurrent use: the Factory's mutex guards it.
type clientCache struct {
	max   int
	order *list.List // of *cached, most recently used first
	byID  map[string]*list.Element
}

type cached struct {
	id  string
	svc *calendar.Service
}

func newClientCache(max int) *clientCache {
	return &clientCache{max: max, order: list.New(), byID: map[string]*list.Element{}}
}

func (c *clientCache) get(id string) (*calendar.Service, bool) {
	e, ok := c.byID[id]
	if !ok {
		return nil, false
	}
	c.order.MoveToFront(e)
	return e.Value.(*cached).svc, true
}

// put adds a client, evicting the least recently used past max.
func (c *clientCache) put(id string, svc *calendar.Service) {
	if e, ok := c.byID[id]; ok {
		e.Value.(*cached).svc = svc
		c.order.MoveToFront(e)
		return
	}
	c.byID[id] = c.order.PushFront(&cached{id: id, svc: svc})
	for c.order.Len() > c.max {
		c.remove(c.order.Back().Value.(*cached).id)
	}
}

func (c *clientCache) remove(id string) {
	if e, ok := c.byID[id]; ok {
		c.order.Remove(e)
		delete(c.byID, id)
	}
}

func (c *clientCache) len() int { return c.order.Len() }
