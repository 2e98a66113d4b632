package worker

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nbd-wtf/go-nostr"

	"github.com/sparecycles/sparecycles/internal/relayconn"
	"github.com/sparecycles/sparecycles/internal/testrelay"
	"github.com/sparecycles/sparecycles/relay"
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
		evts []*nostr.Event // in the order the subscription brings them
		back bool
	}{
		{"the holder's error feedback", []*nostr.Event{fb(job, holder, "error", at)}, true},
		{"the holder's error, dated before the refusal (its clock is behind)", []*nostr.Event{fb(job, holder, "error", at-60)}, true},
		{"an error older than the clocks' skew", []*nostr.Event{fb(job, holder, "error", at-61)}, false},
		{"stored: a claim, then the older error it came after", []*nostr.Event{fb(job, holder, "processing", at-5), fb(job, holder, "error", at-10)}, false},
		{"stored: the error, then the older claim it ends", []*nostr.Event{fb(job, holder, "error", at-5), fb(job, holder, "processing", at-10)}, true},
		{"live: a renewal, then the error", []*nostr.Event{fb(job, holder, "processing", at+10), fb(job, holder, "error", at+10)}, true},
		{"someone else's error feedback", []*nostr.Event{fb(job, third, "error", at)}, false},
		{"someone else's claim does not hide the holder's error", []*nostr.Event{fb(job, third, "processing", at+20), fb(job, holder, "error", at)}, true},
		{"the holder renewing its claim", []*nostr.Event{fb(job, holder, "processing", at+10)}, false},
		{"the holder's quote", []*nostr.Event{fb(job, holder, "payment-required", at)}, false},
		{"another job", []*nostr.Event{fb(other, holder, "error", at)}, false},
		{"not feedback", []*nostr.Event{{Kind: 1, PubKey: holder, CreatedAt: at, Tags: nostr.Tags{{"status", "error"}, {"e", job}}}}, false},
		{"malformed feedback", []*nostr.Event{{Kind: 7000, PubKey: holder, CreatedAt: at, Tags: nostr.Tags{{"status", "error"}, {"e", "nothex"}}}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHandbacks()
			back, _ := h.watch(job, holder, at)
			if back == nil {
				t.Fatal("not watched")
			}
			for _, evt := range tt.evts {
				h.saw(evt)
			}
			select {
			case <-back:
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
			for _, evt := range tt.evts { // seen twice (two subscriptions): no second close
				h.saw(evt)
			}
		})
	}
}

func TestHandbackWatchBounds(t *testing.T) {
	const at = nostr.Timestamp(1_000_000)
	holder := strings.Repeat("1", 64)
	id := func(i int) string { return fmt.Sprintf("%064x", i) }
	h := newHandbacks()
	if back, _ := h.watch(id(0), "", at); back != nil {
		t.Fatal("watched a job whose holder is unknown")
	}
	if _, ok := h.filter(); ok {
		t.Fatal("a filter with nothing to follow")
	}
	first, stopFirst := h.watch(id(0), holder, at)
	if again, _ := h.watch(id(0), holder, at); first == nil || again != nil {
		t.Fatal("a job is watched once at a time")
	}
	for i := 1; i < maxHandbacks; i++ {
		if back, _ := h.watch(id(i), holder, at+nostr.Timestamp(i)); back == nil {
			t.Fatalf("job %d not watched", i)
		}
	}
	if back, _ := h.watch(id(maxHandbacks), holder, at); back != nil {
		t.Fatalf("watched more than %d jobs", maxHandbacks)
	}
	f, ok := h.filter()
	if !ok || len(f.Tags["e"]) != maxHandbacks || !slices.IsSorted(f.Tags["e"]) || f.Since == nil || *f.Since != at-handbackSkew || !slices.Equal(f.Kinds, []int{7000}) {
		t.Fatalf("filter %v", f)
	}
	// a retry's watch of the same job outlives the end of the first one's
	stopFirst()
	_, stopAgain := h.watch(id(0), holder, at+100)
	stopFirst()
	if f, _ := h.filter(); !slices.Contains(f.Tags["e"], id(0)) {
		t.Fatal("ending an old watch ended the retry's")
	}
	stopAgain()
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
	handBack := func(job string) { t.Helper(); publishHandBack(t, conn, holder, job) }
	awaitBack := func(name string, back <-chan struct{}) {
		t.Helper()
		select {
		case <-back:
		case <-time.After(30 * time.Second):
			t.Fatalf("job %s was not handed back", name)
		}
	}
	a, b, c := strings.Repeat("a", 64), strings.Repeat("b", 64), strings.Repeat("c", 64)
	hbA, _ := h.watch(a, holderPK, nostr.Now())
	hbB, _ := h.watch(b, holderPK, nostr.Now())
	handBack(b) // perhaps before the subscription that has b: its since reads it back
	awaitBack("b", hbB)
	hbC, _ := h.watch(c, holderPK, nostr.Now())
	handBack(a)
	awaitBack("a", hbA)
	handBack(c)
	awaitBack("c", hbC)
	if _, ok := h.filter(); ok {
		t.Fatal("jobs handed back are still watched")
	}
}

// A relay that ends the watch's subscription (here: one subscription per connection, taken) does
// not end the watch: it subscribes again renewAfterEnd later and still sees the hand-back.
func TestHandbackFollowAfterClosed(t *testing.T) {
	_, url := startLeaseRelayWith(t, func(c *relay.Config) { c.MaxSubscriptions = 1 })
	conn := testrelay.Dial(t, url)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	taken, err := conn.Subscribe(ctx, nostr.Filter{Kinds: []int{1}})
	if err != nil {
		t.Fatal(err)
	}
	select { // the relay has it before the watch asks
	case <-taken.EOSE:
	case <-taken.Done():
		t.Fatalf("the first subscription ended: %s", taken.Reason())
	case <-time.After(30 * time.Second):
		t.Fatal("no EOSE")
	}
	ended := make(chan error, 16)
	h := newHandbacks()
	followed := make(chan struct{})
	go func() {
		defer close(followed)
		h.follow(ctx, conn, func(err error) {
			select {
			case ended <- err:
			default:
			}
		})
	}()
	defer func() { cancel(); <-followed }()

	holder := nostr.GeneratePrivateKey()
	holderPK, _ := nostr.GetPublicKey(holder)
	job := strings.Repeat("d", 64)
	back, _ := h.watch(job, holderPK, nostr.Now())
	select {
	case err := <-ended:
		t.Logf("the relay ended the watch: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("the relay never ended the watch's subscription")
	}
	taken.Close()
	publishHandBack(t, conn, holder, job)
	select {
	case <-back:
	case <-time.After(renewAfterEnd + 30*time.Second):
		t.Fatal("the job was not handed back")
	}
}

// publishHandBack publishes the holder's error feedback for job on conn: it hands the job back.
func publishHandBack(t *testing.T, conn *relayconn.Conn, holder, job string) {
	t.Helper()
	evt := nostr.Event{Kind: 7000, CreatedAt: nostr.Now(), Tags: nostr.Tags{{"status", "error", "paused by owner"}, {"e", job}}}
	if err := evt.Sign(holder); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if ok, err := conn.Publish(ctx, evt); err != nil || !ok.Accepted {
		t.Fatalf("publish: %+v %v", ok, err)
	}
}
