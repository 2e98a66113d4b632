package relayconn

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"github.com/nbd-wtf/go-nostr"
)

// Pool publishes to and subscribes on several relays, redialling a relay whose connection
// died on next use. It satisfies nips/nip47's Transport.
type Pool struct {
	urls []string

	mu     sync.Mutex
	conns  map[string]*Conn
	closed bool
}

// ErrNoRelay is returned when no relay of the pool took a publish or a subscription.
var ErrNoRelay = errors.New("relayconn: no relay available")

// NewPool returns a pool over urls. It dials nothing until used.
func NewPool(urls []string) *Pool {
	return &Pool{urls: urls, conns: map[string]*Conn{}}
}

// URLs returns the pool's relays.
func (p *Pool) URLs() []string { return p.urls }

// conn returns a live connection to url, dialling one if needed.
func (p *Pool) conn(ctx context.Context, url string) (*Conn, error) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil, ErrClosed
	}
	if c := p.conns[url]; c != nil && c.Err() == nil {
		p.mu.Unlock()
		return c, nil
	}
	p.mu.Unlock()
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	c, err := Dial(dctx, url)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		c.Close()
		return nil, ErrClosed
	}
	if old := p.conns[url]; old != nil && old.Err() == nil {
		c.Close() // another caller dialled first
		return old, nil
	}
	p.conns[url] = c
	return c, nil
}

// Published is one relay's answer to a publish: its OK, or Err when none came (the relay
// could not be reached, the connection dropped, ctx ended).
type Published struct {
	URL string
	OK  OK
	Err error
}

// PublishEach sends evt to every relay and returns each relay's answer, in the pool's order.
func (p *Pool) PublishEach(ctx context.Context, evt nostr.Event) []Published {
	out := make([]Published, len(p.urls))
	var wg sync.WaitGroup
	for i, u := range p.urls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i].URL = u
			c, err := p.conn(ctx, u)
			if err != nil {
				out[i].Err = err
				return
			}
			out[i].OK, out[i].Err = c.Publish(ctx, evt)
		}()
	}
	wg.Wait()
	return out
}

// Publish sends evt to every relay and succeeds when at least one accepted it; otherwise the
// error wraps ErrNoRelay and says what each relay answered.
func (p *Pool) Publish(ctx context.Context, evt nostr.Event) error {
	var reasons []string
	for _, o := range p.PublishEach(ctx, evt) {
		switch {
		case o.Err != nil:
			reasons = append(reasons, fmt.Sprintf("%s: %v", o.URL, o.Err))
		case !o.OK.Accepted:
			reasons = append(reasons, fmt.Sprintf("%s: %s", o.URL, o.OK.Reason))
		default:
			return nil
		}
	}
	return fmt.Errorf("%w: %s", ErrNoRelay, strings.Join(reasons, "; "))
}

// Subscribe subscribes f on every relay and merges what they send, each event once. It
// returns once at least one relay has answered EOSE (so events published after it returns are
// seen), and keeps re-subscribing relays whose connections drop until ctx ends; then the
// channel closes.
func (p *Pool) Subscribe(ctx context.Context, f nostr.Filter) (<-chan *nostr.Event, error) {
	out := make(chan *nostr.Event, 64)
	ready := make(chan error, len(p.urls))
	seen := newRecent(10_000)
	var wg sync.WaitGroup
	for _, u := range p.urls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.follow(ctx, u, f, out, seen, ready)
		}()
	}
	go func() { wg.Wait(); close(out) }()
	var errs []error
	for range p.urls {
		select {
		case err := <-ready:
			if err == nil {
				return out, nil
			}
			errs = append(errs, err)
		case <-ctx.Done():
			return out, ctx.Err()
		}
	}
	return out, fmt.Errorf("%w: %w", ErrNoRelay, errors.Join(errs...))
}

// follow keeps one relay's subscription alive, reporting the first attempt on ready.
func (p *Pool) follow(ctx context.Context, url string, f nostr.Filter, out chan<- *nostr.Event, seen *recent, ready chan<- error) {
	first := true
	backoff := 500 * time.Millisecond
	for ctx.Err() == nil {
		err := p.followOnce(ctx, url, f, out, seen, func() {
			if first {
				first = false
				ready <- nil
			}
			backoff = 500 * time.Millisecond
		})
		if first {
			first = false
			ready <- fmt.Errorf("%s: %w", url, err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff/2 + rand.N(backoff/2+1)):
		}
		backoff = min(2*backoff, 30*time.Second)
	}
}

// Before EOSE the caller is not reading yet (Subscribe has not returned), so stored events
// wait in a queue of their own: a REQ that matches more stored events than the channels
// hold must not block the connection's reader before it reaches EOSE. The queue is bounded:
// past maxPending events or maxPendingBytes of content the subscription counts as
// established (Subscribe returns, the caller reads) and the relay waits for the reader.
const (
	maxPending      = 1024
	maxPendingBytes = 8 << 20
)

func (p *Pool) followOnce(ctx context.Context, url string, f nostr.Filter, out chan<- *nostr.Event, seen *recent, established func()) error {
	c, err := p.conn(ctx, url)
	if err != nil {
		return err
	}
	sub, err := c.Subscribe(ctx, f)
	if err != nil {
		return err
	}
	defer sub.Close()
	eose := sub.EOSE
	var pending []*nostr.Event
	pendingBytes := 0
	ready := false
	establish := func() {
		if !ready {
			ready = true
			established()
		}
	}
	for {
		var send chan<- *nostr.Event
		var head *nostr.Event
		if ready && len(pending) > 0 {
			send, head = out, pending[0]
		}
		events := sub.Events
		if len(pending) >= maxPending || pendingBytes >= maxPendingBytes {
			establish()
			events = nil // the relay waits until the caller has read some
		}
		select {
		case <-eose:
			eose = nil
			establish()
		case evt := <-events:
			if !seen.add(evt.ID) {
				continue
			}
			pending = append(pending, evt)
			pendingBytes += len(evt.Content)
		case send <- head:
			pending[0] = nil
			pending = pending[1:]
			pendingBytes -= len(head.Content)
		case <-sub.Done():
			if !ready {
				// never delivered: a later subscription may bring them again
				for _, evt := range pending {
					seen.forget(evt.ID)
				}
				pending = nil
			}
			for _, evt := range pending { // what arrived before the end is still delivered
				select {
				case out <- evt:
				case <-ctx.Done():
					return ctx.Err()
				}
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("subscription ended: %s", sub.Reason())
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Close closes every connection; the pool cannot be used again.
func (p *Pool) Close() {
	p.mu.Lock()
	p.closed = true
	conns := p.conns
	p.conns = map[string]*Conn{}
	p.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
}

// forget drops id, so that it counts as new again.
func (r *recent) forget(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.ids[id]; !ok {
		return
	}
	delete(r.ids, id)
	for i, o := range r.order { // rare (a subscription that ended before EOSE): a scan is fine
		if o == id {
			r.order[i] = ""
		}
	}
}

// recent remembers the last n event ids, so a long subscription's memory stays bounded.
type recent struct {
	mu    sync.Mutex
	ids   map[string]struct{}
	order []string
	next  int
}

func newRecent(n int) *recent {
	return &recent{ids: make(map[string]struct{}, n), order: make([]string, n)}
}

// add reports whether id is new, remembering it.
func (r *recent) add(id string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.ids[id]; ok {
		return false
	}
	if old := r.order[r.next]; old != "" {
		delete(r.ids, old)
	}
	r.order[r.next] = id
	r.next = (r.next + 1) % len(r.order)
	r.ids[id] = struct{}{}
	return true
}
