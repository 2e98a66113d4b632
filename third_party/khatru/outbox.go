package khatru

// sparecycles patch: Relay.MaxOutboundBytes. Upstream writes to a connection from whichever
// goroutine has something to send, under the connection's lock and without a deadline: a client
// that stops reading blocks every broadcast to it, and with it the publisher waiting for its OK
// and every subscriber after it. With an outbox, nothing but a connection's own handlers and
// queries ever waits for that connection:
//   - broadcasts are queued and never wait; a connection whose queue would pass
//     MaxOutboundBytes is closed (with a close frame saying why) instead;
//   - replies (OK, EOSE, CLOSED, NOTICE, COUNT, AUTH) are queued the same way, or written at
//     once by the replying goroutine when the queue is empty;
//   - stored events answering a REQ wait for room (half of MaxOutboundBytes), so a large query
//     moves at the reader's speed without filling memory;
//   - every frame is written with a deadline of Relay.WriteWait; a write that misses it closes
//     the connection.
// One goroutine at a time writes a connection's queue, in order; it exists only while the queue
// is not empty. A broadcast to a connection whose queue is empty is written at once by the
// broadcasting goroutine, as far as the socket takes it without waiting (frameconn.go); only the
// rest, if any, goes to a writer goroutine.

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/fasthttp/websocket"
)

var errOutboxClosed = errors.New("connection closed")

type sendMode int

const (
	sendReply     sendMode = iota // may write on the caller's goroutine when nothing is queued
	sendBroadcast                 // never waits: queued, or the connection is dropped
	sendQuery                     // waits for room in the queue
)

type outbox struct {
	ws   *WebSocket
	conn *frameConn // every frame is written through it
	max  int

	mu      sync.Mutex
	room    *sync.Cond // broadcast when bytes drop or the outbox closes
	queue   []frame
	bytes   int  // queued plus the frame being written
	writing bool // a goroutine is draining the queue; invariant: len(queue) > 0 implies writing
	closed  bool
}

func newOutbox(ws *WebSocket, conn *frameConn, max int) *outbox {
	o := &outbox{ws: ws, conn: conn, max: max}
	o.room = sync.NewCond(&o.mu)
	return o
}

// send queues f (or writes it) according to mode. It returns errOutboxClosed once the
// connection is closing; a broadcast that would overflow the queue closes it.
func (o *outbox) send(f frame, mode sendMode) error {
	o.mu.Lock()
	if mode == sendQuery {
		for !o.closed && o.bytes > 0 && o.bytes+f.n > o.max/2 {
			o.room.Wait()
		}
	}
	if o.closed {
		o.mu.Unlock()
		return errOutboxClosed
	}
	if o.bytes > 0 && o.bytes+f.n > o.max {
		o.closeLocked()
		o.mu.Unlock()
		go o.ws.fail("rate-limited: this connection is not reading fast enough")
		return errOutboxClosed
	}
	o.bytes += f.n
	if o.writing {
		o.queue = append(o.queue, f)
		o.mu.Unlock()
		return nil
	}
	o.writing = true
	o.mu.Unlock()
	if mode != sendBroadcast {
		o.drain(f, 0, false) // the queue was empty: write it now, on this goroutine
		return nil
	}
	// the queue was empty: write what the socket takes now; a writer goroutine, which may wait,
	// writes the rest and what is queued meanwhile
	n, begun := o.conn.tryFrame(&f)
	if n < f.size() {
		go o.drain(f, n, begun)
		return nil
	}
	o.mu.Lock()
	o.bytes -= f.n
	o.room.Broadcast()
	if o.closed || len(o.queue) == 0 {
		o.writing = false
		o.mu.Unlock()
		return nil
	}
	next := o.pop()
	o.mu.Unlock()
	go o.drain(next, 0, false)
	return nil
}

