package worker

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/fiatjaf/khatru"
	"github.com/nbd-wtf/go-nostr"

	"github.com/sparecycles/sparecycles/internal/testrelay"
	"github.com/sparecycles/sparecycles/nips/heartbeat"
)

// A worker answers the relay's NIP-42 challenge as its own pubkey, beats on connect and every
// --heartbeat (ready, its kinds and provider), and its last beat on a clean stop says offline.
func TestHeartbeat(t *testing.T) {
	authed := make(chan string, 8)
	url := testrelay.StartWith(t, func(r *khatru.Relay) {
		r.OnConnect = append(r.OnConnect, khatru.RequestAuth)
		r.OnAuth = append(r.OnAuth, func(_ context.Context, pk string) {
			select {
			case authed <- pk:
			default:
			}
		})
	})
	cfg := testConfig(t, url)
	cfg.Heartbeat = time.Second
	w, err := New(cfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	c := testrelay.Dial(t, url)
	sctx, scancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer scancel()
	sub, err := c.Subscribe(sctx, nostr.Filter{Kinds: []int{heartbeat.Kind}, Authors: []string{w.PubKey()}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); w.Run(ctx) }()
	defer func() { cancel(); <-done }()

	select {
	case pk := <-authed:
		if pk != w.PubKey() {
			t.Fatalf("authenticated as %s, want the worker's %s", pk, w.PubKey())
		}
	case <-sctx.Done():
		t.Fatal("the worker never answered the AUTH challenge")
	}
	ids := map[string]bool{}
	var last nostr.Timestamp
	for len(ids) < 2 { // the beat on connect and at least one from the timer
		select {
		case evt := <-sub.Events:
			b, err := heartbeat.Parse(evt)
			if err != nil {
				t.Fatal(err)
			}
			if b.Status != heartbeat.StatusReady || !slices.Equal(b.Kinds, w.kinds()) || b.Provider != w.Provider() ||
				b.Queue != 0 || b.Identifier != announcementID || !evt.CheckID() {
				t.Fatalf("beat %+v: want ready, kinds %v, provider %s, queue 0", b, w.kinds(), w.Provider())
			}
			if evt.CreatedAt <= last {
				t.Fatalf("beat created_at %d after one at %d: want each later than the one before", evt.CreatedAt, last)
			}
			last = evt.CreatedAt
			ids[evt.ID] = true
		case <-sctx.Done():
			t.Fatalf("saw %d beats, want 2", len(ids))
		}
	}

	cancel()
	<-done
	for {
		select {
		case evt := <-sub.Events:
			if b, err := heartbeat.Parse(evt); err == nil && b.Status == heartbeat.StatusOffline {
				if b.Alive(time.Now(), 0) {
					t.Fatal("an offline beat counts as alive")
				}
				// it replaced the beats before it, even one from the same second
				stored := testrelay.Query(t, c, nostr.Filter{Kinds: []int{heartbeat.Kind}, Authors: []string{w.PubKey()}})
				if len(stored) != 1 || stored[0].ID != evt.ID {
					t.Fatalf("the relay holds %d beats (%v), want the offline one alone", len(stored), stored)
				}
				return
			}
		case <-sctx.Done():
			t.Fatal("no offline beat after a clean stop")
		}
	}
}

func TestBeatStatus(t *testing.T) {
	w := &Worker{cfg: Config{Parallel: 2}, models: []*model{{}}, spare: newSpareState(false)}
	if got := w.beatStatus(); got != heartbeat.StatusReady {
		t.Fatalf("idle: %q", got)
	}
	w.running.Store(1)
	if got := w.beatStatus(); got != heartbeat.StatusReady {
		t.Fatalf("one of two slots: %q", got)
	}
	w.running.Store(2)
	if got := w.beatStatus(); got != heartbeat.StatusBusy {
		t.Fatalf("every slot: %q", got)
	}
	w.spare = newSpareState(true) // an idle-mode worker starts paused until the owner is quiet
	if got := w.beatStatus(); got != heartbeat.StatusPaused {
		t.Fatalf("paused for the owner: %q", got)
	}
}
