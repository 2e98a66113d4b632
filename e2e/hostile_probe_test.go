//go:build linux

package e2e

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nbd-wtf/go-nostr"

	"github.com/sparecycles/sparecycles/internal/relayconn"
	"github.com/sparecycles/sparecycles/nips/lease"
)

// probeWait bounds each step of a probe round: an OK, a delivery, a query's EOSE. It is far
// above any latency the suite accepts; it only keeps a wedged relay from stalling the test.
const probeWait = 5 * time.Second

// maxProbeFailures ends a probe run early: three steps that each waited probeWait say enough.
const maxProbeFailures = 3

// probe is the honest client the hostile suite measures: what a customer and a worker feel. It
// publishes from 127.0.0.1 on one connection and follows its own events on a second one: each
// round posts a job request (kind 5000), reads it back by id, and claims a lease on it (kind
// 7000 processing feedback with a lease tag, nips/lease.md), timing publish→OK and
// publish→delivery of both. Keys are fresh every round so the per-author limit never applies
// to it; its events carry a "t" tag unique to the probe, which its subscription follows.
type probe struct {
	tb  testing.TB
	tag string
	pub *relayconn.Conn // publishes and queries
	sub *relayconn.Conn // follows the probe's events
	s   *relayconn.Subscription

	followed chan struct{} // closed when the delivery goroutine has exited

	mu       sync.Mutex
	waiting  map[string]chan time.Time // event id → its arrival on the subscription
	accepted []string                  // ids of the probe's events that got OK true
}

// probeRun is what one run of the probe measured.
type probeRun struct {
	ok       []time.Duration // publish→OK, accepted events
	delivery []time.Duration // publish→arrival on the probe's subscription
	query    []time.Duration // REQ by id→EOSE
	failures []string
}

func (r *probeRun) fail(format string, args ...any) {
	r.failures = append(r.failures, fmt.Sprintf(format, args...))
}

// newProbe connects the probe to url and waits until its subscription is live (EOSE).
func newProbe(tb testing.TB, url string) *probe {
	tb.Helper()
	dial := func() *relayconn.Conn {
		ctx, cancel := context.WithTimeout(context.Background(), probeWait)
		defer cancel()
		c, err := relayconn.Dial(ctx, url)
		if err != nil {
			tb.Fatalf("probe: %v", err)
		}
		tb.Cleanup(func() { c.Close() })
		return c
	}
	p := &probe{tb: tb, tag: "probe-" + nostr.GeneratePrivateKey()[:16], waiting: map[string]chan time.Time{},
		followed: make(chan struct{})}
	p.pub, p.sub = dial(), dial()
	ctx, cancel := context.WithCancel(context.Background())
	tb.Cleanup(func() { cancel(); <-p.followed })
	s, err := p.sub.Subscribe(ctx, nostr.Filter{Kinds: []int{5000, 7000}, Tags: nostr.TagMap{"t": {p.tag}}})
	if err != nil {
		tb.Fatalf("probe: %v", err)
	}
	p.s = s
	timer := time.NewTimer(probeWait)
	defer timer.Stop()
	select {
	case <-s.EOSE:
	case <-s.Done():
		tb.Fatalf("probe: subscription ended before EOSE: %s", s.Reason())
	case <-timer.C:
		tb.Fatalf("probe: no EOSE within %v", probeWait)
	}
	go p.follow()
	return p
}

// follow stamps each of the probe's events as it arrives and hands the time to its publisher.
func (p *probe) follow() {
	defer close(p.followed)
	for {
		select {
		case evt := <-p.s.Events:
			at := time.Now()
			p.mu.Lock()
			ch := p.waiting[evt.ID]
			delete(p.waiting, evt.ID)
			p.mu.Unlock()
			if ch != nil {
				ch <- at // buffered
			}
		case <-p.s.Done():
			return
		}
	}
}

// run plays rounds rounds (fewer if ctx ends or maxProbeFailures steps fail).
func (p *probe) run(ctx context.Context, rounds int) probeRun {
	var r probeRun
	for i := 0; i < rounds && len(r.failures) < maxProbeFailures && ctx.Err() == nil; i++ {
		p.round(ctx, &r)
	}
	if err := ctx.Err(); err != nil && len(r.failures) < maxProbeFailures {
		r.fail("probe run cut short: %v", err)
	}
	return r
}

func (p *probe) round(ctx context.Context, r *probeRun) {
	customer, worker := nostr.GeneratePrivateKey(), nostr.GeneratePrivateKey()
	req := signed(customer, nostr.Event{Kind: 5000, Tags: nostr.Tags{
		{"i", "what the probe asks", "text"}, {"bid", "1000"}, {"t", p.tag},
	}})
	if !p.publish(ctx, req, r) {
		return
	}
	// OK true means stored: a REQ sent after the OK finds it
	qctx, cancel := context.WithTimeout(ctx, probeWait)
	t0 := time.Now()
	got, err := p.pub.Query(qctx, nostr.Filter{IDs: []string{req.ID}, Limit: 1})
	cancel()
	switch {
	case err != nil:
		r.fail("query for an accepted request: no EOSE within %v: %v", probeWait, err)
		return
	case len(got) != 1:
		r.fail("query right after OK true did not return the request %s", req.ID)
	}
	r.query = append(r.query, time.Since(t0))
	claim := signed(worker, nostr.Event{Kind: 7000, Tags: nostr.Tags{
		{"status", "processing"}, {"e", req.ID}, {"p", req.PubKey}, lease.Tag(time.Minute), {"t", p.tag},
	}})
	p.publish(ctx, claim, r)
}

