package khatru

// sparecycles patch: tests of the outbox (MaxOutboundBytes), MaxMessagesInFlight, the REQ and
// COUNT fixes and the single disconnect, against the real relay over real websockets.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fasthttp/websocket"
	"github.com/nbd-wtf/go-nostr"
)

func serve(t *testing.T, rl *Relay) string {
	t.Helper()
	srv := httptest.NewServer(rl)
	t.Cleanup(func() { srv.CloseClientConnections(); srv.Close() })
	return "ws" + strings.TrimPrefix(srv.URL, "http")
}

// dial connects a raw websocket client; with rcvbuf > 0 its socket's receive buffer is that
// small, for a client that is not going to read.
func dial(t *testing.T, url string, rcvbuf int) *websocket.Conn {
	t.Helper()
	d := websocket.Dialer{NetDialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if err == nil && rcvbuf > 0 {
			c.(*net.TCPConn).SetReadBuffer(rcvbuf)
		}
		return c, err
	}}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, _, err := d.DialContext(ctx, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func send(t *testing.T, c *websocket.Conn, msg ...any) {
	t.Helper()
	b, err := json.Marshal(msg)
	if err != nil {
		t.Fatal(err)
	}
	c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if err := c.WriteMessage(websocket.TextMessage, b); err != nil {
		t.Fatal(err)
	}
}

// next reads the next message (with a deadline) and returns it parsed as a JSON array.
func next(t *testing.T, c *websocket.Conn) []json.RawMessage {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, b, err := c.ReadMessage()
	if err != nil {
		t.Fatal(err)
	}
	var msg []json.RawMessage
	if err := json.Unmarshal(b, &msg); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	return msg
}

func label(msg []json.RawMessage) string {
	var s string
	json.Unmarshal(msg[0], &s)
	return s
}

func signed(t *testing.T, kind int, content string) nostr.Event {
	t.Helper()
	evt := nostr.Event{Kind: kind, CreatedAt: nostr.Now(), Tags: nostr.Tags{}, Content: content}
	if err := evt.Sign(nostr.GeneratePrivateKey()); err != nil {
		t.Fatal(err)
	}
	return evt
}

// A subscriber that never reads is dropped once its queue is full; meanwhile the publisher gets
// every OK and a reading subscriber every event.
func TestOutboxSlowReaderDropped(t *testing.T) {
	rl := NewRelay()
	rl.EncodeOnce = true
	rl.MaxOutboundBytes = 64 << 10
	dropped := make(chan struct{})
	var slowConn atomic.Pointer[WebSocket]
	rl.OnDisconnect = append(rl.OnDisconnect, func(ctx context.Context) {
		if GetConnection(ctx) == slowConn.Load() {
			close(dropped)
		}
	})
	rl.OnConnect = append(rl.OnConnect, func(ctx context.Context) {
		slowConn.CompareAndSwap(nil, GetConnection(ctx))
	})
	url := serve(t, rl)

	slow := dial(t, url, 4096)
	send(t, slow, "REQ", "s", nostr.Filter{Kinds: []int{1}})
	fast := dial(t, url, 0)
	send(t, fast, "REQ", "f", nostr.Filter{Kinds: []int{1}})
	if l := label(next(t, fast)); l != "EOSE" {
		t.Fatalf("got %s, want EOSE", l)
	}
	pub := dial(t, url, 0)

	// 400 × 32 KB: more than the kernel buffers both ends of a loopback socket (up to 4 MB of
	// send buffer when autotuned) plus the 64 KB queue
	const n = 400
	content := strings.Repeat("x", 32000)
	for i := range n {
		evt := signed(t, 1, content)
		send(t, pub, "EVENT", evt)
		if msg := next(t, pub); label(msg) != "OK" || string(msg[2]) != "true" {
			t.Fatalf("event %d: %s", i, msg)
		}
		if msg := next(t, fast); label(msg) != "EVENT" {
			t.Fatalf("event %d: subscriber got %s", i, msg)
		}
	}
	select {
	case <-dropped:
	case <-time.After(30 * time.Second):
		t.Fatal("the subscriber that never reads was not dropped")
	}
}

// Stored events wait for room: a query of 200 × 64 KB (more than the kernel buffers of a
// loopback socket) to a reader that has not started reading never queues more than
// MaxOutboundBytes, and all of it arrives, in order, once it reads.
func TestOutboxQueryWaitsForRoom(t *testing.T) {
	rl := NewRelay()
	rl.EncodeOnce = true
	rl.MaxOutboundBytes = 128 << 10
	const n = 200
	content := strings.Repeat("y", 64000)
	events := make([]*nostr.Event, n)
	for i := range events {
		evt := signed(t, 1, content)
		events[i] = &evt
	}
	produced := make(chan int, n)
	var peak atomic.Int64
	rl.QueryEvents = append(rl.QueryEvents, func(ctx context.Context, f nostr.Filter) (chan *nostr.Event, error) {
		ch := make(chan *nostr.Event)
		ws := GetConnection(ctx)
		go func() {
			defer close(ch)
			for i, evt := range events {
				ws.out.mu.Lock()
				if b := int64(ws.out.bytes); b > peak.Load() {
					peak.Store(b)
				}
				ws.out.mu.Unlock()
				select {
				case ch <- evt:
					produced <- i
				case <-ctx.Done():
					return
				}
			}
		}()
		return ch, nil
	})
	url := serve(t, rl)
	c := dial(t, url, 0)
	send(t, c, "REQ", "q", nostr.Filter{Kinds: []int{1}})
	// before reading: the producer stalls well short of the end
	for range 20 {
		select {
		case <-produced:
		case <-time.After(10 * time.Second):
			t.Fatal("the query did not start")
		}
	}
	for i := range n {
		msg := next(t, c)
		var evt nostr.Event
		if label(msg) != "EVENT" || json.Unmarshal(msg[2], &evt) != nil || evt.ID != events[i].ID {
			t.Fatalf("message %d: %.80s", i, msg)
		}
	}
	if l := label(next(t, c)); l != "EOSE" {
		t.Fatalf("got %s, want EOSE", l)
	}
	if p := peak.Load(); p > int64(rl.MaxOutboundBytes) {
		t.Fatalf("queued %d bytes, more than the %d allowed", p, rl.MaxOutboundBytes)
	}
}

// Each disconnect runs the OnDisconnect hooks once (upstream ran them twice).
func TestDisconnectOnce(t *testing.T) {
	rl := NewRelay()
	var mu sync.Mutex
	seen := map[*WebSocket]int{}
	var connects, disconnects atomic.Int64
	rl.OnConnect = append(rl.OnConnect, func(ctx context.Context) { connects.Add(1) })
	rl.OnDisconnect = append(rl.OnDisconnect, func(ctx context.Context) {
		mu.Lock()
		seen[GetConnection(ctx)]++
		mu.Unlock()
		disconnects.Add(1)
	})
	url := serve(t, rl)
	before := runtime.NumGoroutine()
	const n = 20
	for range n {
		c := dial(t, url, 0)
		c.Close()
	}
	// wait for every connection's goroutines to end: both would have run kill by then
	deadline := time.Now().Add(20 * time.Second)
	for disconnects.Load() < n || runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d disconnects seen, %d goroutines over the start", disconnects.Load(), n, runtime.NumGoroutine()-before)
		}
		runtime.Gosched()
		time.Sleep(10 * time.Millisecond) // a bounded poll
	}
	mu.Lock()
	defer mu.Unlock()
	for ws, k := range seen {
		if k != 1 {
			t.Errorf("connection %p disconnected %d times", ws, k)
		}
	}
	if c, d := connects.Load(), disconnects.Load(); c != n || d != n {
		t.Fatalf("%d connects, %d disconnects, want %d each", c, d, n)
	}
}

