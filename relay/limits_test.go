package relay

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fasthttp/websocket"
	"github.com/nbd-wtf/go-nostr"

	"github.com/sparecycles/sparecycles/internal/testrelay"
)

func TestRejectLargeRequests(t *testing.T) {
	check := RejectLargeRequests(8, 3, 2, 5)
	tests := []struct {
		name    string
		id      string
		filters nostr.Filters
		open    int
		want    string
	}{
		{"small", "s", nostr.Filters{{Kinds: []int{1}}}, 0, ""},
		{"long id", "123456789", nostr.Filters{{}}, 0, "invalid: subscription id is 9 bytes"},
		{"too many open", "s", nostr.Filters{{}}, 3, "blocked: 3 subscriptions open"},
		{"too many filters", "s", nostr.Filters{{}, {}, {}}, 0, "invalid: 3 filters"},
		{"values over all filters", "s", nostr.Filters{{Kinds: []int{1, 2, 3}}, {Authors: []string{"a", "b"}, Tags: nostr.TagMap{"e": {"x"}}}}, 0, "invalid: 6 ids"},
		{"values at the cap", "s", nostr.Filters{{IDs: []string{"a", "b"}, Tags: nostr.TagMap{"e": {"x"}, "p": {"y", "z"}}}}, 2, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			reject, msg := check(context.Background(), tc.id, tc.filters, tc.open)
			if reject != (tc.want != "") || !strings.HasPrefix(msg, tc.want) {
				t.Fatalf("got %v %q, want %q", reject, msg, tc.want)
			}
		})
	}
}

func TestRateClasses(t *testing.T) {
	clk := newClock()
	trusted, nwc, anon := newKey(t), newKey(t), newKey(t)
	_, byPubkey := RateLimitEvents(RateLimits{
		Pubkey: Rate{0.001, 2}, NWC: Rate{0.001, 5}, Authed: Rate{0.001, 10}, Trusted: []string{trusted.pk},
	}, clk.Now)
	count := func(k key, kind, n int) (accepted int) {
		for range n {
			evt := nostr.Event{PubKey: k.pk, Kind: kind}
			if reject, _ := byPubkey(context.Background(), &evt); !reject {
				accepted++
			}
		}
		return accepted
	}
	if n := count(trusted, 7000, 100); n != 100 {
		t.Errorf("trusted pubkey: %d of 100 accepted", n)
	}
	if n := count(nwc, 23195, 100); n != 5 {
		t.Errorf("NWC responses: %d of 100 accepted, want the NWC burst of 5", n)
	}
	if n := count(nwc, 7000, 100); n != 2 {
		t.Errorf("the same key's feedback: %d of 100 accepted, want the pubkey burst of 2 (NWC has its own bucket)", n)
	}
	if n := count(anon, 5000, 100); n != 2 {
		t.Errorf("anonymous: %d of 100 accepted, want 2", n)
	}
}

// rawConn is a websocket client from a chosen local address, for tests about addresses.
type rawConn struct {
	t *testing.T
	c *websocket.Conn
}

// dialFrom connects to url from local address from (any 127.0.0.0/8 address routes to
// loopback), with extra request headers.
func dialFrom(t *testing.T, url, from string, header http.Header) (*rawConn, *http.Response, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, resp, err := testrelay.DialFrom(ctx, url, from, 0, header)
	if err != nil {
		return nil, resp, err
	}
	t.Cleanup(func() { c.Close() })
	return &rawConn{t, c}, resp, nil
}

func (rc *rawConn) send(msg ...any) {
	rc.t.Helper()
	b, err := json.Marshal(msg)
	if err != nil {
		rc.t.Fatal(err)
	}
	rc.c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if err := rc.c.WriteMessage(websocket.TextMessage, b); err != nil {
		rc.t.Fatal(err)
	}
}

