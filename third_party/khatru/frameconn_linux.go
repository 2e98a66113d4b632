package khatru

import (
	"io"
	"syscall"
	"unsafe"
)

// rawWritev says that frameConn can write with writev on this system (sparecycles patch 20).
const rawWritev = true

// rawWrite is the function frameConn hands its syscall.RawConn: it writes c.cur from c.off on
// with writev, advancing c.off, until the frame is complete, the socket is full (EAGAIN: it
// then returns false to wait for room when c.block is set, else gives up with c.err set) or an
// error (c.err). Called with c.mu held, through RawConn.Write, which holds the socket's write
// lock.
func (c *frameConn) rawWrite(fd uintptr) bool {
	f := &c.cur
	for {
		var iov [4]syscall.Iovec
		n, skip := 0, c.off
		for _, b := range [4][]byte{f.hdr[:f.hn], f.parts[0], f.parts[1], f.parts[2]} {
			if skip >= len(b) {
				skip -= len(b)
				continue
			}
			b = b[skip:]
			skip = 0
			iov[n].Base = &b[0]
			iov[n].SetLen(len(b))
			n++
		}
		if n == 0 {
			return true
		}
		w, _, errno := syscall.Syscall(syscall.SYS_WRITEV, fd, uintptr(unsafe.Pointer(&iov[0])), uintptr(n))
		switch {
		case errno == syscall.EINTR:
			continue
		case errno == syscall.EAGAIN:
			c.err = syscall.EAGAIN
			return !c.block
		case errno != 0:
			c.err = errno
			return true
		}
		if w == 0 {
			c.err = io.ErrShortWrite
			return true
		}
		c.off += int(w)
		c.err = nil
	}
}
