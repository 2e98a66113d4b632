//go:build linux

package e2e

// The hostile-client suite (issue 11): every attack an outsider tried on the relay, replayed
// against the relay binary beside an honest probe client (hostile_probe_test.go). Each subtest
// starts its own relay process on a fresh data folder, measures the probe unloaded, starts the
// attack, measures the probe again beside it, and checks:
//
//   - every probe step succeeded: each publish got OK true within probeWait and reached the
//     probe's subscription, and each accepted request was read back right after its OK;
//   - the probe's p99 publish→OK and publish→delivery under attack against latencyFactor of the
//     unloaded p99 (or okLatencyFloor and deliveryLatencyFloor) is logged, not asserted: speed is
//     BenchmarkHostile's (make bench), a timed assertion fails whenever the machine is busy;
//   - afterwards a new connection completes its handshake and gets EOSE, every event the probe
//     got OK true for is stored, and the relay's peak RSS (VmHWM) stayed under maxRelayRSS;
//   - what the attack itself must see (refusals, a dropped connection, idle CPU...).
//
// Attackers connect from their own loopback addresses (127.0.0.2 and up) so per-IP limits on
// them never touch the probe on 127.0.0.1. Everything is bounded in count and time; waits are
// bounded polls on conditions. TestHostileCrash SIGKILLs the relay in a publish storm.
//
//	go test -race -count=1 -run Hostile -v ./e2e/

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
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

// The suite's bounds.
const (
	// probeRounds is how many rounds the probe plays unloaded and again under attack: each
	// round gives two publish→OK and two publish→delivery samples, so p99 is over 200 samples
	// (the third-largest).
	probeRounds = 100
	// limitedProbeRounds is the probe's rounds on relays with the default rate limits, where
	// the probe's own address has a burst of 200 events: warm-up, unloaded and loaded rounds
	// together stay under it.
	limitedProbeRounds = 40
	warmupRounds       = 10

	latencyFactor = 3
	// Under these floors the suite does not compare p99s. On this 2-core VM the attacker runs
	// beside the relay and the probe, and CI runs other packages' tests beside this one: a
	// handful of the probe's samples then wait several scheduler slices whatever the relay does,
	// and with 80 samples (the subtests with rate limits on) the p99 is the slowest of them.
	// Measured with the fixed relay under -race, over 85 runs of a subtest, most of them with a
	// CPU hog on both cores and some inside the whole `go test ./...`: the probe's p99 under
	// attack was at most 16.5 ms (publish→OK, which waits for the group commit's fdatasync) and
	// 16.2 ms (publish→delivery), while its unloaded p99 alone reached 17 ms (once 133 ms). The
	// floors are about twice those maxima; the attacks as reported cost the probe 170 ms to
	// seconds, or its OKs altogether.
	okLatencyFloor       = 50 * time.Millisecond
	deliveryLatencyFloor = 30 * time.Millisecond

	// maxRelayRSS bounds the relay process's peak resident memory (VmHWM) over a whole
	// subtest. An idle relay uses about 30 MB; the bound leaves room for its bounded queues
	// and caches while catching each of the attacks as it was reported (200 MB to 1.27 GB).
	maxRelayRSS = 200 << 20

	// scenarioBudget bounds one subtest, failures included.
	scenarioBudget = 100 * time.Second
)

// Relay flags. The probe publishes ~200 events per phase from one address, so most subtests
// turn the rate limits off; those about limits run with the defaults (relay/config.go), spelt
// out so a change of default does not silently change the test.
var (
	noLimitFlags      = []string{"--ip-rate", "0", "--pubkey-rate", "0"}
	defaultLimitFlags = []string{"--ip-rate", "20", "--ip-burst", "200", "--pubkey-rate", "10", "--pubkey-burst", "100"}
)

// scenario is one attack.
type scenario struct {
	name   string
	flags  []string // relay flags after noLimitFlags (or defaultLimitFlags with limits)
	limits bool
	// load marks attacks that load the relay (BenchmarkHostile reports the probe under them)
	load bool
	// attack starts the attack and returns once it is in place; the probe then runs beside it
	// and end stops the attack and checks what the attacker saw.
	attack func(h *hostileRun) (end func())
	// final, if set, runs after the health, storage and memory checks.
	final func(h *hostileRun)
}

func hostileScenarios() []scenario {
	trusted := nostr.GeneratePrivateKey()
	trustedPK, _ := nostr.GetPublicKey(trusted)
	return []scenario{
		{name: "count-flood", load: true, attack: countFlood, final: answersSIGTERM},
		{name: "reader-exhaustion", load: true, attack: readerExhaustion},
		{name: "slow-reader", load: true, attack: slowReader},
		{name: "many-subscriptions", load: true, attack: manySubscriptions},
		{name: "many-ids", load: true, attack: manyIDs},
		{name: "xff-untrusted", limits: true, attack: xffUntrusted},
		// a refill of one event per 10 s: a bucket emptied stays empty for the rest of the test
		{name: "xff-trusted-proxy", limits: true, flags: []string{"--ip-rate", "0.1", "--trusted-proxies", "127.0.0.3/32"}, attack: xffTrustedProxy},
		{name: "sizes", attack: sizes},
		{name: "nwc-responses", limits: true, attack: nwcResponses},
		{name: "trusted-feedback", limits: true, flags: []string{"--trusted-pubkeys", trustedPK},
			attack: func(h *hostileRun) func() { return trustedFeedback(h, trusted) }},
		{name: "duplicate-in-flight", attack: duplicateInFlight},
		{name: "stats-connections", attack: statsConnections},
	}
}

