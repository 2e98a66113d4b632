package khatru

// sparecycles patch 20: with an outbox (MaxOutboundBytes), the relay writes its text frames to
// the socket itself, so that a broadcast can hand a subscriber its event on the broadcasting
// goroutine, without waiting: it writes what the socket takes at once (on a connection that
// keeps up, the whole frame) and leaves the rest, if any, to the connection's outbox writer,
// which may wait (with a deadline). Before, every broadcast started a goroutine per subscriber
// whose only job was one write: a goroutine start, a wake-up and a deadline timer per
// subscriber per event, which on a busy machine made up most of a fan-out's time.
//
// A frame begun without waiting may be left half written. Nothing else may reach the socket
// until it is finished, and the websocket library writes too (pings, pongs, close frames, from
// other goroutines), so every write goes through frameConn: the library's through Write, the
// outbox's through tryFrame and finish, all under one lock that is held from a frame's first
// byte to its last (and is handed to the goroutine that finishes a frame begun elsewhere).

import (
	"bufio"
	"encoding/binary"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// frame is one text message: its header and up to three parts, written with one writev, so a
// broadcast shares the event's JSON between every connection it goes to.
type frame struct {
	hdr   [10]byte
	hn    uint8
	parts [3][]byte
	n     int // payload bytes: what the outbox counts
}

func textFrame(parts ...[]byte) frame {
	var f frame
	for i, p := range parts {
		f.parts[i] = p
		f.n += len(p)
	}
	f.hn = uint8(putFrameHeader(f.hdr[:], f.n))
	return f
}

// size is the frame's length on the wire.
func (f *frame) size() int { return int(f.hn) + f.n }

// putFrameHeader writes the header of an unmasked (server to client), unfragmented,
// uncompressed text frame with n bytes of payload and returns its length (RFC 6455 5.2).
func putFrameHeader(b []byte, n int) int {
	b[0] = 0x81 // FIN, text
	switch {
	case n < 126:
		b[1] = byte(n)
		return 2
	case n < 1<<16:
		b[1] = 126
		binary.BigEndian.PutUint16(b[2:], uint16(n))
		return 4
	default:
		b[1] = 127
		binary.BigEndian.PutUint64(b[2:], uint64(n))
		return 10
	}
}

// appendFrame appends f's bytes from off on to dst.
func appendFrame(dst []byte, f *frame, off int) []byte {
	for _, b := range [4][]byte{f.hdr[:f.hn], f.parts[0], f.parts[1], f.parts[2]} {
		if off >= len(b) {
			off -= len(b)
			continue
		}
		dst = append(dst, b[off:]...)
		off = 0
	}
	return dst
}

// frameConn is a websocket's network connection when the relay has outboxes.
type frameConn struct {
	net.Conn
	raw  syscall.RawConn // nil when the connection has none: then nothing is written without waiting
	wait time.Duration   // the longest a write may wait (Relay.WriteWait)

	// mu is held while a frame is on its way, from its first byte to its last.
	mu sync.Mutex
	// deadline is the write deadline the websocket library last set (Unix ns, 0 for none), for
	// its own writes through Write; the outbox's writes have their own.
	deadline atomic.Int64

	// the frame being written with raw (a copy: f escaping to the heap would cost an allocation
	// per broadcast and subscriber) and how far it is, under mu (see rawWrite)
	cur   frame
	off   int
	block bool  // wait for the socket (else write what it takes now)
	err   error // the write's error, EAGAIN included
	write func(fd uintptr) bool
}

func newFrameConn(c net.Conn, wait time.Duration) *frameConn {
	fc := &frameConn{Conn: c, wait: wait}
	if sc, ok := c.(syscall.Conn); ok && rawWritev {
		if raw, err := sc.SyscallConn(); err == nil {
			fc.raw = raw
			fc.write = fc.rawWrite
		}
	}
	return fc
}

// SetWriteDeadline records the library's deadline for its own writes (see Write).
func (c *frameConn) SetWriteDeadline(t time.Time) error {
	var ns int64
	if !t.IsZero() {
		ns = t.UnixNano()
	}
	c.deadline.Store(ns)
	return nil
}

func (c *frameConn) SetDeadline(t time.Time) error {
	c.SetWriteDeadline(t)
	return c.Conn.SetReadDeadline(t)
}

// Write is the websocket library's write: a whole frame per call (a control frame, or the
// handshake's response), after any frame that is begun. The library's deadline is its budget for
// the socket, and it counts from when the socket is free: the wait for a frame on its way is
// bounded by that frame's own deadline. (The library answers a ping with a pong due within a
// second and fails the connection on any write error: counting the wait for a large frame to a
// reader that is busy for a moment closed connections that the frame's own deadline spares.)
// The budget is never longer than wait.
func (c *frameConn) Write(p []byte) (int, error) {
	budget := c.wait
	if ns := c.deadline.Load(); ns != 0 {
		budget = min(budget, time.Until(time.Unix(0, ns)))
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.Conn.SetWriteDeadline(time.Now().Add(budget))
	n, err := c.Conn.Write(p)
	c.Conn.SetWriteDeadline(time.Time{}) // an expired deadline would fail tryFrame's writes
	return n, err
}

// tryFrame writes what of f the socket takes now, without waiting, if no other frame is on its
// way. It returns how many bytes it wrote, and whether it still holds mu: f is begun and not
// finished, and the caller must finish it (see finish) before anything else is written.
func (c *frameConn) tryFrame(f *frame) (n int, begun bool) {
	if c.raw == nil || !c.mu.TryLock() {
		return 0, false
	}
	n, err := c.rawFrame(f, 0, false)
	if err == nil || n == 0 {
		c.mu.Unlock()
		return n, false
	}
	return n, true
}

// finish writes f from byte off on, waiting for the socket up to wait, and then releases mu;
// begun says that the caller holds mu already (tryFrame left f begun).
func (c *frameConn) finish(f *frame, off int, begun bool) error {
	if !begun {
		c.mu.Lock()
	}
	defer c.mu.Unlock()
	if c.raw != nil {
		// most often the socket takes the whole frame at once: no deadline (a timer) to arm
		n, err := c.rawFrame(f, off, false)
		if err == nil {
			return nil
		}
		if err != syscall.EAGAIN {
			return err
		}
		c.Conn.SetWriteDeadline(time.Now().Add(c.wait))
		_, err = c.rawFrame(f, off+n, true)
		c.Conn.SetWriteDeadline(time.Time{})
		return err
	}
	c.Conn.SetWriteDeadline(time.Now().Add(c.wait))
	_, err := c.Conn.Write(appendFrame(nil, f, off))
	c.Conn.SetWriteDeadline(time.Time{})
	return err
}

// rawFrame writes f from byte off on with writev; with block, until it is all written (or the
// connection's write deadline passes), else only what the socket takes now. It returns the
// bytes written and nil once f is complete, else an error (EAGAIN: the socket is full). Called
// with mu held.
func (c *frameConn) rawFrame(f *frame, off int, block bool) (int, error) {
	c.cur, c.off, c.block, c.err = *f, off, block, nil
	err := c.raw.Write(c.write)
	n := c.off - off
	if err == nil {
		err = c.err
	}
	c.cur = frame{} // let the parts go
	return n, err
}

// idle reports whether no frame was on its way just now.
func (c *frameConn) idle() bool {
	if !c.mu.TryLock() {
		return false
	}
	c.mu.Unlock()
	return true
}

// hijacker hands the websocket library a frameConn when it takes the connection over.
type hijacker struct {
	http.ResponseWriter
	wait time.Duration
	conn *frameConn
}

func (h *hijacker) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, rw, err := http.NewResponseController(h.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	h.conn = newFrameConn(c, h.wait)
	return h.conn, rw, nil
}

func (h *hijacker) Unwrap() http.ResponseWriter { return h.ResponseWriter }
