package khatru

import (
	"context"
	"encoding/json"
	"net/http"
	"sync"

	"github.com/fasthttp/websocket"
	"github.com/nbd-wtf/go-nostr"
)

type WebSocket struct {
	conn  *websocket.Conn
	mutex sync.Mutex

	// original request
	Request *http.Request

	// this Context will be canceled whenever the connection is closed from the client side or server-side.
	Context context.Context
	cancel  context.CancelFunc

	// nip42
	Challenge       string
	AuthedPublicKey string
	Authed          chan struct{}

	authLock sync.Mutex

	// sparecycles patch: with Relay.EncodeOnce, WriteJSON writes an OK envelope for a
	// well-formed event id as its own MarshalJSON returns it, instead of passing it through
	// encoding/json, which validates and compacts that output again. (OKEnvelope.MarshalJSON
	// writes the id unescaped, so other ids keep the validating path.)
	directJSON bool

	// sparecycles patch: out queues what is written to the connection when
	// Relay.MaxOutboundBytes is set (see outbox.go); nil otherwise.
	out *outbox
}

func (ws *WebSocket) WriteJSON(any any) error {
	if ok, isOK := any.(nostr.OKEnvelope); isOK && ws.directJSON && isHexID(ok.EventID) { // sparecycles patch: see directJSON
		b, err := ok.MarshalJSON()
		if err != nil {
			return err
		}
		return ws.WriteMessage(websocket.TextMessage, b)
	}
	if ws.out != nil { // sparecycles patch: see outbox.go
		b, err := json.Marshal(any)
		if err != nil {
			return err
		}
		return ws.out.send(textFrame(b), sendReply)
	}
	ws.mutex.Lock()
	err := ws.conn.WriteJSON(any)
	ws.mutex.Unlock()
	return err
}

func (ws *WebSocket) WriteMessage(t int, b []byte) error {
	if ws.out != nil && t == websocket.TextMessage { // sparecycles patch: see outbox.go
		return ws.out.send(textFrame(b), sendReply)
	}
	ws.mutex.Lock()
	err := ws.conn.WriteMessage(t, b)
	ws.mutex.Unlock()
	return err
}

// writeText writes parts as one text message without copying them together. sparecycles
// patch: lets a broadcast send the event JSON it encoded once (Relay.EncodeOnce); with an
// outbox the message is queued (see outbox.go) as mode says.
func (ws *WebSocket) writeText(mode sendMode, parts ...[]byte) error {
	if ws.out != nil {
		return ws.out.send(textFrame(parts...), mode)
	}
	ws.mutex.Lock()
	defer ws.mutex.Unlock()
	w, err := ws.conn.NextWriter(websocket.TextMessage)
	if err != nil {
		return err
	}
	for _, p := range parts {
		if _, err := w.Write(p); err != nil {
			w.Close()
			return err
		}
	}
	return w.Close()
}

// isHexID reports whether id is 64 lowercase hex digits. sparecycles patch: see directJSON.
func isHexID(id string) bool {
	if len(id) != 64 {
		return false
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}
