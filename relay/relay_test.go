package relay

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/fasthttp/websocket"
	"github.com/nbd-wtf/go-nostr"
	"github.com/nbd-wtf/go-nostr/nip13"
	"github.com/rs/zerolog"

	"github.com/sparecycles/sparecycles/internal/relayconn"
	"github.com/sparecycles/sparecycles/internal/testrelay"
	"github.com/sparecycles/sparecycles/nips/lease"
	"github.com/sparecycles/sparecycles/nips/nip90"
)

// testRelay is a real relay on 127.0.0.1 with its LMDB store in a temporary folder.
type testRelay struct {
	t    testing.TB
	cfg  Config
	r    *Relay
	url  string
	http string
	stop func()
}

// testConfig is the default config without rate limits, on a fresh data folder.
func testConfig(t testing.TB) Config {
	cfg := DefaultConfig()
	cfg.Data = t.TempDir()
	cfg.IPRate, cfg.PubkeyRate = 0, 0
	cfg.MaxConnsPerIP, cfg.ReqRate = 0, 0 // every test client shares 127.0.0.1
	// benchmarks compare commit delays side by side (scripts/profile-ingest, A/B runs)
	if d, err := time.ParseDuration(os.Getenv("SPARECYCLES_TEST_COMMIT_DELAY")); err == nil {
		cfg.CommitDelay = d
	}
	return cfg
}

func startRelay(t testing.TB, cfg Config) *testRelay {
	t.Helper()
	tr := &testRelay{t: t, cfg: cfg}
	tr.start()
	t.Cleanup(tr.shutdown)
	return tr
}

func (tr *testRelay) start() {
	tr.t.Helper()
	r, err := New(tr.cfg, zerolog.New(zerolog.NewTestWriter(tr.t)).Level(zerolog.WarnLevel))
	if err != nil {
		tr.t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tr.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Serve(ctx, ln) }()
	tr.r = r
	tr.http = "http://" + ln.Addr().String()
	tr.url = "ws://" + ln.Addr().String()
	tr.stop = func() {
		cancel()
		if err := <-done; err != nil {
			tr.t.Errorf("serve: %v", err)
		}
		r.Close()
	}
}

func (tr *testRelay) shutdown() {
	if tr.stop != nil {
		tr.stop()
		tr.stop = nil
	}
}

// restart stops the relay and starts a new one on the same data folder.
func (tr *testRelay) restart() {
	tr.shutdown()
	tr.start()
}

// connect opens a client connection, closed when the test ends.
func (tr *testRelay) connect(t testing.TB) *relayconn.Conn {
	t.Helper()
	return testrelay.Dial(t, tr.url)
}

// publish sends evt and returns the OK reason: "" for OK true.
func publish(t testing.TB, c *relayconn.Conn, evt nostr.Event) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ok, err := c.Publish(ctx, evt)
	if err != nil {
		t.Fatalf("publish %s: %v", evt.ID, err)
	}
	if ok.Accepted {
		return ""
	}
	if ok.Reason == "" {
		t.Fatalf("publish %s: OK false without a reason", evt.ID)
	}
	return ok.Reason
}

type key struct{ sk, pk string }

func newKey(t testing.TB) key {
	sk := nostr.GeneratePrivateKey()
	pk, err := nostr.GetPublicKey(sk)
	if err != nil {
		t.Fatal(err)
	}
	return key{sk, pk}
}

func (k key) sign(t testing.TB, evt nostr.Event) nostr.Event {
	t.Helper()
	if evt.CreatedAt == 0 {
		evt.CreatedAt = nostr.Now()
	}
	if evt.Tags == nil {
		evt.Tags = nostr.Tags{}
	}
	if err := evt.Sign(k.sk); err != nil {
		t.Fatal(err)
	}
	return evt
}

func jobRequest(t testing.TB, k key, at time.Time, tags ...nostr.Tag) nostr.Event {
	base := nostr.Tags{{"i", "hello world", "text"}, {"output", "text/plain"}, {"bid", "5000"}}
	return k.sign(t, nostr.Event{Kind: 5000, CreatedAt: nostr.Timestamp(at.Unix()), Tags: append(base, tags...), Content: ""})
}

