package lmdb

// sparecycles patch: a query with the negentropy flag (limit 16M) allocated ~1 GB up front.

import (
	"context"
	"runtime"
	"testing"

	"github.com/fiatjaf/eventstore"
	"github.com/nbd-wtf/go-nostr"
)

// A query without a limit, as a relay makes at start-up to rebuild its state, allocates for
// the events it finds, not for the 16M limit: on an empty store and on a small one.
func TestUnlimitedQueryAllocatesForResults(t *testing.T) {
	db := openGroupCommit(t, t.TempDir())
	defer db.Close()
	ctx := eventstore.SetNegentropy(context.Background())
	count := func(f nostr.Filter) (n int, allocated uint64) {
		var m0, m1 runtime.MemStats
		runtime.ReadMemStats(&m0)
		ch, err := db.QueryEvents(ctx, f)
		if err != nil {
			t.Fatal(err)
		}
		for range ch {
			n++
		}
		runtime.ReadMemStats(&m1)
		return n, m1.TotalAlloc - m0.TotalAlloc
	}
	kinds := make([]int, 0, 2001)
	for k := 5000; k <= 7000; k++ {
		kinds = append(kinds, k)
	}
	for _, f := range []nostr.Filter{{Kinds: []int{5}}, {Kinds: kinds}} {
		if n, a := count(f); n != 0 || a > 64<<20 {
			t.Fatalf("empty store, %d kinds: %d events, %d MB allocated", len(f.Kinds), n, a>>20)
		}
	}
	for _, evt := range signedEvents(t, 50) {
		if err := db.SaveEvent(ctx, evt); err != nil {
			t.Fatal(err)
		}
	}
	if n, a := count(nostr.Filter{Kinds: []int{1}}); n != 50 || a > 64<<20 {
		t.Fatalf("50 events: got %d, %d MB allocated", n, a>>20)
	}
}
