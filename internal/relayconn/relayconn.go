// Package relayconn is a small, race-free Nostr relay client on go-nostr's Connection and
// envelopes: publish and read the exact OK reason, subscribe and query until EOSE, and NIP-42
// AUTH. One goroutine owned by the Conn reads; Close waits for it.
//
// Why not go-nostr's Relay: in v0.52.3 its Close and its reader goroutine both touch
// Relay.Connection without synchronisation (a data race whenever a connection ends, which the
// race detector reports as soon as a relay restarts under a test), and its Publish returns nil
// when the connection drops before an OK arrives, so "published" cannot be told from "lost".
package relayconn

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/nbd-wtf/go-nostr"
)

// Sentinel errors.
var (
	ErrClosed = errors.New("relayconn: connection closed")
	ErrNoAuth = errors.New("relayconn: relay sent no AUTH challenge")
)

// OK is a relay's answer to a published event.
type OK struct {
	Accepted bool
	Reason   string // the relay's message, with its NIP-01 prefix
}

// Conn is one websocket connection to a relay.
type Conn struct {
	URL string

	conn *nostr.Connection
	ctx  context.Context // ends when the connection ends
	stop context.CancelCauseFunc
	done chan struct{} // closed when the reader has exited

	mu        sync.Mutex
	oks       map[string]chan OK
	subs      map[string]*Subscription
	challenge string
	authed    chan struct{} // closed on the first AUTH challenge

	nextSub atomic.Int64
	// Invalid counts received events dropped for a bad id or signature.
	Invalid atomic.Int64
}

// Dial connects to url.
func Dial(ctx context.Context, url string) (*Conn, error) {
	nc, err := nostr.NewConnection(ctx, url, nil, nil)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", url, err)
	}
	cctx, stop := context.WithCancelCause(context.Background())
	c := &Conn{
		URL: url, conn: nc, ctx: cctx, stop: stop, done: make(chan struct{}),
		oks: map[string]chan OK{}, subs: map[string]*Subscription{}, authed: make(chan struct{}),
	}
	go c.read()
	return c, nil
}

// Done is closed when the connection has ended; Err says why.
func (c *Conn) Done() <-chan struct{} { return c.done }

// Err is why the connection ended, or nil while it is open.
func (c *Conn) Err() error {
	select {
	case <-c.done:
		return context.Cause(c.ctx)
	default:
		return nil
	}
}

// Close ends the connection and waits for its reader to exit.
func (c *Conn) Close() error {
	c.stop(ErrClosed)
	err := c.conn.Close()
	<-c.done
	return err
}

func (c *Conn) read() {
	defer close(c.done)
	defer c.failAll()
	var buf bytes.Buffer
	for {
		buf.Reset()
		if err := c.conn.ReadMessage(c.ctx, &buf); err != nil {
			c.stop(fmt.Errorf("%w: %w", ErrClosed, err))
			c.conn.Close()
			return
		}
		c.dispatch(nostr.ParseMessage(buf.String()))
	}
}

func (c *Conn) dispatch(env nostr.Envelope) {
	switch env := env.(type) {
	case *nostr.OKEnvelope:
		c.mu.Lock()
		ch := c.oks[env.EventID]
		delete(c.oks, env.EventID)
		c.mu.Unlock()
		if ch != nil {
			ch <- OK{Accepted: env.OK, Reason: env.Reason}
		}
	case *nostr.EventEnvelope:
		if env.SubscriptionID == nil {
			return
		}
		sub := c.sub(*env.SubscriptionID)
		if sub == nil {
			return
		}
		if ok, _ := env.Event.CheckSignature(); !ok || !env.Event.CheckID() {
			c.Invalid.Add(1)
			return
		}
		evt := env.Event
		select {
		case sub.Events <- &evt:
		case <-sub.ctx.Done():
		}
	case *nostr.EOSEEnvelope:
		if sub := c.sub(string(*env)); sub != nil {
			sub.eoseOnce.Do(func() { close(sub.EOSE) })
		}
	case *nostr.ClosedEnvelope:
		if sub := c.sub(env.SubscriptionID); sub != nil {
			sub.end(env.Reason)
		}
	case *nostr.AuthEnvelope:
		if env.Challenge == nil {
			return
		}
		c.mu.Lock()
		first := c.challenge == ""
		c.challenge = *env.Challenge
		c.mu.Unlock()
		if first {
			close(c.authed)
		}
	}
}

func (c *Conn) sub(id string) *Subscription {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.subs[id]
}

// failAll wakes everyone waiting on a connection that ended.
func (c *Conn) failAll() {
	c.mu.Lock()
	oks, subs := c.oks, c.subs
	c.oks, c.subs = map[string]chan OK{}, map[string]*Subscription{}
	c.mu.Unlock()
	for _, ch := range oks {
		close(ch)
	}
	for _, s := range subs {
		s.end("connection closed")
	}
}

func (c *Conn) write(ctx context.Context, env nostr.Envelope) error {
	b, err := env.MarshalJSON()
	if err != nil {
		return err
	}
	if err := c.conn.WriteMessage(ctx, b); err != nil {
		if cause := c.Err(); cause != nil {
			return cause
		}
		return err
	}
	return nil
}