func claim(t testing.TB, k key, job nostr.Event, at time.Time, d time.Duration) nostr.Event {
	return k.sign(t, nostr.Event{Kind: nip90.KindFeedback, CreatedAt: nostr.Timestamp(at.Unix()), Tags: nostr.Tags{
		{"status", "processing"}, {"e", job.ID}, {"p", job.PubKey}, lease.Tag(d),
	}})
}

func result(t testing.TB, k key, job nostr.Event, at time.Time) nostr.Event {
	return k.sign(t, nostr.Event{Kind: job.Kind + 1000, CreatedAt: nostr.Timestamp(at.Unix()), Tags: nostr.Tags{
		{"e", job.ID}, {"p", job.PubKey}, {"request", job.String()},
	}, Content: "HELLO WORLD"})
}

func TestJobRequestStoredAndServed(t *testing.T) {
	tr := startRelay(t, testConfig(t))
	c := tr.connect(t)
	customer := newKey(t)
	req := jobRequest(t, customer, time.Now())
	if msg := publish(t, c, req); msg != "" {
		t.Fatalf("job request refused: %s", msg)
	}
	got := testrelay.Query(t, tr.connect(t), nostr.Filter{Kinds: []int{5000}, Authors: []string{customer.pk}})
	if len(got) != 1 || got[0].ID != req.ID || got[0].Sig != req.Sig {
		t.Fatalf("REQ returned %v, want the request %s", got, req.ID)
	}
	if j, ok := tr.r.Jobs().Lookup(req.ID); !ok || j.BidMsat != 5000 || j.State(nostr.Now()) != JobOpen {
		t.Fatalf("job table has %+v (found %v), want an open job bidding 5000 msat", j, ok)
	}
}

func TestRejections(t *testing.T) {
	cfg := testConfig(t)
	tr := startRelay(t, cfg)
	k := newKey(t)
	now := time.Now()

	badSig := jobRequest(t, k, now)
	badSig.Sig = strings.Repeat("0", 128)
	badID := jobRequest(t, k, now)
	badID.Content = "changed after signing"

	tooManyTags := nostr.Tags{}
	for i := 0; i <= cfg.MaxTags; i++ {
		tooManyTags = append(tooManyTags, nostr.Tag{"t", fmt.Sprint(i)})
	}

	tests := []struct {
		name string
		evt  nostr.Event
		want string // prefix of the OK reason; "" for OK true
	}{
		{"valid request", jobRequest(t, k, now), ""},
		{"bad signature", badSig, "invalid: signature is invalid"},
		{"id does not match", badID, "invalid: id is computed incorrectly"},
		{"oversized content", k.sign(t, nostr.Event{Kind: 5000, Content: strings.Repeat("x", cfg.MaxEventBytes+1)}), "invalid: content is"},
		{"oversized event", k.sign(t, nostr.Event{Kind: 5000, Tags: nostr.Tags{{"i", strings.Repeat("y", cfg.MaxEventBytes), "text"}}}), "invalid: event is"},
		{"tag value over 64 KiB", k.sign(t, nostr.Event{Kind: 5000, Tags: nostr.Tags{{"i", strings.Repeat("d", 100<<10), "text"}}}), ""},
		{"too many tags", k.sign(t, nostr.Event{Kind: 5000, Tags: tooManyTags}), "invalid: 2001 tags"},
		{"disallowed kind", k.sign(t, nostr.Event{Kind: 1, Content: "a note"}), "blocked: kind 1 is not accepted"},
		{"too old", jobRequest(t, k, now.Add(-25*time.Hour)), "invalid: created_at"},
		{"too far ahead", jobRequest(t, k, now.Add(time.Hour)), "invalid: created_at"},
		{"already expired", jobRequest(t, k, now, nostr.Tag{"expiration", fmt.Sprint(now.Add(-time.Minute).Unix())}), "invalid: event expired"},
		{"profile", k.sign(t, nostr.Event{Kind: 0, Content: `{"name":"w"}`}), ""},
		{"NIP-89 announcement", k.sign(t, nostr.Event{Kind: 31990, Tags: nostr.Tags{{"d", "x"}, {"k", "5000"}}, Content: "{}"}), ""},
		{"lease tag on a quote", k.sign(t, nostr.Event{Kind: 7000, Tags: nostr.Tags{{"status", "payment-required"}, {"e", strings.Repeat("a", 64)}, {"lease", "30"}}}), "invalid: a lease tag belongs"},
		{"malformed lease", k.sign(t, nostr.Event{Kind: 7000, Tags: nostr.Tags{{"status", "processing"}, {"e", strings.Repeat("a", 64)}, {"lease", "soon"}}}), "invalid: lease: malformed"},
		{"malformed job input", k.sign(t, nostr.Event{Kind: 5000, Tags: nostr.Tags{{"i", "x", "bogus"}}}), `invalid: nip90: tag "i"`},
		{"malformed bid", k.sign(t, nostr.Event{Kind: 5000, Tags: nostr.Tags{{"bid", "lots"}}}), `invalid: nip90: tag "bid"`},
		{"feedback without status", k.sign(t, nostr.Event{Kind: 7000, Tags: nostr.Tags{{"e", strings.Repeat("a", 64)}}}), "invalid: nip90: "},
		{"result without job", k.sign(t, nostr.Event{Kind: 6000, Content: "x"}), "invalid: nip90: "},
		{"lease on unknown job", k.sign(t, nostr.Event{Kind: 7000, Tags: nostr.Tags{{"status", "processing"}, {"e", strings.Repeat("a", 64)}, {"lease", "30"}}}), "invalid: unknown job"},
	}
	c := tr.connect(t)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := publish(t, c, tc.evt)
			if tc.want == "" && got != "" || !strings.HasPrefix(got, tc.want) {
				t.Fatalf("OK reason %q, want prefix %q", got, tc.want)
			}
		})
	}
}

