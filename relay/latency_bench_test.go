package relay

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fasthttp/websocket"
	"github.com/nbd-wtf/go-nostr"

	"github.com/sparecycles/sparecycles/internal/testrelay"
)

// BenchmarkFanout measures publish→delivery latency on our relay and on a vanilla khatru relay
// with the same LMDB store, side by side in one run: n subscribers, each on its own websocket
// with a REQ for kind 5000, and a publisher that sends one signed job request at a time to each
// relay in turn. For every event it records when each subscriber received it, counted from the
// moment the publisher wrote the EVENT, and reports:
//
//   - p50 and p99 over every (event, subscriber) delivery,
//   - p50 and p99 of the last subscriber's delivery per event (what a fan-out costs),
//
// for ours and vanilla, and ours/vanilla ratios; and each relay's CPU time per event. Each relay runs in a child process of its own
// (startRelayProcess); the publisher and the subscribers run here. Run it with scripts/bench.
func BenchmarkFanout(b *testing.B) {
	for _, n := range []int{1, 100, 1000} {
		b.Run(fmt.Sprintf("subs=%d", n), func(b *testing.B) {
			ours, oursCPU := startRelayProcess(b, "ours")
			vanilla, vanillaCPU := startRelayProcess(b, "vanilla")
			sides := []*fanout{newFanout(b, ours, n), newFanout(b, vanilla, n)}
			k := newKey(b)
			// one event to each relay first, not counted: the first event after a relay starts
			// pays for its cold start (stacks grown, the store's first write; 10-20 ms here),
			// not for a fan-out, and of 200 samples p99 is the second largest
			for _, f := range sides {
				f.publish(b, jobRequest(b, k, time.Now(), nostr.Tag{"param", "seq", "warm-up"}))
				f.all, f.last = nil, nil
			}
			seq := 0
			cpu0 := []time.Duration{oursCPU(), vanillaCPU()}
			for b.Loop() {
				for _, f := range sides {
					b.StopTimer()
					evt := jobRequest(b, k, time.Now(), nostr.Tag{"param", "seq", fmt.Sprint(seq)})
					seq++
					b.StartTimer()
					f.publish(b, evt)
				}
			}
			o, v := sides[0], sides[1]
			// each relay's CPU per event (user and system time of its process): what the fan-out
			// costs the relay, apart from the latency the subscribers see
			events := float64(len(o.last))
			b.ReportMetric(float64((oursCPU()-cpu0[0]).Microseconds())/events, "ours-cpu-µs/event")
			b.ReportMetric(float64((vanillaCPU()-cpu0[1]).Microseconds())/events, "vanilla-cpu-µs/event")
			b.ReportMetric(o.all.pct(50), "ours-p50-µs")
			b.ReportMetric(v.all.pct(50), "vanilla-p50-µs")
			b.ReportMetric(o.all.pct(99), "ours-p99-µs")
			b.ReportMetric(v.all.pct(99), "vanilla-p99-µs")
			b.ReportMetric(o.last.pct(50), "ours-last-p50-µs")
			b.ReportMetric(v.last.pct(50), "vanilla-last-p50-µs")
			b.ReportMetric(o.last.pct(99), "ours-last-p99-µs")
			b.ReportMetric(v.last.pct(99), "vanilla-last-p99-µs")
			b.ReportMetric(o.all.pct(50)/v.all.pct(50), "p50-ratio")
			b.ReportMetric(o.last.pct(99)/v.last.pct(99), "last-p99-ratio")
		})
	}
}

// fanout is one publisher and n subscribers on one relay.
type fanout struct {
	pub  *websocket.Conn
	subs []*websocket.Conn
	got  chan time.Time // one receipt per subscriber per event
	all  latencies      // every delivery
	last latencies      // the last subscriber's delivery, per event
}

func newFanout(b *testing.B, url string, n int) *fanout {
	b.Helper()
	f := &fanout{pub: dialWS(b, url), got: make(chan time.Time, n)}
	for i := range n {
		c := dialWS(b, url)
		sub := fmt.Sprintf(`["REQ","fanout-%d",{"kinds":[5000],"limit":0}]`, i)
		if err := c.WriteMessage(websocket.TextMessage, []byte(sub)); err != nil {
			b.Fatal(err)
		}
		// wait for EOSE: after it the listener is registered
		if msg, err := readSkippingAuth(c); err != nil || !bytes.HasPrefix(msg, []byte(`["EOSE"`)) {
			b.Fatalf("subscribe: %s %v", msg, err)
		}
		f.subs = append(f.subs, c)
	}
	var wg sync.WaitGroup
	for _, c := range f.subs {
		wg.Go(func() {
			// read only a message's head and discard the rest: the subscribers share the
			// machine (and this process's garbage collector) with both relays, so they should
			// cost as little as possible, the same for both
			head := make([]byte, len(`["EVENT"`))
			for {
				_, r, err := c.NextReader()
				if err != nil {
					return
				}
				n, _ := io.ReadFull(r, head)
				if _, err := io.Copy(io.Discard, r); err != nil {
					return
				}
				if bytes.Equal(head[:n], []byte(`["EVENT"`)) {
					f.got <- time.Now()
				}
			}
		})
	}
	b.Cleanup(func() {
		for _, c := range append(f.subs, f.pub) {
			c.Close()
		}
		wg.Wait()
	})
	return f
}

