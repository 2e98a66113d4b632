package e2e

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/fasthttp/websocket"
	"github.com/nbd-wtf/go-nostr"
)

// A job request written as raw JSON, the way any Nostr tool (nak, a web client) builds it —
// signed with go-nostr alone and sent as a bare ["EVENT", …] over a plain websocket, with none of
// our packages involved — is served by the worker, and the result arrives on a plain REQ.
func TestRawNostrJobIsServed(t *testing.T) {
	_, url := startRelay(t)
	startWorker(t, url)
	img := servePNG(t, "any client works")

	sk := nostr.GeneratePrivateKey()
	raw := fmt.Sprintf(`{"kind":5000,"created_at":%d,"content":"","tags":[["i",%q,"url"],["output","text/plain"]]}`, time.Now().Unix(), img)
	var evt nostr.Event
	if err := json.Unmarshal([]byte(raw), &evt); err != nil {
		t.Fatal(err)
	}
	if err := evt.Sign(sk); err != nil {
		t.Fatal(err)
	}

	conn, _, err := websocket.DefaultDialer.Dial(url, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	send := func(v ...any) {
		if err := conn.WriteJSON(v); err != nil {
			t.Fatal(err)
		}
	}
	send("REQ", "results", map[string]any{"kinds": []int{6000}, "#e": []string{evt.ID}})
	send("EVENT", evt)
	conn.SetReadDeadline(time.Now().Add(60 * time.Second))
	for {
		_, msg, err := conn.ReadMessage()
		if err != nil {
			t.Fatalf("no result: %v", err)
		}
		var frame []json.RawMessage
		if json.Unmarshal(msg, &frame) != nil || len(frame) < 3 {
			continue
		}
		switch string(frame[0]) {
		case `"OK"`:
			if string(frame[2]) != "true" {
				t.Fatalf("relay refused the raw job: %s", msg)
			}
		case `"EVENT"`:
			var res nostr.Event
			if err := json.Unmarshal(frame[2], &res); err != nil {
				t.Fatal(err)
			}
			if got := strings.ToLower(strings.TrimSpace(res.Content)); got != "any client works" {
				t.Fatalf("result %q", res.Content)
			}
			return
		}
	}
}