// Publish sends evt and waits for the relay's OK. An error means no OK arrived: the
// connection ended or ctx did, and whether the relay stored the event is unknown.
func (c *Conn) Publish(ctx context.Context, evt nostr.Event) (OK, error) {
	return c.await(ctx, evt.ID, &nostr.EventEnvelope{Event: evt})
}

func (c *Conn) await(ctx context.Context, id string, env nostr.Envelope) (OK, error) {
	ch := make(chan OK, 1)
	c.mu.Lock()
	if c.Err() != nil {
		c.mu.Unlock()
		return OK{}, c.Err()
	}
	c.oks[id] = ch
	c.mu.Unlock()
	drop := func() {
		c.mu.Lock()
		delete(c.oks, id)
		c.mu.Unlock()
	}
	if err := c.write(ctx, env); err != nil {
		drop()
		return OK{}, fmt.Errorf("publish %s to %s: %w", id, c.URL, err)
	}
	select {
	case ok, open := <-ch:
		if !open {
			return OK{}, fmt.Errorf("publish %s to %s: no OK: %w", id, c.URL, c.Err())
		}
		return ok, nil
	case <-ctx.Done():
		drop()
		return OK{}, fmt.Errorf("publish %s to %s: no OK: %w", id, c.URL, ctx.Err())
	}
}

// Subscription is one REQ. Events arrive on Events until the subscription ends; EOSE is
// closed when the relay has sent every stored match.
type Subscription struct {
	ID     string
	Events chan *nostr.Event
	EOSE   chan struct{}

	conn     *Conn
	ctx      context.Context
	cancel   context.CancelFunc
	eoseOnce sync.Once
	endOnce  sync.Once
	reason   atomic.Pointer[string]
}

// Subscribe sends a REQ. The subscription ends when ctx ends, when the relay CLOSEs it or the
// connection ends; then Done is closed and Reason says why.
func (c *Conn) Subscribe(ctx context.Context, filters ...nostr.Filter) (*Subscription, error) {
	sctx, cancel := context.WithCancel(ctx)
	s := &Subscription{
		ID:     "s" + strconv.FormatInt(c.nextSub.Add(1), 10),
		Events: make(chan *nostr.Event, 64),
		EOSE:   make(chan struct{}),
		conn:   c, ctx: sctx, cancel: cancel,
	}
	c.mu.Lock()
	if err := c.Err(); err != nil {
		c.mu.Unlock()
		cancel()
		return nil, err
	}
	c.subs[s.ID] = s
	c.mu.Unlock()
	if err := c.write(ctx, &nostr.ReqEnvelope{SubscriptionID: s.ID, Filters: filters}); err != nil {
		s.end("connection closed")
		return nil, fmt.Errorf("subscribe on %s: %w", c.URL, err)
	}
	go func() { // a caller's ctx that ends closes the subscription
		<-sctx.Done()
		s.Close()
	}()
	return s, nil
}

// end records why the subscription ended and ends it; it reports whether this call did.
func (s *Subscription) end(reason string) (first bool) {
	s.endOnce.Do(func() {
		first = true
		s.reason.Store(&reason)
		s.conn.mu.Lock()
		delete(s.conn.subs, s.ID)
		s.conn.mu.Unlock()
		s.cancel()
	})
	return first
}

// Done is closed when the subscription has ended.
func (s *Subscription) Done() <-chan struct{} { return s.ctx.Done() }

// Reason is why the subscription ended ("" while it runs): the relay's CLOSED message,
// "connection closed" or "closed by us".
func (s *Subscription) Reason() string {
	if r := s.reason.Load(); r != nil {
		return *r
	}
	return ""
}

// Close ends the subscription and tells the relay (CLOSE).
func (s *Subscription) Close() {
	if s.end("closed by us") && s.conn.Err() == nil {
		env := nostr.CloseEnvelope(s.ID)
		_ = s.conn.write(context.Background(), &env)
	}
}

// Query returns the stored events matching filters: everything up to EOSE.
func (c *Conn) Query(ctx context.Context, filters ...nostr.Filter) ([]*nostr.Event, error) {
	s, err := c.Subscribe(ctx, filters...)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	var out []*nostr.Event
	for {
		select {
		case evt := <-s.Events:
			out = append(out, evt)
		case <-s.EOSE:
			for { // drain what arrived before EOSE
				select {
				case evt := <-s.Events:
					out = append(out, evt)
				default:
					return out, nil
				}
			}
		case <-s.Done():
			return out, fmt.Errorf("query on %s: %s", c.URL, s.Reason())
		}
	}
}

// Auth answers the relay's NIP-42 challenge (waiting for one if none arrived yet) with an
// event signed by sign.
func (c *Conn) Auth(ctx context.Context, sign func(*nostr.Event) error) (OK, error) {
	select {
	case <-c.authed:
	case <-ctx.Done():
		return OK{}, ErrNoAuth
	case <-c.done:
		return OK{}, c.Err()
	}
	c.mu.Lock()
	challenge := c.challenge
	c.mu.Unlock()
	evt := nostr.Event{
		Kind: nostr.KindClientAuthentication, CreatedAt: nostr.Now(),
		Tags: nostr.Tags{{"relay", c.URL}, {"challenge", challenge}},
	}
	if err := sign(&evt); err != nil {
		return OK{}, fmt.Errorf("sign auth: %w", err)
	}
	return c.await(ctx, evt.ID, &nostr.AuthEnvelope{Event: evt})
}