// publish sends evt, waits until every subscriber has it and its OK has arrived, and records
// the delivery latencies.
func (f *fanout) publish(b *testing.B, evt nostr.Event) {
	msg, err := json.Marshal([]any{"EVENT", evt})
	if err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	if err := f.pub.WriteMessage(websocket.TextMessage, msg); err != nil {
		b.Fatal(err)
	}
	timeout := time.After(10 * time.Second)
	var last time.Duration
	for range f.subs {
		select {
		case at := <-f.got:
			d := at.Sub(start)
			f.all = append(f.all, d)
			last = max(last, d)
		case <-timeout:
			b.Fatalf("event %s not delivered to every subscriber", evt.ID)
		}
	}
	f.last = append(f.last, last)
	if ok, err := readSkippingAuth(f.pub); err != nil || !bytes.Contains(ok, []byte(`"`+evt.ID+`",true`)) {
		b.Fatalf("publish: %s %v", ok, err)
	}
}

// readSkippingAuth reads the next message other than an AUTH challenge: our relay asks every
// connection to authenticate (NIP-42) when it opens; subscribing and publishing do not need it.
func readSkippingAuth(c *websocket.Conn) ([]byte, error) {
	for {
		_, msg, err := c.ReadMessage()
		if err != nil || !bytes.HasPrefix(msg, []byte(`["AUTH",`)) {
			return msg, err
		}
	}
}

type latencies []time.Duration

// pct is the p-th percentile in microseconds.
func (l latencies) pct(p float64) float64 {
	if len(l) == 0 {
		return 0
	}
	s := slices.Clone(l)
	slices.Sort(s)
	i := min(len(s)-1, int(float64(len(s))*p/100))
	return float64(s[i].Nanoseconds()) / 1e3
}

func dialWS(b *testing.B, url string) *websocket.Conn {
	b.Helper()
	c, _, err := websocket.DefaultDialer.Dial(url, nil)
	if err != nil {
		b.Fatal(err)
	}
	return c
}

// BenchmarkIdleConn opens idleConns idle websocket connections to our relay and to a vanilla
// khatru relay and reports the heap and stack the process gains per connection, after a GC.
// The clients are bare TCP sockets that did the websocket handshake by hand, so nearly all of
// the growth is the relay's; the client sockets add the same small amount to both.
func BenchmarkIdleConn(b *testing.B) {
	const idleConns = 500
	ours := startRelay(b, testConfig(b))
	vanilla := testrelay.Start(b)
	var oursBytes, vanillaBytes float64
	for b.Loop() {
		oursBytes = idleBytes(b, ours.url, idleConns)
		vanillaBytes = idleBytes(b, vanilla, idleConns)
	}
	b.ReportMetric(oursBytes, "ours-B/conn")
	b.ReportMetric(vanillaBytes, "vanilla-B/conn")
	b.ReportMetric(oursBytes/vanillaBytes, "ratio")
}

// idleBytes opens n idle connections to url and returns the memory gained per connection; it
// closes them before returning.
func idleBytes(b *testing.B, url string, n int) float64 {
	b.Helper()
	before := liveBytes()
	conns := make([]net.Conn, 0, n)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	addr := strings.TrimPrefix(url, "ws://")
	for range n {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			b.Fatal(err)
		}
		conns = append(conns, c)
		fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
			"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", addr)
		// the response head is small; a throwaway reader is enough to see the 101
		resp, err := bufio.NewReaderSize(c, 256).ReadString('\n')
		if err != nil || !strings.Contains(resp, " 101 ") {
			b.Fatalf("handshake: %q %v", resp, err)
		}
	}
	// the relay has finished setting up a connection once it answers on it, so after a ping
	// round trip on the last one every connection is idle
	pingPong(b, conns[len(conns)-1])
	after := liveBytes()
	return float64(int64(after)-int64(before)) / float64(n)
}

func liveBytes() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc + m.StackInuse
}

// pingPong sends a masked ping frame and waits for the pong.
func pingPong(b *testing.B, c net.Conn) {
	b.Helper()
	if _, err := c.Write([]byte{0x89, 0x80, 1, 2, 3, 4}); err != nil {
		b.Fatal(err)
	}
	head := make([]byte, 2)
	if _, err := c.Read(head); err != nil || head[0] != 0x8a {
		b.Fatalf("pong: %x %v", head, err)
	}
}