func TestHostile(t *testing.T) {
	for _, sc := range hostileScenarios() {
		t.Run(sc.name, func(t *testing.T) { runScenario(t, sc, true) })
	}
}

// hostileRun is one scenario on its own relay.
type hostileRun struct {
	tb     testing.TB
	ctx    context.Context
	relay  *relayProc
	probe  *probe
	rounds int

	base, loaded probeRun
	// errorf reports a broken expectation: t.Errorf in the tests; in BenchmarkHostile a log
	// line, so that the figures are still reported for a relay that fails the suite.
	errorf func(format string, args ...any)
}

func runScenario(tb testing.TB, sc scenario, strict bool) *hostileRun {
	ctx, cancel := context.WithTimeout(context.Background(), scenarioBudget)
	tb.Cleanup(cancel)
	flags, rounds := noLimitFlags, probeRounds
	if sc.limits {
		flags, rounds = defaultLimitFlags, limitedProbeRounds
	}
	h := &hostileRun{tb: tb, ctx: ctx, rounds: rounds, errorf: tb.Errorf}
	if !strict {
		h.errorf = func(format string, args ...any) { tb.Logf("FAILS THE SUITE: "+format, args...) }
	}
	h.relay = startRelayProc(tb, append(slices.Clone(flags), sc.flags...)...)
	h.relay.errorf = h.errorf
	h.probe = newProbe(tb, h.relay.url())
	if warm := h.probe.run(ctx, warmupRounds); len(warm.failures) > 0 {
		tb.Fatalf("probe, before any attack: %s", warm)
	}
	h.base = h.probe.run(ctx, rounds)
	if len(h.base.failures) > 0 {
		tb.Fatalf("probe, before any attack: %s", h.base)
	}
	tb.Logf("probe unloaded:     %s", h.base)

	end := sc.attack(h)
	h.loaded = h.probe.run(ctx, rounds)
	end()
	tb.Logf("probe under attack: %s", h.loaded)
	h.judge()
	h.finish()
	if sc.final != nil {
		sc.final(h)
	}
	return h
}

// judge checks the probe's run under attack against its unloaded run.
func (h *hostileRun) judge() {
	for _, f := range h.loaded.failures {
		h.errorf("probe under attack: %s", f)
	}
	h.compare("publish→OK", h.base.ok, h.loaded.ok, okLatencyFloor)
	h.compare("publish→delivery", h.base.delivery, h.loaded.delivery, deliveryLatencyFloor)
}

func (h *hostileRun) compare(what string, base, loaded []time.Duration, floor time.Duration) {
	if len(loaded) == 0 {
		h.errorf("probe %s under attack: no sample at all", what)
		return
	}
	// Speed is measured by BenchmarkHostile (its rows in `make bench` carry the 3× target), not
	// asserted here: a timed assertion fails whenever the machine is busy with other work. What
	// the test asserts is that every probe step ended within its bounded wait (judge).
	b, l := percentile(base, 0.99), percentile(loaded, 0.99)
	if limit := max(latencyFactor*b, floor); l > limit {
		h.tb.Logf("timing (measured, not asserted; see BenchmarkHostile): probe p99 %s under attack is %v, over %v (%d× the unloaded %v, or the %v floor; n=%d unloaded, %d loaded)",
			what, l.Round(time.Microsecond), limit, latencyFactor, b.Round(time.Microsecond), floor, len(base), len(loaded))
	}
}

// finish checks the relay after the attack: alive, answering, every accepted probe event
// stored, memory within bounds.
func (h *hostileRun) finish() {
	if !h.relay.alive() {
		h.errorf("the relay process died during the attack")
		return
	}
	url := h.relay.url()
	if err := checkHealthy(h.ctx, url); err != nil {
		h.errorf("after the attack: %v (so the probe's events cannot be read back either)", err)
	} else if err := h.probe.checkStored(h.ctx, url); err != nil {
		h.errorf("after the attack: %v", err)
	}
	rss, peak, err := h.relay.memory()
	if err != nil {
		h.errorf("relay memory: %v", err)
		return
	}
	h.tb.Logf("relay RSS %d MiB after the attack, peak %d MiB (bound %d MiB)", rss>>20, peak>>20, maxRelayRSS>>20)
	if peak > maxRelayRSS {
		h.errorf("relay peak RSS was %d MiB, over the %d MiB bound", peak>>20, maxRelayRSS>>20)
	}
}

// dial opens a websocket from ip (see dialFrom), closed when the test ends.
func (h *hostileRun) dial(ip string, rcvbuf int, header http.Header) *websocket.Conn {
	h.tb.Helper()
	c, _, err := testrelay.DialFrom(h.ctx, h.relay.url(), ip, rcvbuf, header)
	if err != nil {
		h.tb.Fatal(err)
	}
	h.tb.Cleanup(func() { c.Close() })
	return c
}

// raw opens a rawClient from ip, closed when the test ends.
func (h *hostileRun) raw(ip string, header http.Header) *rawClient {
	h.tb.Helper()
	return &rawClient{c: h.dial(ip, 0, header)}
}

