package relayconn_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nbd-wtf/go-nostr"

	"github.com/sparecycles/sparecycles/internal/relayconn"
	"github.com/sparecycles/sparecycles/internal/testrelay"
)

func signed(t *testing.T, sk string, content string) nostr.Event {
	t.Helper()
	evt := nostr.Event{Kind: 1, CreatedAt: nostr.Now(), Tags: nostr.Tags{}, Content: content}
	if err := evt.Sign(sk); err != nil {
		t.Fatal(err)
	}
	return evt
}

func dial(t *testing.T, url string) *relayconn.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	c, err := relayconn.Dial(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestPublishQuerySubscribe(t *testing.T) {
	url := testrelay.Start(t)
	c := dial(t, url)
	sk := nostr.GeneratePrivateKey()
	pk, _ := nostr.GetPublicKey(sk)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()

	live, err := c.Subscribe(ctx, nostr.Filter{Authors: []string{pk}})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-live.EOSE:
	case <-ctx.Done():
		t.Fatal("no EOSE")
	}

	evt := signed(t, sk, "hello")
	ok, err := c.Publish(ctx, evt)
	if err != nil || !ok.Accepted {
		t.Fatalf("publish: %+v %v", ok, err)
	}
	bad := signed(t, sk, "bad")
	bad.Sig = bad.Sig[:126] + "00"
	if ok, err := c.Publish(ctx, bad); err != nil || ok.Accepted || ok.Reason != "invalid: signature is invalid" {
		t.Fatalf("bad signature: %+v %v", ok, err)
	}

	select {
	case got := <-live.Events:
		if got.ID != evt.ID {
			t.Fatalf("live event %s, want %s", got.ID, evt.ID)
		}
	case <-ctx.Done():
		t.Fatal("live event never arrived")
	}

	got, err := dial(t, url).Query(ctx, nostr.Filter{IDs: []string{evt.ID}})
	if err != nil || len(got) != 1 || got[0].ID != evt.ID {
		t.Fatalf("query: %v %v", got, err)
	}

	live.Close()
	<-live.Done()
	if live.Reason() != "closed by us" {
		t.Fatalf("reason %q", live.Reason())
	}
}

// A connection that ends before the OK makes Publish fail instead of reporting success.
func TestPublishWithoutOK(t *testing.T) {
	url := testrelay.Start(t)
	c := dial(t, url)
	c.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if _, err := c.Publish(ctx, signed(t, nostr.GeneratePrivateKey(), "x")); !errors.Is(err, relayconn.ErrClosed) {
		t.Fatalf("publish on a closed connection: %v, want ErrClosed", err)
	}
	if _, err := c.Subscribe(ctx, nostr.Filter{}); !errors.Is(err, relayconn.ErrClosed) {
		t.Fatalf("subscribe on a closed connection: %v, want ErrClosed", err)
	}
	select {
	case <-c.Done():
	default:
		t.Fatal("Done not closed after Close")
	}
}

func TestAuthWithoutChallenge(t *testing.T) {
	c := dial(t, testrelay.Start(t))
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	if _, err := c.Auth(ctx, func(e *nostr.Event) error { return nil }); !errors.Is(err, relayconn.ErrNoAuth) {
		t.Fatalf("auth with no challenge: %v", err)
	}
}
