package khatru

// sparecycles patch: Relay.MaxRequestSize.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"slices"

	"github.com/fasthttp/websocket"
	"github.com/nbd-wtf/go-nostr"
)

// readMessage reads the next message into a new slice, as Conn.ReadMessage does. With
// limit > 0, a message that is not an EVENT is read only up to limit bytes: the rest of a larger one is
// discarded through a small buffer, never allocated; then tooLarge is set, msg holds the
// message's start and size its whole length.
func readMessage(c *websocket.Conn, limit int) (typ int, msg []byte, size int, tooLarge bool, err error) {
	typ, r, err := c.NextReader()
	if err != nil {
		return typ, nil, 0, false, err
	}
	if limit <= 0 {
		msg, err = io.ReadAll(r)
		return typ, msg, len(msg), false, err
	}
	// one allocation for a message of up to 1 KiB, the head read into its start
	first := make([]byte, 1024)
	n, err := io.ReadFull(r, first[:64])
	head := first[:n]
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return typ, head, n, n > limit && !isEventMessage(head), nil
	}
	if err != nil {
		return typ, nil, 0, false, err
	}
	if isEventMessage(head) {
		msg, err := readRest(r, head)
		return typ, msg, len(msg), false, err
	}
	// at most limit bytes are kept; past them, the rest is only counted
	buf := bytes.NewBuffer(head)
	k, err := io.CopyN(buf, r, int64(max(limit-n, 0)+1))
	if err == io.EOF {
		size = n + int(k)
		return typ, buf.Bytes(), size, size > limit, nil
	}
	if err != nil {
		return typ, nil, 0, false, err
	}
	var scratch [32 << 10]byte
	discarded, err := io.CopyBuffer(io.Discard, r, scratch[:])
	return typ, buf.Bytes()[:min(buf.Len(), 1024)], n + int(k) + int(discarded), true, err
}

// readRest appends the rest of r to msg, growing it only when its capacity is used up (io.ReadAll
// would start a new slice and the caller copy both into a third).
func readRest(r io.Reader, msg []byte) ([]byte, error) {
	for {
		if len(msg) == cap(msg) {
			msg = slices.Grow(msg, cap(msg))
		}
		k, err := r.Read(msg[len(msg):cap(msg)])
		msg = msg[:len(msg)+k]
		if err == io.EOF {
			return msg, nil
		}
		if err != nil {
			return msg, err
		}
	}
}

// maxOversized is how many messages over Relay.MaxRequestSize a connection may send; with the
// last the relay closes it.
const maxOversized = 4

// isEventMessage reports whether msg is an EVENT message: `[`, `"EVENT"`, with JSON
// whitespace allowed around them.
func isEventMessage(msg []byte) bool {
	msg = bytes.TrimLeft(msg, " \t\r\n")
	if len(msg) == 0 || msg[0] != '[' {
		return false
	}
	return bytes.HasPrefix(bytes.TrimLeft(msg[1:], " \t\r\n"), []byte(`"EVENT"`))
}

// requestTooLarge is the answer to a message of size bytes, over max, that is not an EVENT:
// CLOSED for a REQ or COUNT whose subscription id can be read from its start (head), NOTICE
// otherwise.
func requestTooLarge(head []byte, size, max int) any {
	reason := fmt.Sprintf("invalid: a message of %d bytes, more than the %d allowed for anything but an EVENT", size, max)
	msg := head
	dec := json.NewDecoder(bytes.NewReader(msg[:min(len(msg), 1024)]))
	var label, id string
	if tok, err := dec.Token(); err != nil || tok != json.Delim('[') {
		return nostr.NoticeEnvelope(reason)
	}
	if tok, err := dec.Token(); err == nil {
		label, _ = tok.(string)
	}
	if tok, err := dec.Token(); err == nil {
		id, _ = tok.(string)
	}
	if (label == "REQ" || label == "COUNT") && id != "" {
		return nostr.ClosedEnvelope{SubscriptionID: id, Reason: reason}
	}
	return nostr.NoticeEnvelope(reason)
}
