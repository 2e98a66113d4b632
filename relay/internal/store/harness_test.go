package store

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/nbd-wtf/go-nostr"
)

// openTest opens a store in a fresh folder, closed when the test ends.
func openTest(t testing.TB, opts Options) *Store {
	t.Helper()
	if opts.Path == "" {
		opts.Path = t.TempDir()
	}
	if opts.MapSize == 0 {
		opts.MapSize = 1 << 30
	}
	s, err := Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	})
	return s
}

// ids lists the ids of events, for failure messages and comparisons.
func ids(evts []*nostr.Event) []string {
	out := make([]string, len(evts))
	for i, e := range evts {
		out[i] = e.ID
	}
	return out
}

// requireSame fails unless got and want hold the same events in the same order.
func requireSame(t testing.TB, got, want []*nostr.Event, what string) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: got %d events, want %d\ngot  %v\nwant %v", what, len(got), len(want), ids(got), ids(want))
	}
	for i := range got {
		if !sameEvent(got[i], want[i]) {
			t.Fatalf("%s: event %d is %v, want %v", what, i, got[i], want[i])
		}
	}
}

// queryAll runs a query to completion and returns what it emitted.
func queryAll(t testing.TB, s *Store, f nostr.Filter, lim Limits) []*nostr.Event {
	t.Helper()
	var out []*nostr.Event
	err := s.Query(t.Context(), f, lim, func(evts []*nostr.Event) error {
		out = append(out, evts...)
		return nil
	})
	if err != nil {
		t.Fatalf("query %v: %v", f, err)
	}
	return out
}

// bruteForce is what a query must return: the stored events (in the order they were stored)
// that match f, newest first (created_at, then store order), cut at limit.
func bruteForce(stored []*nostr.Event, f nostr.Filter, limit int) []*nostr.Event {
	var out []*nostr.Event
	for i := len(stored) - 1; i >= 0; i-- {
		if f.Matches(stored[i]) {
			out = append(out, stored[i])
		}
	}
	slices.SortStableFunc(out, func(a, b *nostr.Event) int { return int(b.CreatedAt - a.CreatedAt) })
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out
}

// saveAll saves evts in order, failing the test on any error.
func saveAll(t testing.TB, s *Store, evts ...*nostr.Event) {
	t.Helper()
	for _, e := range evts {
		if err := s.Save(e); err != nil {
			t.Fatalf("save %s: %v", e.ID, err)
		}
	}
}

// world is a random set of events drawn from small pools, so filters built from the same
// pools match some of them.
type world struct {
	rnd     *rand.Rand
	authors []string
	kinds   []int
	letters []string
	values  []string
}

func newWorld(seed uint64) *world {
	w := &world{
		rnd:     rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		kinds:   []int{0, 1, 3, 7, 1984, 5000, 6000, 7000, 30023},
		letters: []string{"e", "p", "t", "d", "A", "expiration", "#e"},
	}
	for i := range 6 {
		w.authors = append(w.authors, hexOf(fmt.Sprint("author", i)))
	}
	for i := range 8 {
		w.values = append(w.values, fmt.Sprint("v", i))
	}
	w.values = append(w.values, "", hexOf("long")+hexOf("value"))
	return w
}

func (w *world) pick(xs []string) string { return xs[w.rnd.IntN(len(xs))] }

func (w *world) event(i int) *nostr.Event {
	var tags []nostr.Tag
	for range w.rnd.IntN(4) {
		switch w.rnd.IntN(6) {
		case 0:
			tags = append(tags, nostr.Tag{w.pick(w.letters)}) // no value: not indexed
		case 1:
			tags = append(tags, nostr.Tag{})
		default:
			tags = append(tags, nostr.Tag{w.pick(w.letters), w.pick(w.values), "extra"})
		}
	}
	// few distinct timestamps, some negative, so ties are common
	ts := nostr.Timestamp(w.rnd.IntN(20) - 3)
	return mkEvent(w.pick(w.authors), w.kinds[w.rnd.IntN(len(w.kinds))], ts, fmt.Sprint("content ", i, " ", w.rnd.Uint32()), tags...)
}

// filter builds a random filter over the world's pools (and over stored, for ids).
func (w *world) filter(stored []*nostr.Event) (nostr.Filter, int) {
	var f nostr.Filter
	r := w.rnd
	if r.IntN(6) == 0 {
		f.IDs = []string{}
		for range r.IntN(4) {
			if len(stored) > 0 && r.IntN(3) > 0 {
				f.IDs = append(f.IDs, stored[r.IntN(len(stored))].ID)
			} else {
				f.IDs = append(f.IDs, hexOf(fmt.Sprint(r.Uint64())))
			}
		}
		if r.IntN(5) == 0 {
			f.IDs = append(f.IDs, "NOT-HEX")
		}
	}
	if r.IntN(2) == 0 {
		f.Kinds = []int{}
		for range r.IntN(3) + 1 {
			f.Kinds = append(f.Kinds, w.kinds[r.IntN(len(w.kinds))])
		}
		if r.IntN(8) == 0 {
			f.Kinds = append(f.Kinds, -1)
		}
	}
	if r.IntN(2) == 0 {
		f.Authors = []string{}
		for range r.IntN(3) + 1 {
			f.Authors = append(f.Authors, w.pick(w.authors))
		}
	}
	if r.IntN(2) == 0 {
		f.Tags = nostr.TagMap{}
		for range r.IntN(2) + 1 {
			var vals []string
			switch r.IntN(8) {
			case 0: // nil: ignored by Matches
			case 1:
				vals = []string{} // matches nothing
			default:
				for range r.IntN(3) + 1 {
					vals = append(vals, w.pick(w.values))
				}
			}
			f.Tags[w.pick(w.letters)] = vals
		}
	}
	if r.IntN(3) == 0 {
		since := nostr.Timestamp(r.IntN(24) - 4)
		f.Since = &since
	}
	if r.IntN(3) == 0 {
		until := nostr.Timestamp(r.IntN(24) - 4)
		f.Until = &until
	}
	limit := 0
	if r.IntN(2) == 0 {
		limit = r.IntN(12) + 1
	}
	return f, limit
}
