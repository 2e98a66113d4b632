package lnd

import (
	"context"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/sparecycles/sparecycles/nips/nip47"
	"github.com/sparecycles/sparecycles/wallet"
)

// Reconnect back-off for the invoice stream.
const (
	minBackoff = 100 * time.Millisecond
	maxBackoff = 30 * time.Second
)

// Subscribe delivers payment_received for invoices that settle (hold invoices too, once
// settled), payment_sent for payments PayInvoice completes and hold_invoice_accepted for hold
// invoices a payment arrived for, until ctx ends or Close; then the channel is closed. Hold
// invoices are followed one stream each (see watchHold); Subscribe resumes following those
// still open or accepted, and an accepted one is notified to it again.
//
// It follows lnd's invoice stream, reconnecting with back-off when it drops. lnd only starts
// answering a stream once it has an event, so Subscribe cannot know when lnd has registered
// it; instead it asks for every invoice added after the newest one at the time of the call,
// and lnd replays any that settled before the stream was up. On reconnecting it asks for
// settlements since the last one seen. An invoice that settles while the stream is down is
// reported once it is back (but, before the first settlement seen, only if it was made after
// Subscribe was called). Repeats from these replays are dropped.
//
// Events are queued without bound rather than dropped: a consumer that stops reading holds
// them in memory until ctx ends.
//
// Errors: ErrClosed after Close; an error when lnd cannot be reached at the start.
func (b *Backend) Subscribe(ctx context.Context) (<-chan wallet.BackendEvent, error) {
	var latest listInvoicesReply
	q := url.Values{"reversed": {"true"}, "num_max_invoices": {"1"}}
	if err := b.c.call(ctx, http.MethodGet, "/v1/invoices?"+q.Encode(), nil, &latest); err != nil {
		return nil, fmt.Errorf("subscribe: newest invoice: %w", err)
	}

	ctx, cancel := context.WithCancel(ctx)
	s := &subscriber{cancel: cancel, wake: make(chan struct{}, 1)}
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		cancel()
		return nil, ErrClosed
	}
	b.subs[s] = struct{}{}
	b.wg.Add(2)
	b.mu.Unlock()

	out := make(chan wallet.BackendEvent)
	streamDone := make(chan struct{})
	go func() {
		defer b.wg.Done()
		defer close(streamDone)
		f := follower{b: b, s: s, addIndex: int64(latest.LastIndexOffset), seen: newRecent(1024)}
		f.run(ctx)
	}()
	go func() {
		defer b.wg.Done()
		defer close(out)
		s.forward(ctx, out)
		b.mu.Lock()
		delete(b.subs, s)
		b.mu.Unlock()
		cancel()
		<-streamDone
	}()
	// Hold invoices accepted while no one listened are notified to this subscriber.
	if err := b.resumeHolds(ctx); err != nil {
		cancel()
		return nil, fmt.Errorf("subscribe: %w", err)
	}
	return out, nil
}

// notify queues ev for every subscriber.
func (b *Backend) notify(ev wallet.BackendEvent) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for s := range b.subs {
		s.push(ev)
	}
}

// subscriber is one Subscribe call: a queue that the invoice stream and PayInvoice fill and
// that forward drains into the caller's channel. Only forward sends on (and closes) that
// channel, so producers never block and never race with its closing.
type subscriber struct {
	cancel context.CancelFunc

	mu    sync.Mutex
	queue []wallet.BackendEvent
	wake  chan struct{} // capacity 1: "the queue has something"
}

func (s *subscriber) push(ev wallet.BackendEvent) {
	s.mu.Lock()
	s.queue = append(s.queue, ev)
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default: // already signalled
	}
}

func (s *subscriber) forward(ctx context.Context, out chan<- wallet.BackendEvent) {
	for {
		s.mu.Lock()
		var ev wallet.BackendEvent
		ok := len(s.queue) > 0
		if ok {
			ev = s.queue[0]
			s.queue[0] = wallet.BackendEvent{}
			s.queue = s.queue[1:]
		}
		s.mu.Unlock()
		if !ok {
			select {
			case <-ctx.Done():
				return
			case <-s.wake:
			}
			continue
		}
		select {
		case <-ctx.Done():
			return
		case out <- ev:
		}
	}
}

// follower reads lnd's invoice stream for one subscriber.
type follower struct {
	b                     *Backend
	s                     *subscriber
	addIndex, settleIndex int64 // where to resume: the newest add and settle seen
	seen                  *recent
}

func (f *follower) run(ctx context.Context) {
	reconnect(ctx, func() (bool, bool) { return false, f.follow(ctx) })
}

// reconnect calls follow (one streaming request) again and again until it reports done or
// ctx ends, waiting between calls with a back-off from minBackoff to maxBackoff that starts
// over after a call that got an event.
func reconnect(ctx context.Context, follow func() (done, gotEvent bool)) {
	backoff := minBackoff
	for {
		done, gotEvent := follow()
		if done || ctx.Err() != nil {
			return
		}
		if gotEvent {
			backoff = minBackoff
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

// follow reads one connection of the stream until it ends, and reports whether it delivered
// any event. Errors end the connection; run reconnects.
func (f *follower) follow(ctx context.Context) (gotEvent bool) {
	q := url.Values{}
	if f.addIndex > 0 {
		q.Set("add_index", strconv.FormatInt(f.addIndex, 10))
	}
	if f.settleIndex > 0 {
		q.Set("settle_index", strconv.FormatInt(f.settleIndex, 10))
	}
	path := "/v1/invoices/subscribe"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	st, err := f.b.c.openStream(ctx, http.MethodGet, path, nil)
	if err != nil {
		return false
	}
	defer st.close()
	for {
		var in invoice
		if err := st.next(&in); err != nil {
			return gotEvent
		}
		gotEvent = true
		f.handle(in)
	}
}

func (f *follower) handle(in invoice) {
	// Until a settlement is seen, resume from the first add index, so that a reconnect
	// replays invoices made since Subscribe; after it, settle_index covers them.
	if f.settleIndex > 0 {
		f.addIndex = max(f.addIndex, int64(in.AddIndex))
	}
	if in.State != "SETTLED" {
		return
	}
	f.settleIndex = max(f.settleIndex, int64(in.SettleIndex))
	hash := hex.EncodeToString(in.RHash)
	if !f.seen.add(hash) {
		return
	}
	f.b.mu.Lock()
	account := f.b.accounts[hash] // "" for invoices made elsewhere or before a restart
	f.b.mu.Unlock()
	f.s.push(wallet.BackendEvent{
		Account: account,
		Notification: nip47.Notification{
			Type:        nip47.NotificationPaymentReceived,
			Transaction: in.incoming(f.b.now()),
		},
	})
}

// recent remembers the last n keys added, to drop repeats.
type recent struct {
	keys map[string]struct{}
	ring []string
	next int
}

func newRecent(n int) *recent {
	return &recent{keys: make(map[string]struct{}, n), ring: make([]string, n)}
}

// add reports whether key is new, and remembers it.
func (r *recent) add(key string) bool {
	if _, ok := r.keys[key]; ok {
		return false
	}
	delete(r.keys, r.ring[r.next])
	r.ring[r.next] = key
	r.keys[key] = struct{}{}
	r.next = (r.next + 1) % len(r.ring)
	return true
}