// BenchmarkClaim measures what a worker waits for its lease: a customer publishes a job
// request, a worker subscribed to kind 5000 answers it with a claim (processing feedback with
// a lease tag) as soon as the request arrives, and the benchmark records the claim's publish→OK
// (claim-µs: from the claim's write, after it is signed) and the customer's request write →
// the claim's OK (request-to-claim-µs), p50 and p99, on our relay and, side by side, on a
// vanilla khatru relay with the same LMDB store (which grants no lease: it stores the claim as
// plain feedback), each in its own process. On our relay the claim usually reaches the relay
// while the request's commit is syncing, and is committed right after it.
func BenchmarkClaim(b *testing.B) {
	ours, _ := startRelayProcess(b, "ours")
	vanilla, _ := startRelayProcess(b, "vanilla")
	sides := []*claimSide{newClaimSide(b, ours), newClaimSide(b, vanilla)}
	customer, worker := newKey(b), newKey(b)
	for _, s := range sides { // not counted: each relay's first job pays its cold start
		s.run(b, customer, worker, "warm-up")
		s.claim, s.total = nil, nil
	}
	seq := 0
	for b.Loop() {
		for _, s := range sides {
			s.run(b, customer, worker, fmt.Sprint(seq))
			seq++
		}
	}
	o, v := sides[0], sides[1]
	b.ReportMetric(o.claim.pct(50), "ours-claim-p50-µs")
	b.ReportMetric(v.claim.pct(50), "vanilla-claim-p50-µs")
	b.ReportMetric(o.claim.pct(99), "ours-claim-p99-µs")
	b.ReportMetric(v.claim.pct(99), "vanilla-claim-p99-µs")
	b.ReportMetric(o.total.pct(50), "ours-request-to-claim-p50-µs")
	b.ReportMetric(v.total.pct(50), "vanilla-request-to-claim-p50-µs")
	b.ReportMetric(o.claim.pct(50)/v.claim.pct(50), "claim-p50-ratio")
	b.ReportMetric(o.total.pct(50)/v.total.pct(50), "request-to-claim-p50-ratio")
}

// claimSide is a customer and a worker, each on its own connection to one relay.
type claimSide struct {
	customer, worker *websocket.Conn
	claim, total     latencies
}

func newClaimSide(b *testing.B, url string) *claimSide {
	b.Helper()
	s := &claimSide{customer: dialWS(b, url), worker: dialWS(b, url)}
	b.Cleanup(func() { s.customer.Close(); s.worker.Close() })
	if err := s.worker.WriteMessage(websocket.TextMessage, []byte(`["REQ","jobs",{"kinds":[5000],"limit":0}]`)); err != nil {
		b.Fatal(err)
	}
	if msg, err := readSkippingAuth(s.worker); err != nil || !bytes.HasPrefix(msg, []byte(`["EOSE"`)) {
		b.Fatalf("subscribe: %s %v", msg, err)
	}
	return s
}

// run posts one job request and claims it as the worker, recording the latencies.
func (s *claimSide) run(b *testing.B, customer, worker key, seq string) {
	b.StopTimer()
	req := jobRequest(b, customer, time.Now(), nostr.Tag{"param", "seq", seq})
	msg, err := json.Marshal([]any{"EVENT", req})
	if err != nil {
		b.Fatal(err)
	}
	b.StartTimer()
	start := time.Now()
	if err := s.customer.WriteMessage(websocket.TextMessage, msg); err != nil {
		b.Fatal(err)
	}
	for { // the worker waits for the request
		got, err := readSkippingAuth(s.worker)
		if err != nil {
			b.Fatal(err)
		}
		if bytes.HasPrefix(got, []byte(`["EVENT"`)) && bytes.Contains(got, []byte(req.ID)) {
			break
		}
	}
	c := claim(b, worker, req, time.Now(), time.Minute)
	cmsg, err := json.Marshal([]any{"EVENT", c})
	if err != nil {
		b.Fatal(err)
	}
	sent := time.Now()
	if err := s.worker.WriteMessage(websocket.TextMessage, cmsg); err != nil {
		b.Fatal(err)
	}
	if ok, err := readSkippingAuth(s.worker); err != nil || !bytes.Contains(ok, []byte(`"`+c.ID+`",true`)) {
		b.Fatalf("claim: %s %v", ok, err)
	}
	done := time.Now()
	s.claim, s.total = append(s.claim, done.Sub(sent)), append(s.total, done.Sub(start))
	if ok, err := readSkippingAuth(s.customer); err != nil || !bytes.Contains(ok, []byte(`"`+req.ID+`",true`)) {
		b.Fatalf("request: %s %v", ok, err)
	}
}