// pop takes the first queued frame. Called with mu held and the queue not empty.
func (o *outbox) pop() frame {
	f := o.queue[0]
	o.queue[0] = frame{}
	o.queue = o.queue[1:]
	if len(o.queue) == 0 {
		o.queue = nil // let the backing array go
	}
	return f
}

// drain writes first from byte off on (begun: tryFrame left it begun, see frameConn.finish),
// then every frame queued meanwhile, and stops when the queue is empty.
func (o *outbox) drain(first frame, off int, begun bool) {
	f := first
	for {
		err := o.conn.finish(&f, off, begun)
		off, begun = 0, false
		o.mu.Lock()
		o.bytes -= f.n
		o.room.Broadcast()
		if err != nil {
			o.closeLocked()
			o.mu.Unlock()
			o.ws.fail("")
			return
		}
		if o.closed || len(o.queue) == 0 {
			o.writing = false
			o.mu.Unlock()
			return
		}
		f = o.pop()
		o.mu.Unlock()
	}
}

// close drops what is queued and wakes queries waiting for room.
func (o *outbox) close() {
	o.mu.Lock()
	o.closeLocked()
	o.mu.Unlock()
}

func (o *outbox) closeLocked() {
	if o.closed {
		return
	}
	o.closed = true
	for _, f := range o.queue {
		o.bytes -= f.n
	}
	o.queue = nil
	o.room.Broadcast()
}

// fail closes the connection, telling the client why in a close frame when reason is set. The
// read loop then ends and the connection is cleaned up as on any disconnect.
func (ws *WebSocket) fail(reason string) {
	// the close frame waits for no other frame: a connection that is failed is often stuck
	if reason != "" && (ws.out == nil || ws.out.conn.idle()) {
		msg := websocket.FormatCloseMessage(websocket.ClosePolicyViolation, reason)
		ws.conn.WriteControl(websocket.CloseMessage, msg, time.Now().Add(time.Second))
	}
	ws.conn.Close()
}

// Drain waits, until ctx is done, for the messages being handled to finish (a write's OK is sent
// after its hook returns) and then for every connection's outbox to be written out, so that a
// relay shutting down delivers the answers it owes before it closes the connections. It
// reports whether everything was drained. sparecycles patch.
func (rl *Relay) Drain(ctx context.Context) bool {
	if !rl.handling.idle(ctx) {
		return false
	}
	rl.clientsMutex.Lock()
	var outs []*outbox
	for ws := range rl.clients {
		if ws.out != nil {
			outs = append(outs, ws.out)
		}
	}
	rl.clientsMutex.Unlock()
	for _, o := range outs {
		if !o.flushed(ctx) {
			return false
		}
	}
	return true
}

// flushed waits until nothing is queued or being written, the outbox closes, or ctx is done.
func (o *outbox) flushed(ctx context.Context) bool {
	stop := context.AfterFunc(ctx, func() {
		o.mu.Lock()
		o.room.Broadcast()
		o.mu.Unlock()
	})
	defer stop()
	o.mu.Lock()
	defer o.mu.Unlock()
	for !o.closed && o.bytes > 0 && ctx.Err() == nil {
		o.room.Wait()
	}
	return o.closed || o.bytes == 0
}

// handlerCount counts messages being handled; unlike a WaitGroup it may be added to while
// someone waits for it to reach zero (clients keep sending while a relay drains).
type handlerCount struct {
	mu   sync.Mutex
	n    int
	zero *sync.Cond
}

func (h *handlerCount) add(d int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.n += d
	if h.n == 0 && h.zero != nil {
		h.zero.Broadcast()
	}
}

// idle waits until no message is being handled, or ctx is done; it reports which.
func (h *handlerCount) idle(ctx context.Context) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.zero == nil {
		h.zero = sync.NewCond(&h.mu)
	}
	stop := context.AfterFunc(ctx, func() {
		h.mu.Lock()
		h.zero.Broadcast()
		h.mu.Unlock()
	})
	defer stop()
	for h.n > 0 && ctx.Err() == nil {
		h.zero.Wait()
	}
	return h.n == 0
}