func TestRateLimitedBurst(t *testing.T) {
	cfg := testConfig(t)
	cfg.IPRate, cfg.IPBurst = 0.001, 5 // five, then essentially nothing for the test's life
	tr := startRelay(t, cfg)
	c := tr.connect(t)
	k := newKey(t)
	var accepted, limited int
	for i := 0; i < 12; i++ {
		msg := publish(t, c, jobRequest(t, k, time.Now(), nostr.Tag{"param", "n", fmt.Sprint(i)}))
		switch {
		case msg == "":
			accepted++
		case strings.HasPrefix(msg, "rate-limited: "):
			limited++
		default:
			t.Fatalf("unexpected refusal %q", msg)
		}
	}
	if accepted != 5 || limited != 7 {
		t.Fatalf("accepted %d and rate-limited %d, want 5 and 7", accepted, limited)
	}
	if got := tr.r.Stats().EventsRefused["rate-limited"]; got != 7 {
		t.Fatalf("stats count %d rate-limited events, want 7", got)
	}
}

func TestPubkeyRateLimit(t *testing.T) {
	cfg := testConfig(t)
	cfg.PubkeyRate, cfg.PubkeyBurst = 0.001, 2
	tr := startRelay(t, cfg)
	c := tr.connect(t)
	noisy, quiet := newKey(t), newKey(t)
	for i, want := range []string{"", "", "rate-limited: "} {
		if msg := publish(t, c, jobRequest(t, noisy, time.Now(), nostr.Tag{"param", "n", fmt.Sprint(i)})); !strings.HasPrefix(msg, want) || (want == "" && msg != "") {
			t.Fatalf("event %d from noisy pubkey: %q, want %q", i, msg, want)
		}
	}
	if msg := publish(t, c, jobRequest(t, quiet, time.Now())); msg != "" {
		t.Fatalf("another pubkey on the same connection was limited: %q", msg)
	}
}

func TestEventsSurviveRestart(t *testing.T) {
	tr := startRelay(t, testConfig(t))
	c := tr.connect(t)
	k := newKey(t)
	var ids []string
	for i := 0; i < 10; i++ {
		evt := jobRequest(t, k, time.Now(), nostr.Tag{"param", "n", fmt.Sprint(i)})
		if msg := publish(t, c, evt); msg != "" {
			t.Fatal(msg)
		}
		ids = append(ids, evt.ID)
	}
	tr.restart()
	got := testrelay.Query(t, tr.connect(t), nostr.Filter{IDs: ids})
	if len(got) != len(ids) {
		t.Fatalf("after restart REQ returned %d of %d events", len(got), len(ids))
	}
	if n := tr.r.Stats().Jobs.ByState[JobOpen]; n != 10 {
		t.Fatalf("rebuilt job table has %d open jobs, want 10", n)
	}
}

