package worker

import (
	"cmp"
	"fmt"
	"maps"
	"testing"
	"time"

	"github.com/nbd-wtf/go-nostr"

	"github.com/sparecycles/sparecycles/nips/lease"
)

func TestLiveLeases(t *testing.T) {
	const now = nostr.Timestamp(1_000_000)
	me, other, third := "me", "other", "third"
	fb := func(job, by, status string, at nostr.Timestamp, extra ...nostr.Tag) *nostr.Event {
		return &nostr.Event{Kind: 7000, PubKey: by, CreatedAt: at, Tags: append(nostr.Tags{{"status", status}, {"e", job}}, extra...)}
	}
	minute := lease.Tag(time.Minute)
	tests := []struct {
		name string
		fb   []*nostr.Event
		want map[string]nostr.Timestamp
		// who holds each live lease, when not other
		holders map[string]string
	}{
		{"none", nil, map[string]nostr.Timestamp{}, nil},
		{"live claim", []*nostr.Event{fb("a", other, "processing", now-10, minute)}, map[string]nostr.Timestamp{"a": now + 50}, nil},
		{"lapsed claim", []*nostr.Event{fb("a", other, "processing", now-60, minute)}, map[string]nostr.Timestamp{}, nil},
		{"my own claim", []*nostr.Event{fb("a", me, "processing", now, minute)}, map[string]nostr.Timestamp{}, nil},
		{"processing without a lease", []*nostr.Event{fb("a", other, "processing", now)}, map[string]nostr.Timestamp{}, nil},
		{"malformed lease", []*nostr.Event{fb("a", other, "processing", now, nostr.Tag{"lease", "-5"})}, map[string]nostr.Timestamp{}, nil},
		{"renewed", []*nostr.Event{fb("a", other, "processing", now-50, minute), fb("a", other, "processing", now-20, minute)}, map[string]nostr.Timestamp{"a": now + 40}, nil},
		{"released by error", []*nostr.Event{fb("a", other, "processing", now-10, minute), fb("a", other, "error", now-5)}, map[string]nostr.Timestamp{}, nil},
		{"error before a new claim", []*nostr.Event{fb("a", other, "error", now-20), fb("a", other, "processing", now-10, minute)}, map[string]nostr.Timestamp{"a": now + 50}, nil},
		{"someone else's error", []*nostr.Event{fb("a", other, "processing", now-10, minute), fb("a", third, "error", now-5)}, map[string]nostr.Timestamp{"a": now + 50}, nil},
		{"quotes are not leases", []*nostr.Event{fb("a", other, "payment-required", now)}, map[string]nostr.Timestamp{}, nil},
		{"no e tag", []*nostr.Event{{Kind: 7000, PubKey: other, CreatedAt: now, Tags: nostr.Tags{{"status", "processing"}, minute}}}, map[string]nostr.Timestamp{}, nil},
		{"other kinds", []*nostr.Event{{Kind: 1, PubKey: other, CreatedAt: now, Tags: nostr.Tags{{"status", "processing"}, {"e", "a"}, minute}}}, map[string]nostr.Timestamp{}, nil},
		{"two jobs", []*nostr.Event{fb("a", other, "processing", now, minute), fb("b", third, "processing", now-30, minute)}, map[string]nostr.Timestamp{"a": now + 60, "b": now + 30}, map[string]string{"b": third}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := liveLeases(tt.fb, me, now)
			ends := map[string]nostr.Timestamp{}
			for id, h := range got {
				ends[id] = h.Until
				if holder := tt.holders[id]; h.Holder != cmp.Or(holder, other) {
					t.Fatalf("job %s held by %q, want %q", id, h.Holder, cmp.Or(holder, other))
				}
			}
			if !maps.Equal(ends, tt.want) {
				t.Fatalf("liveLeases = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestLaterSet(t *testing.T) {
	var s laterSet
	if !s.add("a") || s.add("a") {
		t.Fatal("a job is added once")
	}
	s.remove("a")
	if !s.add("a") {
		t.Fatal("a removed job can be added again")
	}
	for i := 1; i < maxBacklog; i++ {
		if !s.add(fmt.Sprint(i)) {
			t.Fatalf("add #%d refused below the bound", i)
		}
	}
	if s.add("one too many") {
		t.Fatal("the set grew past maxBacklog")
	}
}