// A REQ refused on its second filter leaves no listener behind, a REQ reusing an id replaces
// the subscription, and a filter with limit 0 is checked too.
func TestReqCheckedWhole(t *testing.T) {
	rl := NewRelay()
	rl.RejectFilter = append(rl.RejectFilter, func(ctx context.Context, f nostr.Filter) (bool, string) {
		if len(f.Kinds) == 1 && f.Kinds[0] == 666 {
			return true, "blocked: no kind 666"
		}
		return false, ""
	})
	var mu sync.Mutex
	var opened []int
	rl.RejectRequest = append(rl.RejectRequest, func(ctx context.Context, id string, filters nostr.Filters, open int) (bool, string) {
		mu.Lock()
		defer mu.Unlock()
		opened = append(opened, open)
		if len(filters) > 3 {
			return true, "too many filters"
		}
		return false, ""
	})
	url := serve(t, rl)
	c := dial(t, url, 0)
	tests := []struct {
		name    string
		filters []nostr.Filter
		want    string // the CLOSED reason, "" for EOSE
	}{
		{"second filter refused", []nostr.Filter{{Kinds: []int{1}}, {Kinds: []int{666}}}, "blocked: no kind 666"},
		{"limit 0 checked", []nostr.Filter{{Kinds: []int{666}, LimitZero: true}}, "blocked: no kind 666"},
		{"request hook", []nostr.Filter{{}, {}, {}, {}}, "blocked: too many filters"},
		{"accepted", []nostr.Filter{{Kinds: []int{1}}}, ""},
		{"replaced", []nostr.Filter{{Kinds: []int{2}}}, ""},
	}
	for _, tc := range tests {
		args := []any{"REQ", "sub"}
		for _, f := range tc.filters {
			args = append(args, f)
		}
		send(t, c, args...)
		msg := next(t, c)
		switch {
		case tc.want == "" && label(msg) != "EOSE":
			t.Errorf("%s: got %s, want EOSE", tc.name, msg)
		case tc.want != "" && (label(msg) != "CLOSED" || !strings.Contains(string(msg[2]), tc.want)):
			t.Errorf("%s: got %s, want CLOSED %q", tc.name, msg, tc.want)
		}
	}
	rl.clientsMutex.Lock()
	listeners := len(rl.listeners)
	rl.clientsMutex.Unlock()
	if listeners != 1 {
		t.Fatalf("%d listeners, want the one of the replacing REQ", listeners)
	}
	mu.Lock()
	defer mu.Unlock()
	if fmt.Sprint(opened) != "[0 0 0 0 0]" {
		t.Fatalf("open subscriptions seen by RejectRequest: %v, want all 0 (a refused REQ keeps none, a REQ replaces its id)", opened)
	}
	// kind 1 no longer reaches "sub"; kind 2 does
	rl.BroadcastEvent(&nostr.Event{Kind: 1, ID: strings.Repeat("1", 64)})
	rl.BroadcastEvent(&nostr.Event{Kind: 2, ID: strings.Repeat("2", 64)})
	msg := next(t, c)
	if label(msg) != "EVENT" || !strings.Contains(string(msg[2]), `"kind":2`) {
		t.Fatalf("got %s, want the kind 2 event", msg)
	}
}

