package calendaremu

import (
	"context"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// Push channels: events.watch, channels.stop and delivery. Each channel has a
// worker goroutine draining its queue, so API calls never wait on a receiver.
// Delivery follows Google: no body, X-Goog-* headers, 5xx (500/502/503/504) retried
// with exponential backoff, 2xx/102 success, anything else a failed delivery.

type channel struct {
	id, token, address, user, resourceURI string
	cal                                   *calData
	types                                 []string // events.watch's eventTypes (none: every type)
	expiry                                time.Time
	created                               time.Time
	msgNum                                int64
	stopped                               bool
	expired                               bool

	qmu    sync.Mutex
	queue  []pushMsg
	wake   chan struct{}
	halt   chan struct{}
	haltMu sync.Once
}

type pushMsg struct {
	num   int64
	state string
	delay time.Duration
}

type channelBody struct {
	Kind        string            `json:"kind,omitempty"`
	ID          string            `json:"id,omitempty"`
	ResourceID  string            `json:"resourceId,omitempty"`
	ResourceURI string            `json:"resourceUri,omitempty"`
	Token       string            `json:"token,omitempty"`
	Expiration  string            `json:"expiration,omitempty"` // int64 as a string, per the discovery doc
	Type        string            `json:"type,omitempty"`
	Address     string            `json:"address,omitempty"`
	Params      map[string]string `json:"params,omitempty"`
	Payload     bool              `json:"payload,omitempty"`
}

func (ch *channel) stopLocked() {
	ch.stopped = true
	ch.haltMu.Do(func() { close(ch.halt) })
}

func (s *Server) eventsWatch(rq *request) (int, any, *apiError) {
	var in channelBody
	if err := decodeBody(rq, &in); err != nil {
		return 0, nil, err
	}
	switch {
	case in.ID == "":
		return 0, nil, errRequired("Required channel id.")
	case len(in.ID) > 64:
		return 0, nil, errInvalid("Channel id must be at most 64 characters.")
	case in.Type != "web_hook" && in.Type != "webhook":
		return 0, nil, errInvalid("Invalid channel type '" + in.Type + "'; only web_hook is supported.")
	case in.Address == "":
		return 0, nil, errRequired("Required channel address.")
	case len(in.Token) > 256 || !utf8.ValidString(in.Token):
		return 0, nil, errInvalid("Channel token must be at most 256 characters.")
	}
	u, err := url.Parse(in.Address)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return 0, nil, errInvalid("Invalid channel address '" + in.Address + "'.")
	}
	if u.Scheme == "http" && !loopback(u.Hostname()) {
		// Google wants HTTPS (with a certificate a public CA signed). The
		// emulator lets loopback addresses use http: local stacks have no
		// certificate.
		return 0, nil, newErr(400, "global", "push.webhookUrlNotHttps", "WebHook callback must be HTTPS: "+in.Address)
	}
	now := time.Now()
	ttl := 604800 * time.Second
	if v, ok := in.Params["ttl"]; ok {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 1 {
			return 0, nil, errInvalid("Invalid ttl value '" + v + "'.")
		}
		ttl = time.Duration(min(n, 1<<32)) * time.Second
	} else if in.Expiration != "" {
		ms, err := strconv.ParseInt(in.Expiration, 10, 64)
		if err != nil || ms > 1<<50 || ms < -(1<<50) {
			return 0, nil, errInvalid("Invalid expiration value '" + in.Expiration + "'.")
		}
		ttl = time.UnixMilli(ms).Sub(now)
		if ttl <= 0 {
			return 0, nil, errInvalid("Channel expiration is in the past.")
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c, aerr := s.calendarLocked(rq.user, rq.calID)
	if aerr != nil {
		return 0, nil, aerr
	}
	if pushRefused(c.kind) {
		return 0, nil, errPushNotSupported()
	}
	if old := s.channels[in.ID]; old != nil && !old.stopped {
		return 0, nil, newErr(400, "global", "channelIdNotUnique", "Channel id not unique")
	}
	ttl = min(ttl, s.opts.MaxTTL)
	types, aerr := parseEventTypes(rq.query["eventTypes"]) // eventtypes.go: only these types' changes are pushed
	if aerr != nil {
		return 0, nil, aerr
	}
	ch := &channel{id: in.ID, token: in.Token, address: in.Address, user: rq.user, cal: c, types: types,
		resourceURI: "https://www.googleapis.com/calendar/v3/calendars/" + url.PathEscape(rq.calID) + "/events?alt=json",
		expiry:      now.Add(ttl).Truncate(time.Millisecond), created: now,
		wake: make(chan struct{}, 1), halt: make(chan struct{})}
	s.channels[in.ID] = ch
	ch.msgNum = 1
	s.enqueueLocked(ch, "sync", 1)
	s.wg.Add(1)
	go s.deliverLoop(ch, ch.expiry)
	s.log.Info("channel created", "channel", ch.id, "calendar", c.id, "address", ch.address, "expiration", ch.expiry)
	return 200, &channelBody{Kind: "api#channel", ID: ch.id, ResourceID: c.resourceID, ResourceURI: ch.resourceURI,
		Token: ch.token, Expiration: strconv.FormatInt(ch.expiry.UnixMilli(), 10)}, nil
}

func (s *Server) channelsStop(rq *request) (int, any, *apiError) {
	var in channelBody
	if err := decodeBody(rq, &in); err != nil {
		return 0, nil, err
	}
	if in.ID == "" {
		return 0, nil, errRequired("Required channel id.")
	}
	if in.ResourceID == "" {
		return 0, nil, errRequired("Required resource id.")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	ch := s.channels[in.ID]
	if ch == nil || ch.stopped || ch.cal.resourceID != in.ResourceID {
		return 0, nil, newErr(404, "global", "notFound", "Channel '"+in.ID+"' not found for project 'calsync-emulator'")
	}
	if ch.user != rq.user {
		return 0, nil, errForbidden()
	}
	ch.stopLocked()
	s.log.Info("channel stopped", "channel", ch.id, "calendar", ch.cal.id)
	return 204, nil, nil
}

// notifyLocked queues an "exists" message on every live channel of c.
func (s *Server) notifyLocked(c *calData) { s.notifyTypeLocked(c, "") }

// notifyTypeLocked notifies the channels of c watching events of type typ
// ("": every channel).
func (s *Server) notifyTypeLocked(c *calData, typ string) {
	for _, ch := range s.channels {
		if ch.cal == c && !ch.stopped && (typ == "" || len(ch.types) == 0 || slices.Contains(ch.types, typ)) {
			ch.msgNum += 1 + int64(s.rng.IntN(s.opts.MessageNumberJump))
			s.enqueueLocked(ch, "exists", ch.msgNum)
		}
	}
}

// enqueueLocked applies notification faults and queues the message.
func (s *Server) enqueueLocked(ch *channel, state string, num int64) {
	f := &s.nfaults
	if f.hit(&f.DropCount, f.DropProbability, s.rng) {
		s.stats.Notifications.Dropped++
		return
	}
	copies := 1
	if f.hit(&f.DuplicateCount, f.DuplicateProbability, s.rng) {
		copies = 2
		s.stats.Notifications.Duplicated++
	}
	var delay time.Duration
	if f.Delay > 0 && f.hit(&f.DelayCount, f.DelayProbability, s.rng) {
		delay = f.Delay
		s.stats.Notifications.Delayed++
	}
	ch.qmu.Lock()
	for range copies {
		ch.queue = append(ch.queue, pushMsg{num: num, state: state, delay: delay})
	}
	ch.qmu.Unlock()
	select {
	case ch.wake <- struct{}{}:
	default:
	}
}

func (s *Server) deliverLoop(ch *channel, expiry time.Time) {
	defer s.wg.Done()
	// The worker ends with its channel: stopped, expired by control, or past expiry.
	expired := time.NewTimer(time.Until(expiry))
	defer expired.Stop()
	for {
		select {
		case <-ch.halt:
			return
		case <-s.done:
			return
		case <-expired.C:
			s.mu.Lock()
			ch.expired = true
			s.mu.Unlock()
			s.log.Info("channel expired", "channel", ch.id)
			return
		case <-ch.wake:
		}
		for {
			ch.qmu.Lock()
			if len(ch.queue) == 0 {
				ch.qmu.Unlock()
				break
			}
			m := ch.queue[0]
			ch.queue = ch.queue[1:]
			ch.qmu.Unlock()
			if m.delay > 0 {
				// A delayed message travels on its own, so later ones may overtake it.
				s.wg.Add(1)
				go func() {
					defer s.wg.Done()
					select {
					case <-time.After(m.delay):
						s.deliver(ch, m)
					case <-ch.halt:
					case <-s.done:
					}
				}()
				continue
			}
			s.deliver(ch, m)
		}
	}
}

// deliver sends one message with retries. Expired or stopped channels send nothing.
func (s *Server) deliver(ch *channel, m pushMsg) {
	delay := s.opts.PushRetryBaseDelay
	for attempt := 1; ; attempt++ {
		s.mu.Lock()
		live, expiry := !ch.stopped && time.Now().Before(ch.expiry), ch.expiry
		if !live && !ch.stopped && !ch.expired {
			ch.expired = true
			s.log.Info("channel expired", "channel", ch.id)
		}
		s.mu.Unlock()
		if !live {
			return
		}
		code, err := s.post(ch, m, expiry)
		switch {
		case err == nil && (code/100 == 2 || code == 102):
			s.countNotif(func(n *NotificationStats) { n.Sent++ })
			return
		case err != nil || code == 500 || code == 502 || code == 503 || code == 504:
			if attempt >= s.opts.PushMaxAttempts {
				s.countNotif(func(n *NotificationStats) { n.Failed++ })
				s.log.Warn("notification failed", "channel", ch.id, "message_number", m.num, "status", code, "attempts", attempt)
				return
			}
			s.countNotif(func(n *NotificationStats) { n.Retried++ })
			select {
			case <-time.After(delay):
			case <-ch.halt:
				return
			case <-s.done:
				return
			}
			delay *= 2
		default:
			s.countNotif(func(n *NotificationStats) { n.Failed++ })
			s.log.Warn("notification rejected", "channel", ch.id, "message_number", m.num, "status", code)
			return
		}
	}
}

func (s *Server) countNotif(f func(*NotificationStats)) {
	s.mu.Lock()
	f(&s.stats.Notifications)
	s.mu.Unlock()
}

func (s *Server) post(ch *channel, m pushMsg, expiry time.Time) (int, error) {
	ctx, cancel := context.WithTimeout(s.baseCtx, s.opts.PushTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, ch.address, http.NoBody)
	if err != nil {
		return 0, err
	}
	// Google's exact header spelling (set directly: Header.Set would canonicalize "ID" to "Id").
	h := req.Header
	h["X-Goog-Channel-ID"] = []string{ch.id}
	if ch.token != "" {
		h["X-Goog-Channel-Token"] = []string{ch.token}
	}
	h["X-Goog-Channel-Expiration"] = []string{expiry.UTC().Format(http.TimeFormat)}
	h["X-Goog-Message-Number"] = []string{strconv.FormatInt(m.num, 10)}
	h["X-Goog-Resource-ID"] = []string{ch.cal.resourceID}
	h["X-Goog-Resource-State"] = []string{m.state}
	h["X-Goog-Resource-URI"] = []string{ch.resourceURI}
	h.Set("User-Agent", "APIs-Google; (+https://developers.google.com/webmasters/APIs-Google.html)")
	resp, err := s.opts.HTTPClient.Do(req)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

// loopback reports whether host is a loopback IP literal or localhost.
func loopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Unmap().IsLoopback()
}
