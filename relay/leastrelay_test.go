package relay

import (
	"encoding/json"
	"net"
	"net/http"
	"testing"

	"github.com/fasthttp/websocket"
	"github.com/nbd-wtf/go-nostr"

	"github.com/sparecycles/sparecycles/internal/sigcheck"
)

// startLeastRelay serves the least a relay can do with an EVENT and still answer it over a
// websocket: read the frame, parse it (khatru's parser), check the id, verify the signature
// (internal/sigcheck, as the floor), write the OK, on the connection's own goroutine, with the
// same websocket library as khatru, and store nothing. It is the yardstick for the I/O a relay
// cannot avoid under a load: its CPU per event, measured as our relay's is, is what the
// signature floor leaves out (reading and writing the socket, the scheduler, netpoll). It
// returns its ws:// URL; it stops with the test.
func startLeastRelay(tb testing.TB) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	up := websocket.Upgrader{ReadBufferSize: 4096, WriteBufferSize: 4096}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer conn.Close()
		parser := nostr.NewMessageParser()
		v := sigcheck.NewSequentialVerifier(0)
		for {
			_, msg, err := conn.ReadMessage()
			if err != nil {
				return
			}
			env, err := parser.ParseMessage(string(msg))
			if err != nil {
				return
			}
			ee, ok := env.(*nostr.EventEnvelope)
			if !ok {
				continue
			}
			evt := &ee.Event
			ok = evt.CheckID() && v.Verify(evt) == nil
			reply, _ := json.Marshal(nostr.OKEnvelope{EventID: evt.ID, OK: ok})
			if err := conn.WriteMessage(websocket.TextMessage, reply); err != nil {
				return
			}
		}
	})}
	go srv.Serve(ln)
	tb.Cleanup(func() { srv.Close() })
	return "ws://" + ln.Addr().String()
}
