package client

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/nbd-wtf/go-nostr"
	"github.com/rs/zerolog"

	"github.com/sparecycles/sparecycles/internal/testrelay"
	"github.com/sparecycles/sparecycles/nips/escrow"
	"github.com/sparecycles/sparecycles/nips/heartbeat"
)

// On a relay without /api/workers, live is what the heartbeats say: a recent ready or busy
// beat for the kind is live; a paused or offline one, or one for another kind, is not.
func TestLiveWorkersFromHeartbeats(t *testing.T) {
	relay := testrelay.Start(t)
	conn := testrelay.Dial(t, relay)
	beat := func(status string, kinds ...int) string {
		sk := nostr.GeneratePrivateKey()
		evt := heartbeat.Beat{Identifier: "w", Status: status, Queue: 1, Kinds: kinds}.Event()
		if err := evt.Sign(sk); err != nil {
			t.Fatal(err)
		}
		ok, err := conn.Publish(t.Context(), evt)
		if err != nil || !ok.Accepted {
			t.Fatalf("publish beat: %v %s", err, ok.Reason)
		}
		return evt.PubKey
	}
	ready, busy := beat(heartbeat.StatusReady, 5000), beat(heartbeat.StatusBusy, 5000, 5800)
	beat(heartbeat.StatusPaused, 5000)
	beat(heartbeat.StatusOffline, 5000)
	beat(heartbeat.StatusReady, 5800)

	c := &Client{cfg: Config{Relays: []string{relay}}, log: zerolog.Nop(), pubkey: "me"}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	got := c.liveWorkers(ctx, 5000)
	want := []string{ready, busy}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("live for 5000: %v, want %v", got, want)
	}
	ps, vouched := Presences(ctx, []string{relay}, zerolog.Nop())
	if vouched || ps[ready].Vouched || !ps[ready].Alive || ps[ready].Status != heartbeat.StatusReady || ps[ready].Queue == nil || *ps[ready].Queue != 1 {
		t.Fatalf("presence %+v (vouched %v): want alive and ready by its heartbeat, nothing vouched", ps[ready], vouched)
	}
}

// Between two quotes of the same kind (escrow or not), a live worker's beats a cheaper one's
// from a worker not live; escrow still comes first, and without liveness known, the price.
func TestBetterPrefersLive(t *testing.T) {
	live, gone := candidate{}, candidate{}
	live.Worker, live.AmountMsat = "live", 2000
	gone.Worker, gone.AmountMsat = "gone", 1000
	w := &watch{live: []string{"live"}, liveKnown: true}
	if !w.better(live, gone) || w.better(gone, live) {
		t.Fatal("a live worker's quote should beat a cheaper one from a worker not live")
	}
	cheapLive := live
	cheapLive.Worker, cheapLive.AmountMsat = "live", 500
	if !w.better(cheapLive, live) {
		t.Fatal("between live workers, the cheaper quote wins")
	}
	escrowGone := gone
	escrowGone.Escrow = &escrow.Quote{}
	if !w.better(escrowGone, live) {
		t.Fatal("an escrow quote still comes first")
	}
	unknown := &watch{}
	if !unknown.better(gone, live) {
		t.Fatal("without liveness known, the cheaper quote wins")
	}
}