// waitUntil polls cond every 20 ms until it holds (true), d passes or ctx ends (false).
func waitUntil(ctx context.Context, d time.Duration, cond func() bool) bool {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	timer := time.NewTimer(d)
	defer timer.Stop()
	for !cond() {
		select {
		case <-tick.C:
		case <-timer.C:
			return cond()
		case <-ctx.Done():
			return false
		}
	}
	return true
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// jobRequest is a signed kind 5000 request; extra tags make it unique.
func jobRequest(sk string, extra ...nostr.Tag) nostr.Event {
	return signed(sk, nostr.Event{Kind: 5000, Tags: append(nostr.Tags{{"i", "hostile suite", "text"}, {"bid", "1000"}}, extra...)})
}

// leaseClaim is processing feedback with a lease tag (nips/lease.md).
func leaseClaim(sk string, job nostr.Event, d time.Duration) nostr.Event {
	return signed(sk, nostr.Event{Kind: 7000, Tags: nostr.Tags{
		{"status", "processing"}, {"e", job.ID}, {"p", job.PubKey}, lease.Tag(d)}})
}

// quote is payment-required feedback.
func quote(sk string, job nostr.Event, msat int64) nostr.Event {
	return signed(sk, nostr.Event{Kind: 7000, Tags: nostr.Tags{
		{"status", "payment-required"}, {"amount", strconv.FormatInt(msat, 10)}, {"e", job.ID}, {"p", job.PubKey}}})
}

// jobResult is a kind 6000 result of job with content.
func jobResult(sk string, job nostr.Event, content string) nostr.Event {
	return signed(sk, nostr.Event{Kind: job.Kind + 1000, Tags: nostr.Tags{
		{"e", job.ID}, {"p", job.PubKey}, {"request", job.String()}}, Content: content})
}

// publishAll publishes evts on a new connection from ip, failing the test unless each gets
// OK true: the setup of an attack.
func (h *hostileRun) publishAll(ip string, evts []nostr.Event) {
	h.tb.Helper()
	rc := h.raw(ip, nil)
	defer rc.Close()
	oks, err := rc.publishMany(evts, 0, 30*time.Second)
	for _, evt := range evts {
		if ok, found := oks[evt.ID]; !found || !ok.OK {
			h.tb.Fatalf("setup: kind %d of %d bytes: OK %v %q (%v)", evt.Kind, len(evt.Content), ok.OK, ok.Reason, err)
		}
	}
}

// countFlood: 1,000 COUNTs on one connection, each matching stored events (the probe's).
// Every COUNT is answered (COUNT or CLOSED) or the connection dropped; once the attacker has
// gone the relay's CPU time stops growing; at the end it exits on SIGTERM (answersSIGTERM).
func countFlood(h *hostileRun) func() {
	const n = 1000
	c := h.dial("127.0.0.2", 0, nil)
	replies := countReplies(c)
	pm, err := websocket.NewPreparedMessage(websocket.TextMessage, []byte(`["COUNT","c",{"kinds":[5000]}]`))
	if err != nil {
		h.tb.Fatal(err)
	}
	c.SetWriteDeadline(time.Now().Add(10 * time.Second))
	sent := 0
	for ; sent < n; sent++ {
		if err := c.WritePreparedMessage(pm); err != nil {
			h.tb.Logf("COUNT flood: write %d: %v", sent+1, err) // a relay may drop the flood
			break
		}
	}
	return func() {
		answered := func() bool { return replies.count.Load()+replies.closed.Load() >= int64(sent) || replies.ended() }
		if !waitUntil(h.ctx, 5*time.Second, answered) {
			h.errorf("COUNT flood: %d COUNTs sent; after the probe's run and 5 s more: %s", sent, replies)
		}
		c.Close()
		<-replies.done
		h.checkCPUSettles()
	}
}

// checkCPUSettles checks that the relay's CPU time stops growing (under 50 ms in a second)
// within 10 s: nothing should be left running for a client that has gone.
func (h *hostileRun) checkCPUSettles() {
	const window, idle, within = time.Second, 50 * time.Millisecond, 10 * time.Second
	prev, err := h.relay.cpu()
	if err != nil {
		h.errorf("relay CPU time: %v", err)
		return
	}
	tick := time.NewTicker(window)
	defer tick.Stop()
	var used time.Duration
	for deadline := time.Now().Add(within); time.Now().Before(deadline); {
		select {
		case <-tick.C:
		case <-h.ctx.Done():
			return
		}
		cur, err := h.relay.cpu()
		if err != nil {
			h.errorf("relay CPU time: %v", err)
			return
		}
		if used = cur - prev; used < idle {
			h.tb.Logf("relay CPU settled: %v in the last second", used)
			return
		}
		prev = cur
	}
	h.errorf("the relay kept working after the attacker left: %v of CPU in the last second, %v after it closed",
		used, within)
}

// answersSIGTERM checks that the relay shuts down on SIGTERM within 12 s (its own graceful
// windows are 5 s for HTTP and 5 s for writes in flight).
func answersSIGTERM(h *hostileRun) {
	took, err := h.relay.terminate(12 * time.Second)
	if err != nil {
		h.errorf("after the attack: %v", err)
		return
	}
	h.tb.Logf("relay exited %v after SIGTERM", took.Round(time.Millisecond))
}

// storeLargeResults stores n jobs, each with a kind 6000 result of size bytes of content.
func (h *hostileRun) storeLargeResults(n, size int) {
	h.tb.Helper()
	customer, worker := nostr.GeneratePrivateKey(), nostr.GeneratePrivateKey()
	// the requests carry a bid, so a result comes from a worker that claimed its job: requests,
	// claims and results go in three rounds (one connection's events are handled concurrently)
	var jobs, claims, results []nostr.Event
	for i := 0; i < n; i++ {
		job := jobRequest(customer, nostr.Tag{"param", "n", strconv.Itoa(i)})
		body := strings.Repeat(fmt.Sprintf("result %d of a large job. ", i), size/24+1)[:size]
		jobs, claims, results = append(jobs, job), append(claims, leaseClaim(worker, job, 10*time.Minute)), append(results, jobResult(worker, job, body))
	}
	h.publishAll("127.0.0.5", jobs)
	h.publishAll("127.0.0.5", claims)
	h.publishAll("127.0.0.5", results)
}

// readerExhaustion: 1,100 REQs, each matching 50 stored results of 60 KB, on one connection with
// a 4 KB receive buffer that never reads. The results are 60 KB, under the 65,535 bytes the old
// store took, so that this shows the exhausted readers and not the size mismatch ("sizes").
func readerExhaustion(h *hostileRun) func() {
	h.storeLargeResults(50, 60_000)
	c := h.dial("127.0.0.2", 4096, nil)
	c.SetWriteDeadline(time.Now().Add(10 * time.Second))
	for i := 0; i < 1100; i++ {
		if err := c.WriteMessage(websocket.TextMessage, fmt.Appendf(nil, `["REQ","r%d",{"kinds":[6000]}]`, i)); err != nil {
			h.tb.Logf("reader exhaustion: write %d: %v", i+1, err) // the relay may drop it
			break
		}
	}
	return func() { c.Close() }
}

// slowReader: a connection with a 4 KB receive buffer subscribes to kind 7000 (and 23196) and
// stops reading, while the probe publishes its claims (kind 7000) and another publisher sends
// 60 KB notifications (kind 23196), more in all than the kernel's socket buffers take
// (tcp_wmem's maximum, to which loopback send buffers grow, plus 1 MiB). The other publisher
// gets all its answers, the probe is unhurt, and the relay drops the slow connection: reading
// it afterwards ends in an error within 15 s, not a timeout.
func slowReader(h *hostileRun) func() {
	const size = 60_000
	n := (maxSendBuffer(h.tb)+1<<20)/size + 1
	c := h.dial("127.0.0.2", 4096, nil)
	c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if err := c.WriteMessage(websocket.TextMessage, []byte(`["REQ","slow",{"kinds":[7000,23196]}]`)); err != nil {
		h.tb.Fatal(err)
	}
	// read up to EOSE, so the subscription is live; from then on it never reads
	c.SetReadDeadline(time.Now().Add(probeWait))
	for {
		_, b, err := c.ReadMessage()
		if err != nil {
			h.tb.Fatalf("slow reader: no EOSE: %v", err)
		}
		if strings.HasPrefix(string(b), `["EOSE"`) {
			break
		}
	}

	// Another publisher fills the slow reader's buffers beside the probe's kind 7000 claims:
	// ephemeral NIP-47 notifications (kind 23196) of 60 KB, which the relay only broadcasts, so
	// that what the probe sees is the slow reader's doing and not the cost of storing 5 MB.
	wallet := nostr.GeneratePrivateKey()
	var fill []nostr.Event
	for i := 0; i < n; i++ {
		fill = append(fill, signed(wallet, nostr.Event{Kind: 23196, Tags: nostr.Tags{{"p", strings.Repeat("ab", 32)}},
			Content: strings.Repeat(fmt.Sprintf("notification %d ", i), size/10+1)[:size]}))
	}
	other := h.raw("127.0.0.4", nil)
	var oks map[string]nostr.OKEnvelope
	var otherErr error
	done := make(chan struct{})
	go func() {
		defer close(done)
		oks, otherErr = other.publishMany(fill, 0, 20*time.Second)
	}()
	return func() {
		<-done // bounded by publishMany's 20 s
		// OK true while the slow reader listens, "mute:" once it is dropped: either way, answered
		answered := 0
		for _, ok := range oks {
			if ok.OK || strings.HasPrefix(ok.Reason, "mute:") {
				answered++
			}
		}
		if answered < len(fill) {
			h.errorf("slow reader: another publisher's %d notifications of %d bytes: %d answered within 20 s (%v)",
				len(fill), size, answered, otherErr)
		}
		n, err := drain(c, 15*time.Second)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			h.errorf("slow reader: the relay still had not dropped the connection that stopped reading, 15 s after the probe ran (its backlog: %d bytes)", n)
		} else {
			h.tb.Logf("slow reader: dropped by the relay after %d bytes of backlog (%v)", n, err)
		}
	}
}

