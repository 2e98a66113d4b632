package khatru

// sparecycles patch: tests of Relay.MaxRequestSize.

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/fasthttp/websocket"
	"github.com/nbd-wtf/go-nostr"
)

func TestIsEventMessage(t *testing.T) {
	for msg, want := range map[string]bool{
		`["EVENT",{}]`:        true,
		" [ \n\"EVENT\" ,{}]": true,
		`["REQ","s",{}]`:      false,
		`["EVENTS"]`:          false,
		`{"EVENT"}`:           false,
		``:                    false,
		`[`:                   false,
	} {
		if got := isEventMessage([]byte(msg)); got != want {
			t.Errorf("isEventMessage(%q) = %v, want %v", msg, got, want)
		}
	}
}

// A REQ, COUNT or anything else but an EVENT over MaxRequestSize is refused unparsed, a REQ or
// COUNT with CLOSED for its id; an EVENT of the same size is handled as usual.
func TestMaxRequestSize(t *testing.T) {
	rl := NewRelay()
	rl.MaxRequestSize = 2000
	url := serve(t, rl)
	c := dial(t, url, 0)
	ids := make([]string, 100)
	for i := range ids {
		ids[i] = strings.Repeat("a", 64)
	}
	send(t, c, "REQ", "big", nostr.Filter{IDs: ids})
	if msg := next(t, c); label(msg) != "CLOSED" || string(msg[1]) != `"big"` || !strings.Contains(string(msg[2]), "more than the 2000 allowed") {
		t.Fatalf("big REQ: %s", msg)
	}
	send(t, c, "COUNT", "c", nostr.Filter{IDs: ids})
	if msg := next(t, c); label(msg) != "CLOSED" || string(msg[1]) != `"c"` {
		t.Fatalf("big COUNT: %s", msg)
	}
	send(t, c, "CLOSE", strings.Repeat("x", 3000))
	if msg := next(t, c); label(msg) != "NOTICE" || !strings.Contains(string(msg[1]), "invalid: a message of") {
		t.Fatalf("big CLOSE: %s", msg)
	}
	send(t, c, "EVENT", signed(t, 1, strings.Repeat("e", 3000)))
	if msg := next(t, c); label(msg) != "OK" || string(msg[2]) != "true" {
		t.Fatalf("big EVENT: %s", msg)
	}
	send(t, c, "REQ", "small", nostr.Filter{IDs: ids[:5]})
	if msg := next(t, c); label(msg) != "EOSE" {
		t.Fatalf("small REQ: %s", msg)
	}
	// the fourth oversized message is answered, and then the connection is closed
	send(t, c, "REQ", "big", nostr.Filter{IDs: ids})
	if msg := next(t, c); label(msg) != "CLOSED" {
		t.Fatalf("fourth big REQ: %s", msg)
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, _, err := c.ReadMessage(); !websocket.IsCloseError(err, websocket.ClosePolicyViolation) {
		t.Fatalf("after the fourth oversized message: %v, want the connection closed (policy violation)", err)
	}
}

// readMessage around the limit: exactly the limit is read whole, one byte more is refused with
// its start and whole size kept, and an EVENT of any size is read whole.
func TestReadMessageLimit(t *testing.T) {
	type result struct {
		msg      []byte
		size     int
		tooLarge bool
	}
	results := make(chan result, 1)
	up := websocket.Upgrader{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		for {
			_, msg, size, tooLarge, err := readMessage(c, 200)
			if err != nil {
				return
			}
			results <- result{msg, size, tooLarge}
		}
	}))
	defer srv.Close()
	c := dial(t, "ws"+strings.TrimPrefix(srv.URL, "http"), 0)
	req := func(n int) string { // a REQ of exactly n bytes
		s := `["REQ","s",{"search":"`
		return s + strings.Repeat("x", n-len(s)-3) + `"}]`
	}
	event := func(n int) string { // an EVENT of exactly n bytes
		s := `["EVENT",{"content":"`
		return s + strings.Repeat("e", n-len(s)-3) + `"}]`
	}
	tests := []struct {
		msg      string
		tooLarge bool
	}{
		{`["CLOSE","s"]`, false},
		{req(200), false},
		{req(201), true},
		{req(5000), true},
		// EVENTs at any size, around the first buffer's 1 KiB and its growth
		{event(40), false},
		{event(64), false},
		{event(1023), false},
		{event(1024), false},
		{event(1025), false},
		{event(2049), false},
		{event(70000), false},
		{strings.Repeat(" ", 300), true},
	}
	for _, tc := range tests {
		c.SetWriteDeadline(time.Now().Add(5 * time.Second))
		if err := c.WriteMessage(websocket.TextMessage, []byte(tc.msg)); err != nil {
			t.Fatal(err)
		}
		r := <-results
		switch {
		case r.tooLarge != tc.tooLarge || r.size != len(tc.msg):
			t.Errorf("%.20s… (%d bytes): tooLarge %v size %d", tc.msg, len(tc.msg), r.tooLarge, r.size)
		case !tc.tooLarge && string(r.msg) != tc.msg:
			t.Errorf("%.20s… read back as %.20s…", tc.msg, r.msg)
		case tc.tooLarge && (!strings.HasPrefix(tc.msg, string(r.msg)) || len(r.msg) == 0 || len(r.msg) > 1024):
			t.Errorf("%.20s…: kept %d bytes of its start", tc.msg, len(r.msg))
		}
	}
}
