package relay

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"github.com/fiatjaf/khatru"
	"github.com/nbd-wtf/go-nostr"
)

// What one peer can make the relay hold is bounded here and in khatru's outbox (see
// third_party/khatru/PATCHES.md): connections per IP, subscriptions per connection, the size of
// a REQ, and stored-event reads per connection and in total.

// RejectLargeRequests refuses REQs that would make the relay hold more than the configured
// caps: a subscription id longer than maxID, more than maxSubs open subscriptions, more than
// maxFilters filters, or more than maxValues values (ids, authors, kinds and tag values together)
// in one REQ. It is a khatru RejectRequest hook.
func RejectLargeRequests(maxID, maxSubs, maxFilters, maxValues int) func(context.Context, string, nostr.Filters, int) (bool, string) {
	return func(_ context.Context, id string, filters nostr.Filters, open int) (bool, string) {
		switch {
		case len(id) > maxID:
			return true, fmt.Sprintf("invalid: subscription id is %d bytes, more than the %d allowed", len(id), maxID)
		case open >= maxSubs:
			return true, fmt.Sprintf("blocked: %d subscriptions open, the most one connection may have; close one first", open)
		case len(filters) > maxFilters:
			return true, fmt.Sprintf("invalid: %d filters in one REQ, more than the %d allowed", len(filters), maxFilters)
		}
		n := 0
		for _, f := range filters {
			n += filterValues(f)
		}
		if n > maxValues {
			return true, fmt.Sprintf("invalid: %d ids, authors, kinds and tag values in one REQ, more than the %d allowed", n, maxValues)
		}
		return false, ""
	}
}

// RejectLargeCount refuses COUNT filters with more than maxValues values. It is a khatru
// RejectCountFilter hook.
func RejectLargeCount(maxValues int) func(context.Context, nostr.Filter) (bool, string) {
	return func(_ context.Context, f nostr.Filter) (bool, string) {
		if n := filterValues(f); n > maxValues {
			return true, fmt.Sprintf("invalid: %d ids, authors, kinds and tag values in one COUNT, more than the %d allowed", n, maxValues)
		}
		return false, ""
	}
}

func filterValues(f nostr.Filter) int {
	n := len(f.IDs) + len(f.Authors) + len(f.Kinds)
	for _, vs := range f.Tags {
		n += len(vs)
	}
	return n
}

// RateLimitRequests refuses REQs and COUNTs from an IP address over its token bucket.
func RateLimitRequests(rate float64, burst int, now func() time.Time) func(ctx context.Context) (bool, string) {
	tb := newTokenBucket(rate, burst, now)
	return func(ctx context.Context) (bool, string) {
		if ip := clientIPOf(ctx); ip != "" && !tb.allow(ip) {
			return true, fmt.Sprintf("rate-limited: more than %g subscriptions and counts per second from your address", rate)
		}
		return false, ""
	}
}

// connLimit counts open websocket connections per client IP.
type connLimit struct {
	max int
	mu  sync.Mutex
	n   map[netip.Addr]int
}

// acquire takes a slot for ip; false when ip has max connections open.
func (l *connLimit) acquire(ip netip.Addr) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.n == nil {
		l.n = map[netip.Addr]int{}
	}
	if l.max > 0 && l.n[ip] >= l.max {
		return false
	}
	l.n[ip]++
	return true
}

func (l *connLimit) release(ip netip.Addr) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.n[ip]--; l.n[ip] <= 0 {
		delete(l.n, ip)
	}
}

// hijackWatcher is the ResponseWriter khatru upgrades: it records whether the connection was
// taken over, so a failed upgrade gives its per-IP slot back at once.
type hijackWatcher struct {
	http.ResponseWriter
	hijacked bool
}

func (w *hijackWatcher) Hijack() (c net.Conn, rw *bufio.ReadWriter, err error) {
	h, ok := w.ResponseWriter.(http.Hijacker)
	if !ok {
		return nil, nil, fmt.Errorf("hijack: %T is not a Hijacker", w.ResponseWriter)
	}
	c, rw, err = h.Hijack()
	w.hijacked = err == nil
	return c, rw, err
}

// Unwrap lets http.ResponseController reach the original writer.
func (w *hijackWatcher) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// querySlots bounds the stored-event reads in progress per connection: a read holds its slot
// until its last event is queued for the client, so a client that reads slowly holds its own
// slots and nobody else's.
type querySlots struct {
	per int
	mu  sync.Mutex
	ws  map[*khatru.WebSocket]chan struct{}
}

// acquire waits for one of ws's slots (or ctx). ws nil (the relay's own reads) needs none.
func (q *querySlots) acquire(ctx context.Context, ws *khatru.WebSocket) (release func(), err error) {
	if ws == nil || q.per <= 0 {
		return func() {}, nil
	}
	q.mu.Lock()
	if q.ws == nil {
		q.ws = map[*khatru.WebSocket]chan struct{}{}
	}
	slots := q.ws[ws]
	if slots == nil {
		slots = make(chan struct{}, q.per)
		q.ws[ws] = slots
	}
	q.mu.Unlock()
	select {
	case slots <- struct{}{}:
		return func() { <-slots }, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// forget drops a closed connection's slots.
func (q *querySlots) forget(ws *khatru.WebSocket) {
	q.mu.Lock()
	delete(q.ws, ws)
	q.mu.Unlock()
}