// maxSendBuffer is the most a TCP socket's send buffer grows to (tcp_wmem's maximum), capped at
// 16 MiB to keep the attack bounded.
func maxSendBuffer(tb testing.TB) int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/tcp_wmem")
	if err != nil {
		tb.Fatal(err)
	}
	f := strings.Fields(string(b))
	if len(f) != 3 {
		tb.Fatalf("tcp_wmem: %q", b)
	}
	n, err := strconv.Atoi(f[2])
	if err != nil {
		tb.Fatalf("tcp_wmem: %q", b)
	}
	return min(n, 16<<20)
}

func countAccepted(oks map[string]nostr.OKEnvelope) int {
	n := 0
	for _, ok := range oks {
		if ok.OK {
			n++
		}
	}
	return n
}

// drain reads c until it fails or d passes, returning the bytes read and the error.
func drain(c *websocket.Conn, d time.Duration) (int, error) {
	c.SetReadDeadline(time.Now().Add(d))
	n := 0
	for {
		_, b, err := c.ReadMessage()
		if err != nil {
			return n, err
		}
		n += len(b)
	}
}

// maxSubsPerConnection is the most subscriptions the suite lets one connection hold; a relay
// should cap far lower (strfry: 20).
const maxSubsPerConnection = 1000

// manySubscriptions: 20,000 REQs on one connection, each a live subscription matching nothing
// (kind 7000 of an unknown job). The relay refuses most (CLOSED) or drops the connection.
func manySubscriptions(h *hostileRun) func() {
	const n = 20_000
	c := h.dial("127.0.0.2", 0, nil)
	replies := countReplies(c)
	e := randomHex(32)
	c.SetWriteDeadline(time.Now().Add(20 * time.Second))
	sent := 0
	for ; sent < n; sent++ {
		if err := c.WriteMessage(websocket.TextMessage, fmt.Appendf(nil, `["REQ","s%d",{"kinds":[7000],"#e":["%s"]}]`, sent, e)); err != nil {
			h.tb.Logf("many subscriptions: write %d: %v", sent+1, err)
			break
		}
	}
	// in place once every REQ is answered (EOSE or CLOSED) or the connection is gone
	waitUntil(h.ctx, 20*time.Second, func() bool { return replies.eose.Load()+replies.closed.Load() >= int64(sent) || replies.ended() })
	h.tb.Logf("many subscriptions: %d REQs sent; %s", sent, replies)
	return func() {
		if !replies.ended() && int64(sent)-replies.closed.Load() > maxSubsPerConnection {
			h.errorf("many subscriptions: %d REQs on one connection, %d refused and the connection still open: no cap (at most %d allowed here); %s",
				sent, replies.closed.Load(), maxSubsPerConnection, replies)
		}
		c.Close()
	}
}