// Every event that got OK true before and during shutdown is in the store afterwards. The
// writers read OK messages off the raw socket: go-nostr's Publish reports success when the
// connection drops before an OK arrives.
func TestShutdownLosesNoAcceptedEvent(t *testing.T) {
	tr := startRelay(t, testConfig(t))
	k := newKey(t)
	const writers, each = 4, 60
	var mu sync.Mutex
	var accepted []string
	var sent atomic.Int64
	quarter := make(chan struct{}) // closed once a quarter of the events are on the wire
	var quarterOnce sync.Once
	var wg sync.WaitGroup
	for w := 0; w < writers; w++ {
		conn, _, err := websocket.DefaultDialer.Dial(tr.url, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		events := make([]nostr.Event, each)
		for i := range events {
			events[i] = jobRequest(t, k, time.Now(), nostr.Tag{"param", "n", fmt.Sprint(w, "-", i)})
		}
		wg.Add(2)
		go func() { // writer: all events, without waiting for OKs
			defer wg.Done()
			for _, evt := range events {
				if conn.WriteJSON([]any{"EVENT", evt}) != nil {
					return
				}
				if sent.Add(1) == writers*each/4 {
					quarterOnce.Do(func() { close(quarter) })
				}
			}
		}()
		go func() { // reader: OK true means accepted
			defer wg.Done()
			for {
				_, msg, err := conn.ReadMessage()
				if err != nil {
					return
				}
				var ok []json.RawMessage
				if json.Unmarshal(msg, &ok) == nil && len(ok) == 4 && string(ok[0]) == `"OK"` && string(ok[2]) == "true" {
					var id string
					json.Unmarshal(ok[1], &id)
					mu.Lock()
					accepted = append(accepted, id)
					mu.Unlock()
				}
			}
		}()
	}
	// shut down while events are still arriving
	<-quarter
	tr.shutdown()
	wg.Wait()
	tr.start()
	got := testrelay.Query(t, tr.connect(t), nostr.Filter{IDs: accepted})
	if len(accepted) == 0 || len(got) != len(accepted) {
		t.Fatalf("%d events were accepted before shutdown, %d are stored after restart", len(accepted), len(got))
	}
	t.Logf("%d of %d events accepted before shutdown, all stored", len(accepted), writers*each)
}

func TestDeletedJobLeavesTable(t *testing.T) {
	tr := startRelay(t, testConfig(t))
	c := tr.connect(t)
	customer, worker := newKey(t), newKey(t)
	req := jobRequest(t, customer, time.Now())
	publish(t, c, req)
	del := customer.sign(t, nostr.Event{Kind: 5, Tags: nostr.Tags{{"e", req.ID}, {"k", "5000"}}})
	if msg := publish(t, c, del); msg != "" {
		t.Fatalf("deletion refused: %s", msg)
	}
	if _, ok := tr.r.Jobs().Lookup(req.ID); ok {
		t.Fatal("deleted job is still in the table")
	}
	if msg := publish(t, c, claim(t, worker, req, time.Now(), time.Minute)); !strings.HasPrefix(msg, "invalid: unknown job") {
		t.Fatalf("claim on a cancelled job: %q", msg)
	}
	if msg := publish(t, c, req); !strings.HasPrefix(msg, "blocked: ") {
		t.Fatalf("re-publishing a deleted request: %q, want blocked", msg)
	}
	// the deletion is remembered across a restart, and other authors are not affected
	tr.restart()
	c = tr.connect(t)
	if msg := publish(t, c, req); !strings.HasPrefix(msg, "blocked: ") {
		t.Fatalf("re-publishing a deleted request after a restart: %q, want blocked", msg)
	}
	if msg := publish(t, c, jobRequest(t, worker, time.Now())); msg != "" {
		t.Fatalf("another author's request: %q", msg)
	}
}

func TestJobPoW(t *testing.T) {
	cfg := testConfig(t)
	cfg.JobPoW = 10
	tr := startRelay(t, cfg)
	c := tr.connect(t)
	k := newKey(t)
	if msg := publish(t, c, jobRequest(t, k, time.Now())); !strings.HasPrefix(msg, "pow: ") {
		t.Fatalf("request without work: %q, want pow:", msg)
	}
	evt := nostr.Event{Kind: 5000, CreatedAt: nostr.Now(), PubKey: k.pk, Tags: nostr.Tags{{"i", "x", "text"}}}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	nonce, err := nip13.DoWork(ctx, evt, 10)
	if err != nil {
		t.Fatal(err)
	}
	evt.Tags = append(evt.Tags, nonce)
	if msg := publish(t, c, k.sign(t, evt)); msg != "" {
		t.Fatalf("request with enough work refused: %q", msg)
	}
	if msg := publish(t, c, k.sign(t, nostr.Event{Kind: 0, Content: "{}"})); msg != "" {
		t.Fatalf("PoW is for job requests only, profile refused: %q", msg)
	}
}

func TestAuthForWrites(t *testing.T) {
	allowed, stranger := newKey(t), newKey(t)
	cfg := testConfig(t)
	cfg.AllowPubkeys = []string{allowed.pk}
	tr := startRelay(t, cfg)

	c := tr.connect(t)
	if msg := publish(t, c, jobRequest(t, allowed, time.Now())); !strings.HasPrefix(msg, "auth-required: ") {
		t.Fatalf("unauthenticated write: %q, want auth-required", msg)
	}
	auth := func(c *relayconn.Conn, k key) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if ok, err := c.Auth(ctx, func(e *nostr.Event) error { return e.Sign(k.sk) }); err != nil || !ok.Accepted {
			t.Fatalf("auth: %+v %v", ok, err)
		}
	}
	auth(c, allowed)
	if msg := publish(t, c, jobRequest(t, allowed, time.Now())); msg != "" {
		t.Fatalf("authenticated allowed write refused: %q", msg)
	}
	c2 := tr.connect(t)
	publish(t, c2, jobRequest(t, stranger, time.Now())) // triggers the AUTH challenge
	auth(c2, stranger)
	if msg := publish(t, c2, jobRequest(t, stranger, time.Now())); !strings.HasPrefix(msg, "restricted: ") {
		t.Fatalf("authenticated stranger: %q, want restricted", msg)
	}
	// reading needs no auth
	if got := testrelay.Query(t, tr.connect(t), nostr.Filter{Kinds: []int{5000}}); len(got) != 1 {
		t.Fatalf("read %d requests, want 1", len(got))
	}
}

