//go:build !linux

package khatru

// rawWritev says that frameConn can write with writev on this system (sparecycles patch 20):
// elsewhere a frame is written through net.Conn.Write, by the outbox's writer.
const rawWritev = false

func (c *frameConn) rawWrite(fd uintptr) bool { panic("unreachable") }