// next returns the next message as a JSON array; its label is the first element.
// next skips the AUTH challenge the relay sends every connection as it opens.
func (rc *rawConn) next() (label string, msg []json.RawMessage) {
	rc.t.Helper()
	for {
		rc.c.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, b, err := rc.c.ReadMessage()
		if err != nil {
			rc.t.Fatal(err)
		}
		if err := json.Unmarshal(b, &msg); err != nil || len(msg) == 0 {
			rc.t.Fatalf("%s: %v", b, err)
		}
		json.Unmarshal(msg[0], &label)
		if label != "AUTH" {
			return label, msg
		}
	}
}

// publish sends evt and returns the OK reason, "" for OK true.
func (rc *rawConn) publish(evt nostr.Event) string {
	rc.t.Helper()
	rc.send("EVENT", evt)
	for {
		label, msg := rc.next()
		if label != "OK" {
			continue
		}
		var ok bool
		var reason string
		json.Unmarshal(msg[2], &ok)
		json.Unmarshal(msg[3], &reason)
		if ok {
			return ""
		}
		return reason
	}
}

// A client gets at most MaxConnsPerIP connections; others are not affected, and a closed
// connection gives its slot back.
func TestConnectionsPerIP(t *testing.T) {
	cfg := testConfig(t)
	cfg.MaxConnsPerIP = 3
	tr := startRelay(t, cfg)
	var conns []*rawConn
	for range 3 {
		rc, _, err := dialFrom(t, tr.url, "127.0.0.2", nil)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, rc)
	}
	_, resp, err := dialFrom(t, tr.url, "127.0.0.2", nil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("fourth connection from one address: %v %v, want 429", resp, err)
	}
	if _, _, err := dialFrom(t, tr.url, "127.0.0.1", nil); err != nil {
		t.Fatalf("another address was refused: %v", err)
	}
	conns[0].c.Close()
	waitFor(t, "the closed connection's slot back", func() bool {
		rc, _, err := dialFrom(t, tr.url, "127.0.0.2", nil)
		if err == nil {
			rc.c.Close()
		}
		return err == nil
	})
}

// X-Forwarded-For counts only from --trusted-proxies (issue 11, item 5): a client cannot pick
// a fresh rate-limit bucket per connection, and a trusted proxy's clients get one each.
func TestTrustedProxies(t *testing.T) {
	cfg := testConfig(t)
	cfg.IPRate, cfg.IPBurst = 0.001, 3
	cfg.TrustedProxies, _ = ParseProxies("127.0.0.3/32")
	tr := startRelay(t, cfg)
	k := newKey(t)
	accepted := 0
	for i := range 6 { // a fresh forged address per connection: one bucket all the same
		h := http.Header{"X-Forwarded-For": {fmt.Sprintf("203.0.113.%d", i+1)}}
		rc, _, err := dialFrom(t, tr.url, "127.0.0.2", h)
		if err != nil {
			t.Fatal(err)
		}
		if rc.publish(jobRequest(t, k, time.Now(), nostr.Tag{"param", "n", fmt.Sprint(i)})) == "" {
			accepted++
		}
	}
	if accepted != 3 {
		t.Fatalf("%d of 6 accepted from one address with forged X-Forwarded-For, want the burst of 3", accepted)
	}
	// behind the trusted proxy, each client has its own bucket
	for i, client := range []string{"198.51.100.1", "198.51.100.2"} {
		h := http.Header{"X-Forwarded-For": {"6.6.6.6, " + client}}
		rc, _, err := dialFrom(t, tr.url, "127.0.0.3", h)
		if err != nil {
			t.Fatal(err)
		}
		for j := range 3 {
			if msg := rc.publish(jobRequest(t, k, time.Now(), nostr.Tag{"param", "m", fmt.Sprint(i, j)})); msg != "" {
				t.Fatalf("client %s behind the proxy, event %d: %q", client, j, msg)
			}
		}
		if msg := rc.publish(jobRequest(t, k, time.Now(), nostr.Tag{"param", "m", fmt.Sprint(i, "x")})); !strings.HasPrefix(msg, "rate-limited:") {
			t.Fatalf("client %s behind the proxy past its burst: %q", client, msg)
		}
	}
}

