//go:build linux

package e2e

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fasthttp/websocket"
	"github.com/nbd-wtf/go-nostr"

	"github.com/sparecycles/sparecycles/internal/relayconn"
	"github.com/sparecycles/sparecycles/internal/testrelay"
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
//
// It is built to add as little of its own to what it measures, since the suite runs under the
// race detector and beside a CPU hog: a run's events are signed before the run starts, and its
// readers stamp each message as it arrives, before parsing (the subscription's reader only
// looks for the event id; it does not check signatures, it is timing the relay, not trusting it).
type probe struct {
	tb  testing.TB
	tag string
	pub *websocket.Conn // publishes and queries; only the run loop writes
	sub *websocket.Conn // follows the probe's events

	pubDone, subDone chan struct{} // closed when each reader has exited

	mu       sync.Mutex
	oks      map[string]chan probeOK   // event id → its OK
	arrivals map[string]chan time.Time // event id → its arrival on the subscription
	queries  map[string]*probeQuery    // subscription id → a query in progress
	accepted []string                  // ids of the probe's events that got OK true
	nextSub  int
}

type probeOK struct {
	at     time.Time
	ok     bool
	reason string
}

type probeQuery struct {
	events int
	eose   chan string // the EOSE (""), or CLOSED's reason
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
	p := &probe{tb: tb, tag: "probe-" + randomHex(8),
		oks: map[string]chan probeOK{}, arrivals: map[string]chan time.Time{}, queries: map[string]*probeQuery{},
		pubDone: make(chan struct{}), subDone: make(chan struct{})}
	for _, c := range []**websocket.Conn{&p.pub, &p.sub} {
		ctx, cancel := context.WithTimeout(context.Background(), probeWait)
		conn, _, err := testrelay.DialFrom(ctx, url, "127.0.0.1", 0, nil)
		cancel()
		if err != nil {
			tb.Fatalf("probe: %v", err)
		}
		tb.Cleanup(func() { conn.Close() })
		*c = conn
	}
	go p.readPub()
	tb.Cleanup(func() { p.pub.Close(); <-p.pubDone }) // runs before the Close above
	req := fmt.Appendf(nil, `["REQ","follow",{"kinds":[5000,7000],"#t":[%q]}]`, p.tag)
	p.sub.SetWriteDeadline(time.Now().Add(probeWait))
	if err := p.sub.WriteMessage(websocket.TextMessage, req); err != nil {
		tb.Fatalf("probe: subscribe: %v", err)
	}
	p.sub.SetReadDeadline(time.Now().Add(probeWait))
	for {
		_, b, err := p.sub.ReadMessage()
		if err != nil {
			tb.Fatalf("probe: no EOSE for its subscription: %v", err)
		}
		if bytes.HasPrefix(b, []byte(`["EOSE"`)) {
			break
		}
	}
	p.sub.SetReadDeadline(time.Time{})
	go p.readSub()
	tb.Cleanup(func() { p.sub.Close(); <-p.subDone })
	return p
}

// readSub stamps each of the probe's events as it arrives and hands the time to its publisher.
func (p *probe) readSub() {
	defer close(p.subDone)
	for {
		_, b, err := p.sub.ReadMessage()
		at := time.Now()
		if err != nil {
			return
		}
		_, rest, found := bytes.Cut(b, []byte(`"id":"`))
		if !found || len(rest) < 64 {
			continue
		}
		p.mu.Lock()
		ch := p.arrivals[string(rest[:64])]
		delete(p.arrivals, string(rest[:64]))
		p.mu.Unlock()
		if ch != nil {
			ch <- at // buffered
		}
	}
}

// readPub hands OKs to publishers and query results to queries.
func (p *probe) readPub() {
	defer close(p.pubDone)
	for {
		_, b, err := p.pub.ReadMessage()
		at := time.Now()
		if err != nil {
			return
		}
		switch env := nostr.ParseMessage(string(b)).(type) {
		case *nostr.OKEnvelope:
			p.mu.Lock()
			ch := p.oks[env.EventID]
			delete(p.oks, env.EventID)
			p.mu.Unlock()
			if ch != nil {
				ch <- probeOK{at, env.OK, env.Reason} // buffered
			}
		case *nostr.EventEnvelope:
			if env.SubscriptionID != nil {
				p.mu.Lock()
				if q := p.queries[*env.SubscriptionID]; q != nil {
					q.events++
				}
				p.mu.Unlock()
			}
		case *nostr.EOSEEnvelope:
			p.endQuery(string(*env), "")
		case *nostr.ClosedEnvelope:
			p.endQuery(env.SubscriptionID, "CLOSED: "+env.Reason)
		}
	}
}

func (p *probe) endQuery(id, why string) {
	p.mu.Lock()
	q := p.queries[id]
	delete(p.queries, id)
	p.mu.Unlock()
	if q != nil {
		q.eose <- why // buffered
	}
}

// send writes one message on the publishing connection.
func (p *probe) send(msg []byte) error {
	p.pub.SetWriteDeadline(time.Now().Add(probeWait))
	return p.pub.WriteMessage(websocket.TextMessage, msg)
}