// manyIDs: 400 REQs of 7,000 ids each (470 KB apiece) on one connection, sent while the probe
// runs. The relay refuses them (CLOSED) or drops the connection.
func manyIDs(h *hostileRun) func() {
	const n, ids = 400, 7000
	c := h.dial("127.0.0.2", 0, nil)
	replies := countReplies(c)
	var b strings.Builder
	b.WriteString(`["REQ","i0000",{"ids":[`)
	for i := 0; i < ids; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`"` + randomHex(32) + `"`)
	}
	b.WriteString(`]}]`)
	msg := []byte(b.String())
	sent := 0
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.SetWriteDeadline(time.Now().Add(30 * time.Second))
		for ; sent < n; sent++ {
			copy(msg[9:13], fmt.Sprintf("%04d", sent)) // the sub id; WriteMessage has copied the last one
			if err := c.WriteMessage(websocket.TextMessage, msg); err != nil {
				h.tb.Logf("many ids: write %d: %v", sent+1, err)
				return
			}
		}
	}()
	return func() {
		<-done // bounded by the write deadline
		waitUntil(h.ctx, 20*time.Second, func() bool { return replies.eose.Load()+replies.closed.Load() >= int64(sent) || replies.ended() })
		h.tb.Logf("many ids: %d REQs of %d ids sent; %s", sent, ids, replies)
		if !replies.ended() && replies.closed.Load() == 0 {
			h.errorf("many ids: %d REQs of %d ids each on one connection, none refused and the connection still open: no cap on ids per filter; %s",
				sent, ids, replies)
		}
		c.Close()
	}
}

// tally counts OKs by outcome: accepted, refused by NIP-01 prefix, and events without an OK.
type tally struct {
	accepted, missing int
	refused           map[string]int
	first             string // the first refusal
}

func tallyOKs(evts []nostr.Event, oks map[string]nostr.OKEnvelope) tally {
	t := tally{refused: map[string]int{}}
	for _, evt := range evts {
		ok, found := oks[evt.ID]
		switch {
		case !found:
			t.missing++
		case ok.OK:
			t.accepted++
		default:
			prefix, _, _ := strings.Cut(ok.Reason, ":")
			t.refused[prefix]++
			if t.first == "" {
				t.first = ok.Reason
			}
		}
	}
	return t
}

func (t *tally) add(u tally) {
	t.accepted += u.accepted
	t.missing += u.missing
	for k, v := range u.refused {
		t.refused[k] += v
	}
	if t.first == "" {
		t.first = u.first
	}
}

func (t tally) String() string {
	return fmt.Sprintf("%d accepted, refused %v, %d without OK (first refusal: %q)", t.accepted, t.refused, t.missing, t.first)
}

// xffUntrusted: 30 connections from 127.0.0.2, each claiming another public address in
// X-Forwarded-For, publish 14 events each (fresh authors, so only the per-IP limit applies).
// With no trusted proxy configured the header is ignored: they share 127.0.0.2's bucket, so at
// most burst + rate × elapsed of them are accepted.
func xffUntrusted(h *hostileRun) func() {
	const conns, each, burst, rate = 30, 14, 200, 20
	batches := make([][]nostr.Event, conns)
	for i := range batches { // signed first: signing under -race would stretch elapsed
		for j := 0; j < each; j++ {
			batches[i] = append(batches[i], jobRequest(nostr.GeneratePrivateKey()))
		}
	}
	all := tally{refused: map[string]int{}}
	t0 := time.Now()
	for i, evts := range batches {
		rc := h.raw("127.0.0.2", http.Header{"X-Forwarded-For": {fmt.Sprintf("203.0.113.%d", i+1)}})
		oks, err := rc.publishMany(evts, 0, 10*time.Second)
		rc.Close()
		t := tallyOKs(evts, oks)
		if t.missing > 0 {
			h.errorf("X-Forwarded-For: %d events without an OK (%v)", t.missing, err)
		}
		all.add(t)
	}
	elapsed := time.Since(t0)
	allowed := burst + int(rate*elapsed.Seconds()) + 1
	h.tb.Logf("X-Forwarded-For from an untrusted peer: %d events in %v: %s", conns*each, elapsed.Round(time.Millisecond), all)
	if all.accepted > allowed {
		h.errorf("X-Forwarded-For from an untrusted peer: %d of %d events accepted in %v, more than one address's bucket allows (%d): each forged header got its own bucket",
			all.accepted, conns*each, elapsed.Round(time.Millisecond), allowed)
	}
	if all.refused["rate-limited"] != sumRefused(all) {
		h.errorf("X-Forwarded-For: refusals other than rate-limited: %s", all)
	}
	return func() {}
}