// A refused or failed COUNT is answered with CLOSED, not with a count of 0.
func TestCountRefusedWithClosed(t *testing.T) {
	rl := NewRelay()
	rl.RejectCountFilter = append(rl.RejectCountFilter, func(ctx context.Context, f nostr.Filter) (bool, string) {
		return len(f.Kinds) == 0, "restricted: counts need kinds"
	})
	rl.CountEvents = append(rl.CountEvents, func(ctx context.Context, f nostr.Filter) (int64, error) {
		if f.Kinds[0] == 2 {
			return 0, errors.New("too expensive")
		}
		return 7, nil
	})
	url := serve(t, rl)
	c := dial(t, url, 0)
	tests := []struct {
		filter nostr.Filter
		want   string
	}{
		{nostr.Filter{}, `["CLOSED","c","restricted: counts need kinds"]`},
		{nostr.Filter{Kinds: []int{2}}, `["CLOSED","c","error: too expensive"]`},
		{nostr.Filter{Kinds: []int{1}}, `["COUNT","c",{"count":7}]`},
		// a filter with an HLL offset but no HLL hooks is counted by CountEvents
		{nostr.Filter{Kinds: []int{7}, Tags: nostr.TagMap{"e": {strings.Repeat("a", 64)}}}, `["COUNT","c",{"count":7}]`},
	}
	for _, tc := range tests {
		send(t, c, "COUNT", "c", tc.filter)
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, b, err := c.ReadMessage()
		if err != nil {
			t.Fatal(err)
		}
		if strings.TrimSuffix(string(b), "\n") != tc.want {
			t.Errorf("%+v: got %s, want %s", tc.filter, b, tc.want)
		}
	}
}

