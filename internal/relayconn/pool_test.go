package relayconn_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nbd-wtf/go-nostr"

	"github.com/sparecycles/sparecycles/internal/relayconn"
	"github.com/sparecycles/sparecycles/internal/testrelay"
)

func TestPool(t *testing.T) {
	a, b := testrelay.Start(t), testrelay.Start(t)
	down := "ws://127.0.0.1:1" // nothing listens there
	p := relayconn.NewPool([]string{a, b, down})
	defer p.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	sk := nostr.GeneratePrivateKey()
	pk, _ := nostr.GetPublicKey(sk)

	events, err := p.Subscribe(ctx, nostr.Filter{Authors: []string{pk}})
	if err != nil {
		t.Fatal(err)
	}
	evt := signed(t, sk, "to both")
	if err := p.Publish(ctx, evt); err != nil {
		t.Fatalf("publish with one relay down: %v", err)
	}
	select {
	case got := <-events:
		if got.ID != evt.ID {
			t.Fatalf("got %s", got.ID)
		}
	case <-ctx.Done():
		t.Fatal("event not delivered")
	}
	// both relays have it, but it is delivered once
	for _, u := range []string{a, b} {
		if evs := testrelay.Query(t, testrelay.Dial(t, u), nostr.Filter{IDs: []string{evt.ID}}); len(evs) != 1 {
			t.Fatalf("%s has %d copies", u, len(evs))
		}
	}
	select {
	case dup := <-events:
		t.Fatalf("event delivered twice: %s", dup.ID)
	case <-time.After(200 * time.Millisecond): // bounded look for a duplicate that must not come
	}

	none := relayconn.NewPool([]string{down})
	defer none.Close()
	if err := none.Publish(ctx, signed(t, sk, "x")); !errors.Is(err, relayconn.ErrNoRelay) {
		t.Fatalf("publish with every relay down: %v", err)
	}
	if _, err := none.Subscribe(ctx, nostr.Filter{}); !errors.Is(err, relayconn.ErrNoRelay) {
		t.Fatalf("subscribe with every relay down: %v", err)
	}
}

// A REQ that matches more stored events than the channels between the connection and the
// caller hold: Subscribe must still see EOSE and return (it used to wait for the caller,
// who waited for it), and every event comes through once, in the relay's order.
func TestPoolSubscribeManyStored(t *testing.T) {
	url := testrelay.Start(t)
	p := relayconn.NewPool([]string{url})
	defer p.Close()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	sk := nostr.GeneratePrivateKey()
	pk, _ := nostr.GetPublicKey(sk)
	const stored = 300
	for i := range stored {
		if err := p.Publish(ctx, signed(t, sk, fmt.Sprint("stored ", i))); err != nil {
			t.Fatal(err)
		}
	}
	want := testrelay.Query(t, testrelay.Dial(t, url), nostr.Filter{Authors: []string{pk}})
	if len(want) != stored {
		t.Fatalf("the relay returns %d of %d stored events", len(want), stored)
	}

	events, err := p.Subscribe(ctx, nostr.Filter{Authors: []string{pk}})
	if err != nil {
		t.Fatal(err)
	}
	live := signed(t, sk, "live")
	if err := p.Publish(ctx, live); err != nil {
		t.Fatal(err)
	}
	for i, w := range append(want, &live) {
		select {
		case got := <-events:
			if got.ID != w.ID {
				t.Fatalf("event %d: got %q, want %q", i, got.Content, w.Content)
			}
		case <-ctx.Done():
			t.Fatalf("only %d of %d events delivered", i, stored+1)
		}
	}
}