func sumRefused(t tally) int {
	n := 0
	for _, v := range t.refused {
		n += v
	}
	return n
}

// publishBurst publishes n job requests from fresh authors on a new connection from ip with
// header, pipelined, and tallies the OKs.
func (h *hostileRun) publishBurst(ip string, header http.Header, n int) tally {
	h.tb.Helper()
	rc := h.raw(ip, header)
	defer rc.Close()
	var evts []nostr.Event
	for i := 0; i < n; i++ {
		evts = append(evts, jobRequest(nostr.GeneratePrivateKey()))
	}
	oks, err := rc.publishMany(evts, 0, 10*time.Second)
	t := tallyOKs(evts, oks)
	if t.missing > 0 {
		h.errorf("%d of %d events from %s got no OK: %v", t.missing, n, ip, err)
	}
	return t
}

// xffTrustedProxy: with --trusted-proxies 127.0.0.3/32, a connection from 127.0.0.3 is limited
// as the right-most untrusted address of its X-Forwarded-For, independently of other
// addresses' buckets. The relay runs with a burst of 200 and a refill of 0.1 event/s, so an
// emptied bucket gives at most one more event over the few seconds this takes.
func xffTrustedProxy(h *hostileRun) func() {
	xff := func(v string) http.Header { return http.Header{"X-Forwarded-For": {v}} }
	// 127.0.0.2 is no proxy: its forged headers are ignored and it empties its own bucket
	if t := h.publishBurst("127.0.0.2", xff("198.51.100.1"), 300); t.refused["rate-limited"] == 0 {
		h.errorf("trusted proxy: 300 events from 127.0.0.2 (untrusted, forged X-Forwarded-For) were never rate-limited: %s", t)
	}
	// a client behind the proxy has its own bucket, full: its first event passes, and it is
	// limited once it has used the burst
	t := h.publishBurst("127.0.0.3", xff("203.0.113.7"), 300)
	if t.accepted == 0 {
		h.errorf("trusted proxy: 203.0.113.7 behind the proxy was limited from its first event (limited by another address's bucket?): %s", t)
	}
	if t.refused["rate-limited"] == 0 {
		h.errorf("trusted proxy: 300 events from 203.0.113.7 behind the proxy were never rate-limited: %s", t)
	}
	// its bucket, not the connection's: new connections forwarding for it stay limited, also
	// when the client put a forged address in front (right-most untrusted hop) or the chain
	// ends in a trusted hop
	for _, header := range []string{"203.0.113.7", "192.0.2.1, 203.0.113.7", "203.0.113.7, 127.0.0.3"} {
		if t := h.publishBurst("127.0.0.3", xff(header), 20); t.accepted > 1 {
			h.errorf("trusted proxy: X-Forwarded-For %q from the proxy: %d of 20 accepted, but 203.0.113.7's bucket was empty: %s",
				header, t.accepted, t)
		}
	}
	// another client behind the same proxy is not limited by 203.0.113.7's bucket
	if t := h.publishBurst("127.0.0.3", xff("198.51.100.23"), 20); t.accepted != 20 {
		h.errorf("trusted proxy: 198.51.100.23 behind the proxy: %s; want all 20 accepted", t)
	}
	return func() {}
}

// sizes: the relay stores what it accepts up to the sizes NIP-11 advertises: a 200 KB result
// of a leased job is accepted, stored, served back and finishes the job; a result one byte over
// max_content_length gets OK false "invalid:" and never reaches a live subscriber.
func sizes(h *hostileRun) func() {
	doc, err := h.relay.nip11()
	if err != nil {
		h.tb.Fatal(err)
	}
	maxContent := doc.Limitation.MaxContentLength
	const size = 200 << 10
	if maxContent < size {
		h.errorf("sizes: NIP-11 max_content_length is %d, less than a 200 KB result", maxContent)
	}
	c := dialProbeConn(h)
	customer, worker := nostr.GeneratePrivateKey(), nostr.GeneratePrivateKey()
	job, tooBig := jobRequest(customer), jobRequest(customer, nostr.Tag{"param", "n", "2"})
	for _, evt := range []nostr.Event{job, tooBig, leaseClaim(worker, job, time.Minute), leaseClaim(worker, tooBig, time.Minute)} {
		if ok := publishOK(h, c, evt); !ok.Accepted {
			h.tb.Fatalf("sizes setup: kind %d refused: %s", evt.Kind, ok.Reason)
		}
	}
	// a live subscriber of both jobs' results and feedback
	watcher := dialProbeConn(h)
	sub, err := watcher.Subscribe(h.ctx, nostr.Filter{Kinds: []int{6000, 7000}, Tags: nostr.TagMap{"e": {job.ID, tooBig.ID}}})
	if err != nil {
		h.tb.Fatal(err)
	}
	select {
	case <-sub.EOSE:
	case <-time.After(probeWait):
		h.tb.Fatal("sizes: no EOSE for the watcher")
	}

	big := jobResult(worker, job, strings.Repeat("0123456789abcdef", size/16))
	if ok := publishOK(h, c, big); !ok.Accepted {
		h.errorf("sizes: a %d-byte result (NIP-11 max_content_length %d, max_event_bytes %d) was refused: %q",
			len(big.Content), maxContent, doc.MaxEventBytes, ok.Reason)
	} else {
		qctx, cancel := context.WithTimeout(h.ctx, probeWait)
		got, err := c.Query(qctx, nostr.Filter{IDs: []string{big.ID}})
		cancel()
		if err != nil || len(got) != 1 || got[0].Content != big.Content {
			h.errorf("sizes: the accepted %d-byte result is not served back (%d events, %v)", len(big.Content), len(got), err)
		}
		workerPK, _ := nostr.GetPublicKey(worker)
		h.checkJob(job.ID, "done", workerPK)
	}

	over := jobResult(worker, tooBig, strings.Repeat("x", maxContent+1))
	if n := len(over.String()) + 12; doc.Limitation.MaxMessageLength > 0 && n > doc.Limitation.MaxMessageLength {
		h.errorf("sizes: NIP-11 max_message_length %d leaves no room for an event one byte over max_content_length (%d bytes)",
			doc.Limitation.MaxMessageLength, n)
	}
	if ok := publishOK(h, c, over); ok.Accepted || !strings.HasPrefix(ok.Reason, "invalid:") {
		h.errorf("sizes: a result of %d bytes of content, over max_content_length %d: OK %v %q, want OK false \"invalid: ...\"",
			len(over.Content), maxContent, ok.Accepted, ok.Reason)
	}
	// the worker gives the job back; once its feedback reaches the watcher, so would have the
	// refused result (the relay handles one publisher's events in order)
	marker := signed(worker, nostr.Event{Kind: 7000, Tags: nostr.Tags{{"status", "error", "result too large"}, {"e", tooBig.ID}, {"p", tooBig.PubKey}}})
	if ok := publishOK(h, c, marker); !ok.Accepted {
		h.errorf("sizes: error feedback refused: %s", ok.Reason)
		return func() {}
	}
	timer := time.NewTimer(probeWait)
	defer timer.Stop()
	for {
		select {
		case evt := <-sub.Events:
			switch evt.ID {
			case over.ID:
				h.errorf("sizes: the result refused for its size reached a live subscriber")
			case marker.ID:
				return func() {}
			}
		case <-timer.C:
			h.errorf("sizes: the watcher never got the error feedback")
			return func() {}
		}
	}
}