// With MaxMessagesInFlight, a connection's messages wait for a slot: no more than that many
// are handled at once, and all are handled.
func TestMessagesInFlight(t *testing.T) {
	rl := NewRelay()
	rl.MaxMessagesInFlight = 2
	var inside, most atomic.Int64
	release := make(chan struct{})
	entered := make(chan struct{}, 100)
	rl.RejectEvent = append(rl.RejectEvent, func(ctx context.Context, evt *nostr.Event) (bool, string) {
		n := inside.Add(1)
		for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
		}
		entered <- struct{}{}
		<-release
		inside.Add(-1)
		return false, ""
	})
	url := serve(t, rl)
	c := dial(t, url, 0)
	const n = 10
	for range n {
		send(t, c, "EVENT", signed(t, 1, "hi"))
	}
	for range 2 {
		<-entered
	}
	// the third handler cannot start while two are inside: check it has not
	select {
	case <-entered:
		t.Fatal("a third message was handled while two were in flight")
	default:
	}
	close(release)
	for i := range n {
		if msg := next(t, c); label(msg) != "OK" {
			t.Fatalf("message %d: %s", i, msg)
		}
	}
	if m := most.Load(); m != 2 {
		t.Fatalf("%d messages handled at once, want 2", m)
	}
}

// A subscription listens before it queries, so an event broadcast while its query runs is
// not lost, and it gets each event once: one both broadcast to it and found by its query is
// not sent again.
func TestReqListensBeforeQuery(t *testing.T) {
	rl := NewRelay()
	rl.EncodeOnce = true
	rl.MaxOutboundBytes = 1 << 20
	stored, during := signed(t, 1, "stored before"), signed(t, 1, "arrives during the query")
	rl.QueryEvents = append(rl.QueryEvents, func(ctx context.Context, f nostr.Filter) (chan *nostr.Event, error) {
		rl.BroadcastEvent(&during) // stored and broadcast while the query runs...
		ch := make(chan *nostr.Event, 2)
		ch <- &stored
		ch <- &during // ...and found by it
		close(ch)
		return ch, nil
	})
	url := serve(t, rl)
	c := dial(t, url, 0)
	send(t, c, "REQ", "q", nostr.Filter{Kinds: []int{1}})
	got := map[string]int{}
	for {
		msg := next(t, c)
		if label(msg) == "EOSE" {
			break
		}
		var evt nostr.Event
		if err := json.Unmarshal(msg[2], &evt); err != nil {
			t.Fatal(err)
		}
		got[evt.Content]++
	}
	if got[stored.Content] != 1 || got[during.Content] != 1 || len(got) != 2 {
		t.Fatalf("got %v, want each event once", got)
	}
}

// Drain waits for the messages being handled and for what they queued to be written, so a
// relay that shuts down delivers the OKs it owes; with a handler stuck it gives up with ctx.
func TestDrain(t *testing.T) {
	rl := NewRelay()
	rl.MaxOutboundBytes = 1 << 20
	entered := make(chan struct{}, 1)
	release := make(chan struct{})
	rl.RejectEvent = append(rl.RejectEvent, func(ctx context.Context, evt *nostr.Event) (bool, string) {
		entered <- struct{}{}
		<-release
		return false, ""
	})
	url := serve(t, rl)
	c := dial(t, url, 0)
	send(t, c, "EVENT", signed(t, 1, "owed an OK"))
	<-entered
	short, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if rl.Drain(short) {
		t.Fatal("drained while a message was still being handled")
	}
	drained := make(chan bool, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		drained <- rl.Drain(ctx)
	}()
	close(release)
	if !<-drained {
		t.Fatal("Drain gave up")
	}
	if msg := next(t, c); label(msg) != "OK" {
		t.Fatalf("after Drain: %s, want the OK", msg)
	}
}
