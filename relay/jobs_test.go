package relay

import (
	"fmt"
	"testing"
	"time"

	"github.com/nbd-wtf/go-nostr"
)

// Finished jobs older than the retention leave the table; open and recent ones stay.
func TestJobTablePrunesFinishedJobs(t *testing.T) {
	clk := newClock()
	tab := NewJobTable(time.Minute, time.Minute, clk.Now)
	old := nostr.Timestamp(clk.Now().Add(-48 * time.Hour).Unix())
	id := func(i int) string { return fmt.Sprintf("%064x", i) }
	for i := 0; i < pruneEvery-1; i++ {
		req := &nostr.Event{ID: id(i), Kind: 5000, PubKey: id(1 << 20), CreatedAt: old}
		tab.apply(req)
		if i%2 == 0 { // half of them done
			tab.apply(&nostr.Event{ID: id(1<<21 + i), Kind: 6000, PubKey: id(1 << 22), CreatedAt: old, Tags: nostr.Tags{{"e", req.ID}}})
		}
	}
	tab.apply(&nostr.Event{ID: id(1 << 23), Kind: 5000, PubKey: id(1 << 20), CreatedAt: nostr.Timestamp(clk.Now().Unix())}) // triggers the prune
	c := tab.Counts()
	if c.ByState[JobDone] != 0 || c.ByState[JobOpen] != pruneEvery/2 {
		t.Fatalf("after pruning: %v, want no done jobs and %d open", c.ByState, pruneEvery/2)
	}
}