// run plays rounds rounds (fewer if ctx ends or maxProbeFailures steps fail).
func (p *probe) run(ctx context.Context, rounds int) probeRun {
	// sign first: the run then measures the relay, not this process's signing
	type round struct{ req, claim nostr.Event }
	plan := make([]round, rounds)
	for i := range plan {
		customer, worker := nostr.GeneratePrivateKey(), nostr.GeneratePrivateKey()
		plan[i].req = signed(customer, nostr.Event{Kind: 5000, Tags: nostr.Tags{
			{"i", "what the probe asks", "text"}, {"bid", "1000"}, {"t", p.tag},
		}})
		plan[i].claim = signed(worker, nostr.Event{Kind: 7000, Tags: nostr.Tags{
			{"status", "processing"}, {"e", plan[i].req.ID}, {"p", plan[i].req.PubKey}, lease.Tag(time.Minute), {"t", p.tag},
		}})
	}
	var r probeRun
	for _, rd := range plan {
		if len(r.failures) >= maxProbeFailures {
			break
		}
		if ctx.Err() != nil {
			r.fail("probe run cut short: %v", ctx.Err())
			break
		}
		if !p.publish(ctx, rd.req, &r) {
			continue
		}
		p.query(ctx, rd.req.ID, &r)
		p.publish(ctx, rd.claim, &r)
	}
	return r
}

// publish sends evt, expecting OK true and its delivery on the probe's subscription; it reports
// whether both happened.
func (p *probe) publish(ctx context.Context, evt nostr.Event, r *probeRun) bool {
	msg, err := (&nostr.EventEnvelope{Event: evt}).MarshalJSON()
	if err != nil {
		p.tb.Fatal(err)
	}
	okc, arrived := make(chan probeOK, 1), make(chan time.Time, 1)
	p.mu.Lock()
	p.oks[evt.ID], p.arrivals[evt.ID] = okc, arrived
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		delete(p.oks, evt.ID)
		delete(p.arrivals, evt.ID)
		p.mu.Unlock()
	}()
	timer := time.NewTimer(probeWait)
	defer timer.Stop()
	t0 := time.Now()
	if err := p.send(msg); err != nil {
		r.fail("kind %d: write: %v", evt.Kind, err)
		return false
	}
	var ok probeOK
	select {
	case ok = <-okc:
	case <-p.pubDone:
		r.fail("kind %d: the probe's connection ended before its OK", evt.Kind)
		return false
	case <-timer.C:
		r.fail("kind %d: no OK within %v", evt.Kind, probeWait)
		return false
	case <-ctx.Done():
		r.fail("kind %d: no OK: %v", evt.Kind, ctx.Err())
		return false
	}
	if !ok.ok {
		r.fail("kind %d refused: %s", evt.Kind, ok.reason)
		return false
	}
	r.ok = append(r.ok, ok.at.Sub(t0))
	p.mu.Lock()
	p.accepted = append(p.accepted, evt.ID)
	p.mu.Unlock()
	select {
	case at := <-arrived:
		r.delivery = append(r.delivery, at.Sub(t0))
		return true
	case <-p.subDone:
		r.fail("kind %d: the probe's subscription connection ended", evt.Kind)
	case <-timer.C:
		r.fail("kind %d: accepted but not delivered to the probe's subscription within %v", evt.Kind, probeWait)
	case <-ctx.Done():
		r.fail("kind %d: not delivered: %v", evt.Kind, ctx.Err())
	}
	return false
}

// query reads an accepted event back by id: OK true means stored, so a REQ sent after the OK
// must find it.
func (p *probe) query(ctx context.Context, id string, r *probeRun) {
	p.mu.Lock()
	p.nextSub++
	sub := "q" + strconv.Itoa(p.nextSub)
	q := &probeQuery{eose: make(chan string, 1)}
	p.queries[sub] = q
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		delete(p.queries, sub)
		p.mu.Unlock()
	}()
	timer := time.NewTimer(probeWait)
	defer timer.Stop()
	t0 := time.Now()
	if err := p.send(fmt.Appendf(nil, `["REQ",%q,{"ids":[%q],"limit":1}]`, sub, id)); err != nil {
		r.fail("query: write: %v", err)
		return
	}
	select {
	case why := <-q.eose:
		took := time.Since(t0)
		p.mu.Lock()
		n := q.events
		p.mu.Unlock()
		switch {
		case why != "":
			r.fail("query for an accepted request: %s", why)
		case n != 1:
			r.fail("query right after OK true did not return the request %s", id)
		default:
			r.query = append(r.query, took)
		}
		p.send(fmt.Appendf(nil, `["CLOSE",%q]`, sub))
	case <-p.pubDone:
		r.fail("query: the probe's connection ended")
	case <-timer.C:
		r.fail("query for an accepted request: no EOSE within %v", probeWait)
	case <-ctx.Done():
		r.fail("query: %v", ctx.Err())
	}
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