// Busy services are not throttled as spam (issue 11, item 7): trusted pubkeys are not limited,
// NIP-47 wallet events have their own bucket.
func TestBusyServicesNotThrottled(t *testing.T) {
	cfg := testConfig(t)
	cfg.IPRate, cfg.IPBurst = 0.001, 10
	cfg.PubkeyRate, cfg.PubkeyBurst = 0.001, 10
	wallet, worker, stranger := newKey(t), newKey(t), newKey(t)
	cfg.TrustedPubkeys = []string{worker.pk}
	tr := startRelay(t, cfg)
	c := tr.connect(t)
	for i := range 50 {
		fb := worker.sign(t, nostr.Event{Kind: 7000, Tags: nostr.Tags{{"status", "processing"}, {"e", strings.Repeat("a", 64)}, {"p", stranger.pk}, {"n", fmt.Sprint(i)}}})
		if msg := publish(t, c, fb); msg != "" {
			t.Fatalf("trusted worker's feedback %d: %q", i, msg)
		}
	}
	// a wallet service's responses: ephemeral, so OK true needs a listener
	listener := tr.connect(t)
	sub, err := listener.Subscribe(context.Background(), nostr.Filter{Kinds: []int{23195}})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	<-sub.EOSE // subscribed from here on
	for i := range 50 {
		resp := wallet.sign(t, nostr.Event{Kind: 23195, Content: fmt.Sprint(i), Tags: nostr.Tags{{"p", stranger.pk}}})
		if msg := publish(t, c, resp); msg != "" && !strings.HasPrefix(msg, "broadcasted") {
			t.Fatalf("wallet response %d: %q", i, msg)
		}
	}
	limited := 0
	for i := range 20 {
		if msg := publish(t, c, jobRequest(t, stranger, time.Now(), nostr.Tag{"param", "n", fmt.Sprint(i)})); strings.HasPrefix(msg, "rate-limited:") {
			limited++
		}
	}
	if limited != 10 {
		t.Fatalf("an anonymous publisher had %d of 20 limited, want 10", limited)
	}
}

// A COUNT is answered, bounded, and leaves nothing running (issue 11, item 1).
func TestCount(t *testing.T) {
	cfg := testConfig(t)
	cfg.QueryScan = 50
	tr := startRelay(t, cfg)
	c := tr.connect(t)
	k := newKey(t)
	for i := range 60 {
		if msg := publish(t, c, jobRequest(t, k, time.Now(), nostr.Tag{"param", "n", fmt.Sprint(i)})); msg != "" {
			t.Fatal(msg)
		}
	}
	rc, _, err := dialFrom(t, tr.url, "127.0.0.1", nil)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		filter nostr.Filter
		want   string
	}{
		{nostr.Filter{Kinds: []int{5000}, Authors: []string{k.pk}, Limit: 10}, ""}, // 60 index entries over 50: refused
		{nostr.Filter{Kinds: []int{5001}}, `{"count":0}`},
	}
	tests[0].want = "CLOSED"
	for _, tc := range tests {
		rc.send("COUNT", "c", tc.filter)
		label, msg := rc.next()
		if tc.want == "CLOSED" {
			if label != "CLOSED" || !strings.Contains(string(msg[2]), "blocked: counting this filter needs more than 50") {
				t.Fatalf("%v: %s %s", tc.filter, label, msg)
			}
			continue
		}
		if label != "COUNT" || string(msg[2]) != tc.want {
			t.Fatalf("%v: %s %s, want %s", tc.filter, label, msg, tc.want)
		}
	}
	// 1,000 counts in a row are all answered
	for range 1000 {
		rc.send("COUNT", "c", nostr.Filter{Kinds: []int{5000}, Since: ptr(nostr.Now() + 3600)})
	}
	for i := range 1000 {
		if label, msg := rc.next(); label != "COUNT" && !(label == "CLOSED" && strings.Contains(string(msg[2]), "rate-limited")) {
			t.Fatalf("count %d: %s", i, msg)
		}
	}
	var doc struct {
		NIPs []int `json:"supported_nips"`
	}
	getJSON(t, tr.http, map[string]string{"Accept": "application/nostr+json"}, &doc)
	if !contains(doc.NIPs, 45) {
		t.Fatalf("NIP-11 lists %v, without 45", doc.NIPs)
	}
}

