package worker

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nbd-wtf/go-nostr"

	"github.com/sparecycles/sparecycles/internal/testrelay"
)

func TestHandbackSaw(t *testing.T) {
	const at = nostr.Timestamp(1_000_000)
	job, other := strings.Repeat("a", 64), strings.Repeat("b", 64)
	holder, third := strings.Repeat("1", 64), strings.Repeat("2", 64)
	fb := func(id, by, status string, created nostr.Timestamp) *nostr.Event {
		return &nostr.Event{Kind: 7000, PubKey: by, CreatedAt: created, Tags: nostr.Tags{{"status", status, "why"}, {"e", id}}}
	}
	tests := []struct {
		name string
		evt  *nostr.Event
		back bool
	}{
		{"the holder's error feedback", fb(job, holder, "error", at), true},
		{"the holder's error, a little before the refusal (its clock)", fb(job, holder, "error", at-2), true},
		{"an older error of the holder's", fb(job, holder, "error", at-3), false},
		{"someone else's error feedback", fb(job, third, "error", at), false},
		{"the holder renewing its claim", fb(job, holder, "processing", at+10), false},
		{"the holder's quote", fb(job, holder, "payment-required", at), false},
		{"another job", fb(other, holder, "error", at), false},
		{"not feedback", &nostr.Event{Kind: 1, PubKey: holder, CreatedAt: at, Tags: nostr.Tags{{"status", "error"}, {"e", job}}}, false},
		{"malformed feedback", &nostr.Event{Kind: 7000, PubKey: holder, CreatedAt: at, Tags: nostr.Tags{{"status", "error"}, {"e", "nothex"}}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHandbacks()
			hb := h.watch(job, holder, at)
			if hb == nil {
				t.Fatal("not watched")
			}
			h.saw(tt.evt)
			select {
			case <-hb.back:
				if !tt.back {
					t.Fatal("handed back")
				}
				if _, ok := h.filter(); ok {
					t.Fatal("a job handed back is still followed")
				}
			default:
				if tt.back {
					t.Fatal("not handed back")
				}
			}
			h.saw(tt.evt) // seen twice (two subscriptions): no second close
		})
	}
}

func TestHandbackWatchBounds(t *testing.T) {
	const at = nostr.Timestamp(1_000_000)
	holder := strings.Repeat("1", 64)
	id := func(i int) string { return fmt.Sprintf("%064x", i) }
	h := newHandbacks()
	if h.watch(id(0), "", at) != nil {
		t.Fatal("watched a job whose holder is unknown")
	}
	if _, ok := h.filter(); ok {
		t.Fatal("a filter with nothing to follow")
	}
	first := h.watch(id(0), holder, at)
	if first == nil || h.watch(id(0), holder, at) != nil {
		t.Fatal("a job is watched once at a time")
	}
	for i := 1; i < maxHandbacks; i++ {
		if h.watch(id(i), holder, at+nostr.Timestamp(i)) == nil {
			t.Fatalf("job %d not watched", i)
		}
	}
	if h.watch(id(maxHandbacks), holder, at) != nil {
		t.Fatalf("watched more than %d jobs", maxHandbacks)
	}
	f, ok := h.filter()
	if !ok || len(f.Tags["e"]) != maxHandbacks || !slices.IsSorted(f.Tags["e"]) || f.Since == nil || *f.Since != at-2 || !slices.Equal(f.Kinds, []int{7000}) {
		t.Fatalf("filter %v", f)
	}
	// a retry's watch of the same job outlives the end of the first one's
	h.forget(id(0), first)
	again := h.watch(id(0), holder, at+100)
	h.forget(id(0), first)
	if f, _ := h.filter(); !slices.Contains(f.Tags["e"], id(0)) {
		t.Fatal("ending an old watch ended the retry's")
	}
	h.forget(id(0), again)
	if f, _ := h.filter(); slices.Contains(f.Tags["e"], id(0)) {
		t.Fatal("a forgotten job is still followed")
	}
}

// A link's watch follows its jobs on a real relay: jobs watched one right after the other (the
// second renews the subscription, after minRenew) each come back on their holder's error
// feedback, whether it was published before the renewal or after.
func TestHandbackFollow(t *testing.T) {
	url := testrelay.Start(t)
	conn := testrelay.Dial(t, url)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	h := newHandbacks()
	followed := make(chan struct{})
	go func() { defer close(followed); h.follow(ctx, conn, func(err error) { t.Logf("watch: %v", err) }) }()
	defer func() { cancel(); <-followed }()

	holder := nostr.GeneratePrivateKey()
	holderPK, _ := nostr.GetPublicKey(holder)
	handBack := func(job string) {
		t.Helper()
		evt := nostr.Event{Kind: 7000, CreatedAt: nostr.Now(), Tags: nostr.Tags{{"status", "error", "paused by owner"}, {"e", job}}}
		if err := evt.Sign(holder); err != nil {
			t.Fatal(err)
		}
		pctx, pcancel := context.WithTimeout(ctx, 10*time.Second)
		defer pcancel()
		if ok, err := conn.Publish(pctx, evt); err != nil || !ok.Accepted {
			t.Fatalf("publish: %+v %v", ok, err)
		}
	}
	awaitBack := func(name string, hb *handback) {
		t.Helper()
		select {
		case <-hb.back:
		case <-time.After(30 * time.Second):
			t.Fatalf("job %s was not handed back", name)
		}
	}
	a, b, c := strings.Repeat("a", 64), strings.Repeat("b", 64), strings.Repeat("c", 64)
	hbA := h.watch(a, holderPK, nostr.Now())
	hbB := h.watch(b, holderPK, nostr.Now())
	handBack(b) // perhaps before the subscription that has b: its since reads it back
	awaitBack("b", hbB)
	hbC := h.watch(c, holderPK, nostr.Now())
	handBack(a)
	awaitBack("a", hbA)
	handBack(c)
	awaitBack("c", hbC)
	if _, ok := h.filter(); ok {
		t.Fatal("jobs handed back are still watched")
	}
}