// Authenticating as one pubkey does not let a connection publish events signed by another,
// allowed or not; the authenticated pubkey's own events pass.
func TestAuthMatchesAuthor(t *testing.T) {
	a, b, stranger := newKey(t), newKey(t), newKey(t)
	for _, tc := range []struct {
		name  string
		allow []string
		auth  bool // --auth-writes without an allow list
	}{
		{"allow list", []string{a.pk, b.pk}, false},
		{"auth writes", nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(t)
			cfg.AllowPubkeys, cfg.AuthWrites = tc.allow, tc.auth
			tr := startRelay(t, cfg)
			c := tr.connect(t)
			if msg := publish(t, c, jobRequest(t, a, time.Now())); !strings.HasPrefix(msg, "auth-required: ") {
				t.Fatalf("unauthenticated write: %q, want auth-required", msg)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if ok, err := c.Auth(ctx, func(e *nostr.Event) error { return e.Sign(a.sk) }); err != nil || !ok.Accepted {
				t.Fatalf("auth: %+v %v", ok, err)
			}
			wantStranger := "auth-required: this connection is authenticated as " + a.pk
			if tc.allow != nil {
				wantStranger = "restricted: " + stranger.pk
			}
			steps := []struct {
				name string
				evt  nostr.Event
				want string // OK reason prefix, "" for OK true
			}{
				{"b's event on a's connection", jobRequest(t, b, time.Now()), "auth-required: this connection is authenticated as " + a.pk},
				{"a stranger's event on a's connection", jobRequest(t, stranger, time.Now()), wantStranger},
				{"a's own event", jobRequest(t, a, time.Now()), ""},
			}
			for _, s := range steps {
				msg := publish(t, c, s.evt)
				if (s.want == "" && msg != "") || !strings.HasPrefix(msg, s.want) {
					t.Fatalf("%s: OK reason %q, want %q", s.name, msg, s.want)
				}
			}
		})
	}
}