func ptr[T any](v T) *T { return &v }

func contains(s []int, v int) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// waitFor polls cond (bounded) until it holds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Subscriptions and REQ sizes are capped (issue 11, item 4), with CLOSED saying why.
func TestRequestCaps(t *testing.T) {
	cfg := testConfig(t)
	cfg.MaxSubscriptions, cfg.MaxFilterValues = 5, 100
	tr := startRelay(t, cfg)
	rc, _, err := dialFrom(t, tr.url, "127.0.0.1", nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		rc.send("REQ", fmt.Sprint("s", i), nostr.Filter{Kinds: []int{5000}, Limit: 1})
		if label, msg := rc.next(); label != "EOSE" {
			t.Fatalf("subscription %d: %s", i, msg)
		}
	}
	rc.send("REQ", "s5", nostr.Filter{Kinds: []int{5000}})
	if label, msg := rc.next(); label != "CLOSED" || !strings.Contains(string(msg[2]), "blocked: 5 subscriptions open") {
		t.Fatalf("sixth subscription: %s", msg)
	}
	rc.send("REQ", "s0", nostr.Filter{Kinds: []int{5001}}) // replaces s0: allowed
	if label, msg := rc.next(); label != "EOSE" {
		t.Fatalf("replacing subscription: %s", msg)
	}
	rc.send("CLOSE", "s1")
	ids := make([]string, 7000)
	for i := range ids {
		ids[i] = fmt.Sprintf("%064x", i)
	}
	rc.send("REQ", "big", nostr.Filter{IDs: ids})
	if label, msg := rc.next(); label != "CLOSED" || !strings.Contains(string(msg[2]), "invalid: a message of 469") {
		t.Fatalf("7,000 ids (over --max-req-bytes): %s", msg)
	}
	rc.send("REQ", "big", nostr.Filter{IDs: ids[:101]})
	if label, msg := rc.next(); label != "CLOSED" || !strings.Contains(string(msg[2]), "invalid: 101 ids") {
		t.Fatalf("101 ids (over --max-filter-values): %s", msg)
	}
	rc.send("REQ", "s1", nostr.Filter{IDs: ids[:100]}) // s1 was closed: room again
	if label, msg := rc.next(); label != "EOSE" {
		t.Fatalf("after CLOSE: %s", msg)
	}
}

