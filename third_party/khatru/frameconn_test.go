package khatru

// sparecycles patch 20: tests of the outbox's own frames (frameconn.go) and of the broadcast
// that writes them on the broadcasting goroutines (writeEvent).

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fasthttp/websocket"
	"github.com/nbd-wtf/go-nostr"
)

// The frames the outbox writes itself read back as the same messages, at every length where the
// header's length field changes size.
func TestFrameLengths(t *testing.T) {
	sizes := []int{0, 1, 125, 126, 127, 65535, 65536, 200000}
	payload := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = 'a' + byte(i%26)
		}
		return b
	}
	rl := NewRelay()
	rl.EncodeOnce = true
	rl.MaxOutboundBytes = 1 << 20
	rl.OnConnect = append(rl.OnConnect, func(ctx context.Context) {
		ws := GetConnection(ctx)
		go func() {
			for _, n := range sizes {
				ws.WriteMessage(websocket.TextMessage, payload(n))
			}
		}()
	})
	c := dial(t, serve(t, rl), 0)
	for _, n := range sizes {
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		typ, b, err := c.ReadMessage()
		if err != nil {
			t.Fatalf("%d bytes: %v", n, err)
		}
		if typ != websocket.TextMessage || !bytes.Equal(b, payload(n)) {
			t.Fatalf("%d bytes: got type %d, %d bytes %.20q", n, typ, len(b), b)
		}
	}
}

// smallBuffers sets a small send buffer on every connection it accepts, so that a large frame
// does not fit in the socket at once.
type smallBuffers struct{ net.Listener }

func (l smallBuffers) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		c.(*net.TCPConn).SetWriteBuffer(16 << 10)
	}
	return c, err
}

// A frame that does not fit in the socket is begun by the broadcast and finished by the
// connection's writer, and nothing gets between its parts: not the library's pings and pongs,
// which go out meanwhile, nor the next broadcast. A subscriber that reads only once 3 MB are
// on their way, and then slowly, gets every event whole and in order.
func TestFrameFinishedWhole(t *testing.T) {
	rl := NewRelay()
	rl.EncodeOnce = true
	rl.MaxOutboundBytes = 16 << 20
	rl.PingPeriod = 2 * time.Millisecond // the relay's pings, between and during frames
	rl.WriteWait = time.Minute           // the subscriber reads only once every event is published
	srv := httptest.NewUnstartedServer(rl)
	srv.Listener = smallBuffers{srv.Listener}
	srv.Start()
	t.Cleanup(func() { srv.CloseClientConnections(); srv.Close() })
	url := "ws" + strings.TrimPrefix(srv.URL, "http")

	// (not a small receive buffer: shrunk after the handshake, it leaves a window smaller than
	// a segment, and loopback TCP stalls on it whoever writes)
	sub := dial(t, url, 0)
	send(t, sub, "REQ", "s", nostr.Filter{Kinds: []int{1}})
	if l := label(next(t, sub)); l != "EOSE" {
		t.Fatalf("got %s, want EOSE", l)
	}
	// the subscriber's pings, answered by the relay's pongs
	stop := make(chan struct{})
	var pinging sync.WaitGroup
	pinging.Add(1)
	go func() {
		defer pinging.Done()
		for {
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
				sub.WriteControl(websocket.PingMessage, nil, time.Now().Add(time.Second))
			}
		}
	}()
	defer func() { close(stop); pinging.Wait() }()

	pub := dial(t, url, 0)
	const n = 30
	var ids []string
	for i := range n {
		evt := signed(t, 1, fmt.Sprintf("%d %s", i, strings.Repeat("z", 100_000)))
		ids = append(ids, evt.ID)
		send(t, pub, "EVENT", evt)
		if msg := next(t, pub); label(msg) != "OK" || string(msg[2]) != "true" {
			t.Fatalf("event %d: %s", i, msg)
		}
	}
	for i := range n {
		time.Sleep(time.Millisecond) // a slow reader
		msg := next(t, sub)
		var evt nostr.Event
		if label(msg) != "EVENT" || json.Unmarshal(msg[2], &evt) != nil || evt.ID != ids[i] || !evt.CheckID() {
			t.Fatalf("message %d: %.80s", i, msg)
		}
	}
}

// A broadcast to more listeners than one goroutine writes to (fanOutShare) reaches each of them
// once, with its own subscription id, also when a connection has several of them.
func TestFanOutEveryListener(t *testing.T) {
	rl := NewRelay()
	rl.EncodeOnce = true
	rl.MaxOutboundBytes = 1 << 20
	url := serve(t, rl)
	const conns, subsEach, events = 50, 3, 5
	var subs []*websocket.Conn
	for i := range conns {
		c := dial(t, url, 0)
		for j := range subsEach {
			send(t, c, "REQ", fmt.Sprintf("c%d-s%d", i, j), nostr.Filter{Kinds: []int{1}})
			if l := label(next(t, c)); l != "EOSE" {
				t.Fatalf("got %s, want EOSE", l)
			}
		}
		subs = append(subs, c)
	}
	pub := dial(t, url, 0)
	var ids []string
	for i := range events {
		evt := signed(t, 1, fmt.Sprint(i))
		ids = append(ids, evt.ID)
		send(t, pub, "EVENT", evt)
		if msg := next(t, pub); label(msg) != "OK" || string(msg[2]) != "true" {
			t.Fatalf("event %d: %s", i, msg)
		}
	}
	for i, c := range subs {
		got := map[string]int{}
		for range events * subsEach {
			msg := next(t, c)
			var sid string
			var evt nostr.Event
			if label(msg) != "EVENT" || json.Unmarshal(msg[1], &sid) != nil || json.Unmarshal(msg[2], &evt) != nil {
				t.Fatalf("connection %d: %.80s", i, msg)
			}
			got[sid+" "+evt.ID]++
		}
		for j := range subsEach {
			for _, id := range ids {
				if k := fmt.Sprintf("c%d-s%d %s", i, j, id); got[k] != 1 {
					t.Fatalf("connection %d got %s %d times", i, k, got[k])
				}
			}
		}
	}
}

// The library's own write (here a pong, which it gives a second) spends its deadline on the
// socket, not on waiting for a frame that is on its way: a frame that a reader busy for a moment
// takes longer than that to accept delays the pong, and the connection lives.
func TestLibraryWriteWaitsForFrame(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
	}()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	server, ok := <-accepted
	if !ok {
		t.Fatal("accept failed")
	}
	defer server.Close()

	fc := newFrameConn(server, 10*time.Second)
	fc.mu.Lock() // a frame on its way
	const budget = 300 * time.Millisecond
	due := make(chan time.Time, 1)
	written := make(chan error, 1)
	go func() {
		d := time.Now().Add(budget)
		fc.SetWriteDeadline(d) // as the library does before each write
		due <- d
		_, err := fc.Write([]byte("pong"))
		written <- err
	}()
	// hold the frame until the library's deadline is well past
	d := <-due
	for time.Now().Before(d.Add(budget)) {
		time.Sleep(10 * time.Millisecond)
	}
	select {
	case err := <-written:
		t.Fatalf("the write did not wait for the frame on its way: %v", err)
	default:
	}
	fc.mu.Unlock() // the frame is finished
	if err := <-written; err != nil {
		t.Fatalf("write after the frame: %v", err)
	}
	client.SetReadDeadline(time.Now().Add(10 * time.Second))
	b := make([]byte, 4)
	if _, err := io.ReadFull(client, b); err != nil || string(b) != "pong" {
		t.Fatalf("read %q, %v", b, err)
	}
}