func getJSON(t testing.TB, url string, header map[string]string, v any) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	for k, val := range header {
		req.Header.Set(k, val)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
}

func TestNIP11TellsTheTruth(t *testing.T) {
	cfg := testConfig(t)
	cfg.MaxTags = 50
	cfg.MaxEventBytes = 4096
	cfg.Pubkey = strings.Repeat("ab", 32)
	tr := startRelay(t, cfg)
	var doc map[string]any
	getJSON(t, tr.http, map[string]string{"Accept": "application/nostr+json"}, &doc)
	lim := doc["limitation"].(map[string]any)
	for field, want := range map[string]float64{
		"max_event_tags": 50, "max_content_length": 4096, "created_at_lower_limit": 86400, "created_at_upper_limit": 900,
	} {
		if lim[field] != want {
			t.Errorf("limitation.%s = %v, want %v", field, lim[field], want)
		}
	}
	if doc["pubkey"] != cfg.Pubkey || doc["software"] != Software || doc["version"] != Version {
		t.Errorf("pubkey/software/version = %v %v %v", doc["pubkey"], doc["software"], doc["version"])
	}
	if jl := doc["job_leases"].(map[string]any); jl["max_seconds"] != 600.0 {
		t.Errorf("job_leases = %v", jl)
	}
	// and the limits are the enforced ones
	c := tr.connect(t)
	k := newKey(t)
	tags := nostr.Tags{}
	for i := 0; i < 51; i++ {
		tags = append(tags, nostr.Tag{"t", fmt.Sprint(i)})
	}
	if msg := publish(t, c, k.sign(t, nostr.Event{Kind: 5000, Tags: tags})); !strings.HasPrefix(msg, "invalid: 51 tags") {
		t.Errorf("51 tags: %q", msg)
	}
	if msg := publish(t, c, k.sign(t, nostr.Event{Kind: 5000, Content: strings.Repeat("z", 4097)})); !strings.HasPrefix(msg, "invalid: content") {
		t.Errorf("4097-byte content: %q", msg)
	}
}

func TestExpiredEventsAreNotServed(t *testing.T) {
	clock := newClock()
	cfg := testConfig(t)
	cfg.Now = clock.Now
	tr := startRelay(t, cfg)
	c := tr.connect(t)
	k := newKey(t)
	req := jobRequest(t, k, clock.Now(), nostr.Tag{"expiration", fmt.Sprint(clock.Now().Add(time.Minute).Unix())})
	if msg := publish(t, c, req); msg != "" {
		t.Fatal(msg)
	}
	clock.Advance(2 * time.Minute)
	if got := testrelay.Query(t, c, nostr.Filter{IDs: []string{req.ID}}); len(got) != 0 {
		t.Fatalf("expired request still served")
	}
	var body struct{ Jobs []JobView }
	getJSON(t, tr.http+"/api/jobs", nil, &body)
	if len(body.Jobs) != 1 || body.Jobs[0].State != JobExpired {
		t.Fatalf("/api/jobs = %+v, want one expired job", body.Jobs)
	}
}

// clock is a settable clock for lease and expiry tests.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Now()} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// The connections the relay accepts offer their raw socket, so that khatru can write a
// broadcast to them without waiting (third_party/khatru/frameconn.go; without it every
// broadcast goes through a writer goroutine per subscriber).
func TestTrackedConnSyscallConn(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tl := &trackingListener{Listener: ln, conns: map[net.Conn]struct{}{}}
	defer tl.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	c, err := tl.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sc, ok := c.(syscall.Conn)
	if !ok {
		t.Fatalf("%T is not a syscall.Conn", c)
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	if err := raw.Control(func(fd uintptr) {}); err != nil {
		t.Fatal(err)
	}
}