// OK true means stored, also for a copy of an event whose first copy is still being committed
// (issue 11, item 8).
func TestDuplicateWaitsForCommit(t *testing.T) {
	tr := startRelay(t, testConfig(t))
	k := newKey(t)
	checker := tr.connect(t)
	for round := range 5 {
		evt := jobRequest(t, k, time.Now(), nostr.Tag{"param", "round", fmt.Sprint(round)})
		var wg sync.WaitGroup
		errs := make(chan error, 20)
		for range 20 {
			c := tr.connect(t)
			wg.Add(1)
			go func() {
				defer wg.Done()
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				ok, err := c.Publish(ctx, evt)
				if err != nil || !ok.Accepted {
					errs <- fmt.Errorf("publish: %+v %v", ok, err)
					return
				}
				// OK true: it must be there now
				evs, err := checker.Query(ctx, nostr.Filter{IDs: []string{evt.ID}})
				if err != nil || len(evs) != 1 {
					errs <- fmt.Errorf("OK true before stored: query found %d (%v)", len(evs), err)
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
	}
}

// /api/stats counts each connection once (issue 11, item 8).
func TestConnectionCountBalanced(t *testing.T) {
	tr := startRelay(t, testConfig(t))
	for range 50 {
		rc, _, err := dialFrom(t, tr.url, "127.0.0.1", nil)
		if err != nil {
			t.Fatal(err)
		}
		rc.c.Close()
	}
	waitFor(t, "connections back to 0", func() bool {
		n := tr.r.Stats().Connections
		if n < 0 {
			t.Fatalf("connections %d", n)
		}
		return n == 0
	})
}

// The relay stores what NIP-11 says it accepts (issue 11, item 6): a 200 KB result is stored
// and served; an event over the limit is refused before any subscriber sees it.
func TestLargeEventsStoredUpToTheLimit(t *testing.T) {
	tr := startRelay(t, testConfig(t))
	c := tr.connect(t)
	customer, worker := newKey(t), newKey(t)
	req := jobRequest(t, customer, time.Now())
	if msg := publish(t, c, req); msg != "" {
		t.Fatal(msg)
	}
	watcher := tr.connect(t)
	sub, err := watcher.Subscribe(context.Background(), nostr.Filter{Kinds: []int{6000}})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	<-sub.EOSE
	if msg := publish(t, c, claim(t, worker, req, time.Now(), time.Minute)); msg != "" { // the request carries a bid
		t.Fatalf("claim: %q", msg)
	}
	big := result(t, worker, req, time.Now())
	big.Content = strings.Repeat("r", 200<<10)
	big = worker.sign(t, big)
	if msg := publish(t, c, big); msg != "" {
		t.Fatalf("200 KB result: %q", msg)
	}
	evs := testrelay.Query(t, c, nostr.Filter{IDs: []string{big.ID}})
	if len(evs) != 1 || evs[0].Content != big.Content || !evs[0].CheckID() {
		t.Fatalf("200 KB result not served back intact (%d events)", len(evs))
	}
	if job, _ := tr.r.jobs.Lookup(req.ID); job.ResultID != big.ID {
		t.Fatalf("job %+v, want done by the big result", job)
	}
	other := jobRequest(t, customer, time.Now())
	over := result(t, worker, other, time.Now())
	over.Content = strings.Repeat("o", tr.cfg.MaxEventBytes)
	over = worker.sign(t, over)
	if msg := publish(t, c, over); !strings.HasPrefix(msg, "invalid:") {
		t.Fatalf("event over the limit: %q", msg)
	}
	// the subscriber saw the big result and nothing of the refused one
	select {
	case evt := <-sub.Events:
		if evt.ID != big.ID {
			t.Fatalf("subscriber got %s", evt.ID)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("subscriber did not get the big result")
	}
	marker := result(t, worker, jobRequest(t, customer, time.Now().Add(-time.Second)), time.Now())
	if msg := publish(t, c, marker); msg != "" {
		t.Fatal(msg)
	}
	select {
	case evt := <-sub.Events:
		if evt.ID != marker.ID {
			t.Fatalf("subscriber got %s before the marker", evt.ID)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("subscriber did not get the marker")
	}
}

// REQs and COUNTs are rate-limited per client address.
func TestRequestRate(t *testing.T) {
	cfg := testConfig(t)
	cfg.ReqRate, cfg.ReqBurst = 0.001, 3
	tr := startRelay(t, cfg)
	noisy, _, err := dialFrom(t, tr.url, "127.0.0.2", nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		noisy.send("REQ", fmt.Sprint("s", i), nostr.Filter{Kinds: []int{5000}, Limit: 1})
		if label, msg := noisy.next(); label != "EOSE" {
			t.Fatalf("REQ %d: %s", i, msg)
		}
	}
	noisy.send("COUNT", "c", nostr.Filter{Kinds: []int{5000}})
	if label, msg := noisy.next(); label != "CLOSED" || !strings.Contains(string(msg[2]), "rate-limited:") {
		t.Fatalf("COUNT past the burst: %s", msg)
	}
	quiet, _, err := dialFrom(t, tr.url, "127.0.0.1", nil)
	if err != nil {
		t.Fatal(err)
	}
	quiet.send("REQ", "q", nostr.Filter{Kinds: []int{5000}, Limit: 1})
	if label, msg := quiet.next(); label != "EOSE" {
		t.Fatalf("another address: %s", msg)
	}
}
