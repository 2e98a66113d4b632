package khatru

// sparecycles patch 19: the authenticated pubkey is read while AUTH writes it.

import (
	"context"
	"encoding/json"
	"sync"
	"testing"

	"github.com/nbd-wtf/go-nostr"
)

// A connection's events are handled on their own goroutines, each reading GetAuthed, while the
// connection's AUTH is handled: with -race this reported a data race before patch 19. Events
// sent after AUTH's OK see the pubkey.
func TestAuthedWhileEventsArrive(t *testing.T) {
	rl := NewRelay()
	rl.OnConnect = append(rl.OnConnect, func(ctx context.Context) { RequestAuth(ctx) })
	var mu sync.Mutex
	seen := map[string]string{} // event content -> the authed pubkey its hook saw
	rl.RejectEvent = append(rl.RejectEvent, func(ctx context.Context, evt *nostr.Event) (bool, string) {
		who := GetAuthed(ctx)
		mu.Lock()
		seen[evt.Content] = who
		mu.Unlock()
		return true, "blocked: only looking"
	})
	url := serve(t, rl)
	c := dial(t, url, 0)
	msg := next(t, c)
	if label(msg) != "AUTH" {
		t.Fatalf("first message %s, want AUTH", label(msg))
	}
	var challenge string
	if err := jsonString(msg[1], &challenge); err != nil {
		t.Fatal(err)
	}
	sk := nostr.GeneratePrivateKey()
	pk, _ := nostr.GetPublicKey(sk)
	auth := nostr.Event{Kind: 22242, CreatedAt: nostr.Now(), Tags: nostr.Tags{{"relay", url}, {"challenge", challenge}}}
	if err := auth.Sign(sk); err != nil {
		t.Fatal(err)
	}
	const before = 50
	for i := range before {
		evt := signed(t, 1, "before "+string(rune('A'+i%26))+string(rune('a'+i/26)))
		send(t, c, "EVENT", evt)
	}
	send(t, c, "AUTH", auth)
	// every event and the AUTH are answered with an OK
	authOK := false
	for range before + 1 {
		msg := next(t, c)
		if label(msg) != "OK" {
			t.Fatalf("got %s, want OK", label(msg))
		}
		var id string
		jsonString(msg[1], &id)
		if id == auth.ID {
			if string(msg[2]) != "true" {
				t.Fatalf("AUTH refused: %s", msg[3])
			}
			authOK = true
		}
	}
	if !authOK {
		t.Fatal("no OK for AUTH")
	}
	after := signed(t, 1, "after")
	send(t, c, "EVENT", after)
	if msg := next(t, c); label(msg) != "OK" {
		t.Fatalf("got %s, want OK", label(msg))
	}
	mu.Lock()
	defer mu.Unlock()
	if seen["after"] != pk {
		t.Fatalf("an event after AUTH saw authed %q, want %s", seen["after"], pk)
	}
}

func jsonString(raw []byte, s *string) error { return json.Unmarshal(raw, s) }