// dialProbeConn is another honest connection from 127.0.0.1, closed when the test ends.
func dialProbeConn(h *hostileRun) *relayconn.Conn {
	ctx, cancel := context.WithTimeout(h.ctx, probeWait)
	defer cancel()
	c, err := relayconn.Dial(ctx, h.relay.url())
	if err != nil {
		h.tb.Fatal(err)
	}
	h.tb.Cleanup(func() { c.Close() })
	return c
}

// publishOK publishes evt on c and returns its OK, failing the test if none came.
func publishOK(h *hostileRun, c *relayconn.Conn, evt nostr.Event) relayconn.OK {
	ctx, cancel := context.WithTimeout(h.ctx, probeWait)
	defer cancel()
	ok, err := c.Publish(ctx, evt)
	if err != nil {
		h.tb.Fatalf("kind %d: %v", evt.Kind, err)
	}
	return ok
}

// checkJob checks /api/jobs for the job's state and, for done, its result's author.
func (h *hostileRun) checkJob(id, state, resultBy string) {
	rows, err := h.relay.jobs()
	if err != nil {
		h.errorf("/api/jobs: %v", err)
		return
	}
	for _, r := range rows {
		if r.ID == id {
			if string(r.State) != state || r.ResultBy != resultBy {
				h.errorf("/api/jobs: job %s is %s (result by %q), want %s by %q", id, r.State, r.ResultBy, state, resultBy)
			}
			return
		}
	}
	h.errorf("/api/jobs: job %s is missing", id)
}

// nwcResponses: a wallet service answers NWC requests (ephemeral kind 23195) at 50/s from one
// pubkey for 5 s, from its own address; none is refused. An anonymous kind 5000 publisher at
// the same rate from another address is rate-limited. (250 events at 50/s stay inside each
// address's default bucket of 200 + 20/s, so only the per-pubkey limit can tell them apart.)
func nwcResponses(h *hostileRun) func() {
	const n, every = 250, 20 * time.Millisecond
	wallet, client, spammer := nostr.GeneratePrivateKey(), nostr.GeneratePrivateKey(), nostr.GeneratePrivateKey()
	clientPK, _ := nostr.GetPublicKey(client)
	var responses, requests []nostr.Event
	for i := 0; i < n; i++ {
		responses = append(responses, signed(wallet, nostr.Event{Kind: 23195, Tags: nostr.Tags{{"p", clientPK}, {"e", randomHex(32)}},
			Content: randomHex(96)}))
		requests = append(requests, jobRequest(spammer, nostr.Tag{"param", "n", strconv.Itoa(i)}))
	}
	// the NWC client listens for its responses (with no listener, an ephemeral event is refused
	// as "mute:"); it counts them without checking them, to leave the CPU to the relay
	listener := h.dial("127.0.0.1", 0, nil)
	listener.SetWriteDeadline(time.Now().Add(probeWait))
	if err := listener.WriteMessage(websocket.TextMessage, fmt.Appendf(nil, `["REQ","nwc",{"kinds":[23195],"#p":[%q]}]`, clientPK)); err != nil {
		h.tb.Fatal(err)
	}
	listener.SetReadDeadline(time.Now().Add(probeWait))
	for {
		_, b, err := listener.ReadMessage()
		if err != nil {
			h.tb.Fatalf("NWC client: no EOSE: %v", err)
		}
		if strings.HasPrefix(string(b), `["EOSE"`) {
			break
		}
	}
	listener.SetReadDeadline(time.Time{})
	delivered := countReplies(listener)
	walletConn, spamConn := h.raw("127.0.0.4", nil), h.raw("127.0.0.5", nil)
	var wg sync.WaitGroup
	var walletOKs, spamOKs map[string]nostr.OKEnvelope
	wg.Add(2)
	go func() { defer wg.Done(); walletOKs, _ = walletConn.publishMany(responses, every, 30*time.Second) }()
	go func() { defer wg.Done(); spamOKs, _ = spamConn.publishMany(requests, every, 30*time.Second) }()
	return func() {
		wg.Wait() // bounded by publishMany's 30 s
		w, s := tallyOKs(responses, walletOKs), tallyOKs(requests, spamOKs)
		h.tb.Logf("NWC responses at 50/s: %s; anonymous requests at 50/s: %s", w, s)
		if w.accepted != n {
			h.errorf("a wallet service's %d NWC responses at 50/s: %s; want every one accepted", n, w)
		}
		if !waitUntil(h.ctx, probeWait, func() bool { return delivered.event.Load() >= int64(w.accepted) }) {
			h.errorf("the NWC client got %d of the %d responses accepted", delivered.event.Load(), w.accepted)
		}
		if s.refused["rate-limited"] == 0 {
			h.errorf("an anonymous publisher of %d kind 5000 events at 50/s was never rate-limited: %s", n, s)
		}
	}
}