// publish sends evt, expecting OK true and its delivery on the probe's subscription; it reports
// whether both happened.
func (p *probe) publish(ctx context.Context, evt nostr.Event, r *probeRun) bool {
	arrived := make(chan time.Time, 1)
	p.mu.Lock()
	p.waiting[evt.ID] = arrived
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		delete(p.waiting, evt.ID)
		p.mu.Unlock()
	}()
	pctx, cancel := context.WithTimeout(ctx, probeWait)
	defer cancel()
	t0 := time.Now()
	ok, err := p.pub.Publish(pctx, evt)
	okAt := time.Now()
	if err != nil {
		r.fail("kind %d: no OK within %v: %v", evt.Kind, probeWait, err)
		return false
	}
	if !ok.Accepted {
		r.fail("kind %d refused: %s", evt.Kind, ok.Reason)
		return false
	}
	r.ok = append(r.ok, okAt.Sub(t0))
	p.mu.Lock()
	p.accepted = append(p.accepted, evt.ID)
	p.mu.Unlock()
	select {
	case at := <-arrived:
		r.delivery = append(r.delivery, at.Sub(t0))
		return true
	case <-p.followed:
		r.fail("kind %d: the probe's subscription ended (%s)", evt.Kind, p.s.Reason())
	case <-pctx.Done():
		r.fail("kind %d: accepted but not delivered to the probe's subscription within %v", evt.Kind, probeWait)
	}
	return false
}

// checkStored reports the probe's accepted events that a fresh connection cannot read back.
func (p *probe) checkStored(ctx context.Context, url string) error {
	p.mu.Lock()
	ids := slices.Clone(p.accepted)
	p.mu.Unlock()
	missing, err := missingEvents(ctx, url, ids)
	if err != nil {
		return err
	}
	if len(missing) > 0 {
		return fmt.Errorf("%d of the probe's %d accepted events are not stored (first: %s)", len(missing), len(ids), missing[0])
	}
	return nil
}

// missingEvents returns those of ids that a fresh connection to url cannot read back. It asks
// 50 ids at a time: well under any cap on ids per filter a relay should have.
func missingEvents(ctx context.Context, url string, ids []string) ([]string, error) {
	dctx, cancel := context.WithTimeout(ctx, probeWait)
	c, err := relayconn.Dial(dctx, url)
	cancel()
	if err != nil {
		return nil, err
	}
	defer c.Close()
	var missing []string
	for chunk := range slices.Chunk(ids, 50) {
		qctx, cancel := context.WithTimeout(ctx, 2*probeWait)
		got, err := c.Query(qctx, nostr.Filter{IDs: chunk, Limit: len(chunk)})
		cancel()
		if err != nil {
			return nil, fmt.Errorf("read back %d events: %w", len(chunk), err)
		}
		found := map[string]bool{}
		for _, evt := range got {
			found[evt.ID] = true
		}
		for _, id := range chunk {
			if !found[id] {
				missing = append(missing, id)
			}
		}
	}
	return missing, nil
}

// checkHealthy reports whether a fresh connection to url completes its handshake and gets EOSE
// for a REQ, each within probeWait.
func checkHealthy(ctx context.Context, url string) error {
	dctx, cancel := context.WithTimeout(ctx, probeWait)
	defer cancel()
	c, err := relayconn.Dial(dctx, url)
	if err != nil {
		return fmt.Errorf("a new connection: %w", err)
	}
	defer c.Close()
	qctx, cancel := context.WithTimeout(ctx, probeWait)
	defer cancel()
	if _, err := c.Query(qctx, nostr.Filter{Kinds: []int{5000}, Limit: 1}); err != nil {
		return fmt.Errorf("a REQ on a new connection: no EOSE: %w", err)
	}
	return nil
}

// signed signs evt with sk, dated now unless it has a date.
func signed(sk string, evt nostr.Event) nostr.Event {
	if evt.CreatedAt == 0 {
		evt.CreatedAt = nostr.Now()
	}
	if evt.Tags == nil {
		evt.Tags = nostr.Tags{}
	}
	if err := evt.Sign(sk); err != nil {
		panic(err) // only a malformed key fails, and every key here comes from GeneratePrivateKey
	}
	return evt
}

// percentile returns the q-quantile of ds (nearest rank), 0 when empty.
func percentile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(float64(len(s))*q+0.999999) - 1
	return s[max(0, min(i, len(s)-1))]
}

func (r probeRun) String() string {
	f := func(ds []time.Duration) string {
		return fmt.Sprintf("p50 %v p99 %v (n=%d)", percentile(ds, 0.5).Round(10*time.Microsecond),
			percentile(ds, 0.99).Round(10*time.Microsecond), len(ds))
	}
	s := "OK " + f(r.ok) + "; delivery " + f(r.delivery) + "; query " + f(r.query)
	if len(r.failures) > 0 {
		s += "; failures: " + strings.Join(r.failures, "; ")
	}
	return s
}