// trustedFeedback: a worker whose key is in --trusted-pubkeys publishes 500 feedback events
// (kind 7000 processing, progress in the content) on one job as fast as the socket takes them,
// from one address; all are accepted (neither its pubkey's nor its address's limit applies).
func trustedFeedback(h *hostileRun, worker string) func() {
	const n = 500
	job := jobRequest(nostr.GeneratePrivateKey())
	h.publishAll("127.0.0.6", []nostr.Event{job})
	var evts []nostr.Event
	for i := 0; i < n; i++ {
		evts = append(evts, signed(worker, nostr.Event{Kind: 7000, Tags: nostr.Tags{
			{"status", "processing"}, {"e", job.ID}, {"p", job.PubKey}}, Content: fmt.Sprintf("step %d of %d", i+1, n)}))
	}
	oks, err := h.raw("127.0.0.6", nil).publishMany(evts, 0, 30*time.Second)
	if t := tallyOKs(evts, oks); t.accepted != n {
		h.errorf("a trusted worker's %d feedback events: %s (%v); want every one accepted", n, t, err)
	}
	return func() {}
}

// duplicateInFlight: the same event published on 20 connections at once, 20 times over
// (requests and quotes): an OK true, duplicate or not, means the event is stored, so a REQ by
// id sent on that connection right after the OK finds it.
func duplicateInFlight(h *hostileRun) func() {
	const conns, trials = 20, 20
	clients := make([]*rawClient, conns)
	for i := range clients {
		clients[i] = h.raw(fmt.Sprintf("127.0.1.%d", i+1), nil)
	}
	var early, accepted int
	var first string
	for trial := 0; trial < trials; trial++ {
		evt := jobRequest(nostr.GeneratePrivateKey())
		if trial%2 == 1 {
			evt = quote(nostr.GeneratePrivateKey(), evt, 1000) // for a job the relay never saw
		}
		var mu sync.Mutex
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i, c := range clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				ok, err := c.publish(evt, probeWait)
				if err != nil {
					mu.Lock()
					h.errorf("duplicate in flight: connection %d: %v", i, err)
					mu.Unlock()
					return
				}
				if !ok.OK {
					return // a relay may refuse a copy it is still writing
				}
				got, err := c.query(nostr.Filter{IDs: []string{evt.ID}}, probeWait)
				mu.Lock()
				defer mu.Unlock()
				accepted++
				if err != nil || len(got) != 1 {
					early++
					if first == "" {
						first = fmt.Sprintf("kind %d, OK true %q, then a REQ by id got %d events (%v)", evt.Kind, ok.Reason, len(got), err)
					}
				}
			}()
		}
		close(start)
		wg.Wait()
	}
	h.tb.Logf("duplicate in flight: %d OK true of %d copies, %d before the event was stored", accepted, conns*trials, early)
	if early > 0 {
		h.errorf("duplicate in flight: %d of %d OK true came before the event was stored; first: %s", early, accepted, first)
	}
	if accepted < trials {
		h.errorf("duplicate in flight: only %d OK true for %d events", accepted, trials)
	}
	return func() {}
}

// statsConnections: 50 connections open and close (one after another, each from its own
// address); /api/stats "connections" never goes negative and comes back to where it was.
func statsConnections(h *hostileRun) func() {
	st, err := h.relay.stats()
	if err != nil {
		h.tb.Fatal(err)
	}
	start, lowest := st.Connections, st.Connections
	observe := func() int64 {
		st, err := h.relay.stats()
		if err != nil {
			h.errorf("/api/stats: %v", err)
			return start
		}
		lowest = min(lowest, st.Connections)
		return st.Connections
	}
	for i := 0; i < 50; i++ {
		c, _, err := testrelay.DialFrom(h.ctx, h.relay.url(), fmt.Sprintf("127.0.3.%d", i+1), 0, nil)
		if err != nil {
			h.tb.Fatal(err)
		}
		c.Close()
		observe()
	}
	// disconnects are handled asynchronously: poll until the count is back
	back := waitUntil(h.ctx, 10*time.Second, func() bool { return observe() == start })
	if lowest < 0 {
		h.errorf("/api/stats connections went negative (%d) over 50 connect/disconnects from %d", lowest, start)
	}
	if !back {
		h.errorf("/api/stats connections is %d 10 s after 50 connect/disconnects, want %d as before", observe(), start)
	}
	return func() {}
}
