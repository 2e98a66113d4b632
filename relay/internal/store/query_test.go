package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/PowerDNS/lmdb-go/lmdb"
	"github.com/nbd-wtf/go-nostr"
)

// checkQuery compares Query and Count with brute force over stored for one filter.
func checkQuery(t testing.TB, s *Store, stored []*nostr.Event, f nostr.Filter, limit int) {
	t.Helper()
	f.Limit = 3 // ignored: Limits decide
	requireSame(t, queryAll(t, s, f, Limits{Limit: limit}), bruteForce(stored, f, limit), fmt.Sprintf("%v limit %d", f, limit))
	n, err := s.Count(context.Background(), f, Limits{})
	if want := len(bruteForce(stored, f, 0)); err != nil || n != int64(want) {
		t.Fatalf("count %v = %d, %v; want %d", f, n, err, want)
	}
}

// TestQueryMatchesBruteForce: for random events and random filters, Query returns exactly the
// matching events in order, across chunk boundaries, and Count agrees; also after deletions.
func TestQueryMatchesBruteForce(t *testing.T) {
	for seed := range uint64(12) {
		t.Run(fmt.Sprint("seed ", seed), func(t *testing.T) {
			w := newWorld(seed)
			s := openTest(t, Options{ChunkEvents: 1 + w.rnd.IntN(5), ChunkBytes: 300 + w.rnd.IntN(2000)})
			var stored []*nostr.Event
			for i := range 150 {
				stored = append(stored, w.event(i))
			}
			saveBatch(t, s, stored)
			for range 150 {
				f, limit := w.filter(stored)
				checkQuery(t, s, stored, f, limit)
			}
			for range 30 {
				i := w.rnd.IntN(len(stored))
				if err := s.Delete(stored[i].ID); err != nil {
					t.Fatal(err)
				}
				stored = append(stored[:i], stored[i+1:]...)
			}
			for range 100 {
				f, limit := w.filter(stored)
				checkQuery(t, s, stored, f, limit)
			}
		})
	}
}

// FuzzQuery checks random filters (drawn from the fuzzer's seed) against brute force over one
// set of stored events.
func FuzzQuery(f *testing.F) {
	w := newWorld(99)
	var stored []*nostr.Event
	for i := range 300 {
		stored = append(stored, w.event(i))
	}
	s := openTest(f, Options{ChunkEvents: 3, ChunkBytes: 700})
	saveBatch(f, s, stored)
	for i := range uint64(20) {
		f.Add(i)
	}
	f.Fuzz(func(t *testing.T, seed uint64) {
		fw := newWorld(seed) // same pools, its own randomness
		filter, limit := fw.filter(stored)
		checkQuery(t, s, stored, filter, limit)
	})
}

func TestQueryEdges(t *testing.T) {
	s := openTest(t, Options{ChunkEvents: 2})
	var stored []*nostr.Event
	for i := range 9 {
		stored = append(stored, mkEvent(pkA, 1, nostr.Timestamp(i), fmt.Sprint(i), nostr.Tag{"t", "x"}))
	}
	saveAll(t, s, stored...)
	tests := []struct {
		name  string
		f     nostr.Filter
		limit int
		want  int
	}{
		{"limit zero", nostr.Filter{LimitZero: true}, 0, 0},
		{"search", nostr.Filter{Search: "x"}, 0, 0},
		{"empty kinds", nostr.Filter{Kinds: []int{}}, 0, 0},
		{"empty ids", nostr.Filter{IDs: []string{}}, 0, 0},
		{"empty authors", nostr.Filter{Authors: []string{}}, 0, 0},
		{"empty tag values", nostr.Filter{Tags: nostr.TagMap{"t": {}}}, 0, 0},
		{"nil tag values", nostr.Filter{Tags: nostr.TagMap{"t": nil}}, 0, 9},
		{"since after until", nostr.Filter{Since: ts(5), Until: ts(4)}, 0, 0},
		{"since equals until", nostr.Filter{Since: ts(4), Until: ts(4)}, 0, 1},
		{"malformed author", nostr.Filter{Authors: []string{"xyz"}}, 0, 0},
		{"negative kind", nostr.Filter{Kinds: []int{-1}}, 0, 0},
		{"limit at chunk edge", nostr.Filter{}, 4, 4},
		{"limit past the end", nostr.Filter{}, 100, 9},
		{"negative limit is none", nostr.Filter{}, -1, 9},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := queryAll(t, s, tc.f, Limits{Limit: tc.limit})
			if len(got) != tc.want {
				t.Fatalf("got %d events, want %d", len(got), tc.want)
			}
			if tc.f.LimitZero || tc.f.Search != "" { // Matches ignores both
				return
			}
			requireSame(t, got, bruteForce(stored, tc.f, tc.limit), "brute force")
		})
	}
}

func TestQueryStopsOnEmitErrorAndContext(t *testing.T) {
	s := openTest(t, Options{ChunkEvents: 2})
	for i := range 10 {
		saveAll(t, s, mkEvent(pkA, 1, nostr.Timestamp(i), fmt.Sprint(i)))
	}
	stop := errors.New("stop")
	calls := 0
	err := s.Query(t.Context(), nostr.Filter{}, Limits{}, func([]*nostr.Event) error { calls++; return stop })
	if !errors.Is(err, stop) || calls != 1 {
		t.Fatalf("err = %v after %d calls, want stop after 1", err, calls)
	}
	ctx, cancel := context.WithCancel(t.Context())
	calls = 0
	err = s.Query(ctx, nostr.Filter{}, Limits{}, func([]*nostr.Event) error { calls++; cancel(); return nil })
	if !errors.Is(err, context.Canceled) || calls != 1 {
		t.Fatalf("err = %v after %d calls, want context.Canceled after 1", err, calls)
	}
}

// TestEmitHoldsNoTransaction: while emit runs, no reader slot is taken, in the semaphore or
// in LMDB's reader table.
func TestEmitHoldsNoTransaction(t *testing.T) {
	s := openTest(t, Options{ChunkEvents: 1})
	for i := range 5 {
		saveAll(t, s, mkEvent(pkA, 1, nostr.Timestamp(i), fmt.Sprint(i)))
	}
	chunks := 0
	err := s.Query(t.Context(), nostr.Filter{}, Limits{}, func([]*nostr.Event) error {
		chunks++
		if n := len(s.readers); n != 0 {
			return fmt.Errorf("%d reader tokens taken during emit", n)
		}
		var lines []string
		if err := s.env.ReaderList(func(l string) error { lines = append(lines, l); return nil }); err != nil {
			return err
		}
		if !strings.Contains(strings.Join(lines, ""), "no active readers") {
			return fmt.Errorf("LMDB readers during emit: %q", lines)
		}
		return nil
	})
	if err != nil || chunks != 5 {
		t.Fatalf("err = %v after %d chunks", err, chunks)
	}
}

// within runs fn and fails the test if it has not returned when ctx is done.
func within(t *testing.T, ctx context.Context, what string, fn func() error) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- fn() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	case <-ctx.Done():
		t.Fatalf("%s: still blocked: %v", what, ctx.Err())
	}
}

// TestBlockedQueriesDoNotStarve: 50 queries whose consumers never read (emit blocks) hold no
// reader slots, so with only 8 slots saves and other queries still work.
func TestBlockedQueriesDoNotStarve(t *testing.T) {
	s := openTest(t, Options{MaxReaders: 8, ChunkEvents: 1})
	for i := range 3 {
		saveAll(t, s, mkEvent(pkA, 1, nostr.Timestamp(i), fmt.Sprint(i)))
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()

	const blocked = 50
	release := make(chan struct{})
	started := make(chan struct{}, blocked)
	errs := make(chan error, blocked)
	var wg sync.WaitGroup
	for range blocked {
		wg.Add(1)
		go func() {
			defer wg.Done()
			first := true
			errs <- s.Query(ctx, nostr.Filter{}, Limits{}, func([]*nostr.Event) error {
				if first {
					first = false
					started <- struct{}{}
				}
				<-release
				return nil
			})
		}()
	}
	for range blocked {
		select {
		case <-started:
		case <-ctx.Done():
			t.Fatal("blocked queries did not all start")
		}
	}

	evt := mkEvent(pkB, 1, 100, "while blocked")
	within(t, ctx, "save", func() error { return s.Save(evt) })
	within(t, ctx, "query", func() error {
		var got []*nostr.Event
		err := s.Query(ctx, nostr.Filter{}, Limits{}, func(e []*nostr.Event) error { got = append(got, e...); return nil })
		if err == nil && (len(got) != 4 || got[0].ID != evt.ID) {
			err = fmt.Errorf("got %v", ids(got))
		}
		return err
	})
	within(t, ctx, "count", func() error {
		n, err := s.Count(ctx, nostr.Filter{}, Limits{})
		if err == nil && n != 4 {
			err = fmt.Errorf("count %d", n)
		}
		return err
	})

	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
}

// TestCloseWithBlockedEmit: Close does not wait for a query whose emit is blocked; that query
// gets ErrClosed at its next chunk.
func TestCloseWithBlockedEmit(t *testing.T) {
	s := openTest(t, Options{ChunkEvents: 1})
	for i := range 3 {
		saveAll(t, s, mkEvent(pkA, 1, nostr.Timestamp(i), fmt.Sprint(i)))
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	inEmit, release := make(chan struct{}), make(chan struct{})
	queryErr := make(chan error, 1)
	go func() {
		first := true
		queryErr <- s.Query(ctx, nostr.Filter{}, Limits{}, func([]*nostr.Event) error {
			if first {
				first = false
				close(inEmit)
				<-release
			}
			return nil
		})
	}()
	select {
	case <-inEmit:
	case <-ctx.Done():
		t.Fatal("query never emitted")
	}
	within(t, ctx, "close", s.Close)
	close(release)
	select {
	case err := <-queryErr:
		if !errors.Is(err, ErrClosed) {
			t.Fatalf("query after close: %v, want ErrClosed", err)
		}
	case <-ctx.Done():
		t.Fatal("query did not return")
	}

	evt := mkEvent(pkA, 1, 1, "late")
	if _, err := s.Enqueue(evt); !errors.Is(err, ErrClosed) {
		t.Fatalf("enqueue after close: %v", err)
	}
	if err := s.Delete(evt.ID); !errors.Is(err, ErrClosed) {
		t.Fatalf("delete after close: %v", err)
	}
	if _, err := s.Get(evt.ID); !errors.Is(err, ErrClosed) {
		t.Fatalf("get after close: %v", err)
	}
	if _, err := s.Count(ctx, nostr.Filter{}, Limits{}); !errors.Is(err, ErrClosed) {
		t.Fatalf("count after close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
}

// TestCount: Count terminates and is exact over more entries than one transaction visits,
// and stops with ErrScanBudget when its budget is too small.
func TestCount(t *testing.T) {
	s := openTest(t, Options{})
	var stored []*nostr.Event
	for i := range 2*txnScan + 10 {
		tag := nostr.Tag{"t", fmt.Sprint(i % 3)}
		stored = append(stored, mkEvent(hexOf(fmt.Sprint(i%7)), i%5, nostr.Timestamp(i%100), fmt.Sprint(i), tag))
	}
	saveBatch(t, s, stored)
	tests := []struct {
		name    string
		f       nostr.Filter
		scan    int
		wantErr error
	}{
		{"everything", nostr.Filter{}, 0, nil},
		{"everything needs no scan", nostr.Filter{}, 1, nil},
		{"kinds (exact plan)", nostr.Filter{Kinds: []int{1, 2}}, 0, nil},
		{"author and kind (exact plan)", nostr.Filter{Authors: []string{hexOf("3")}, Kinds: []int{4}}, 0, nil},
		{"tag (checked)", nostr.Filter{Tags: nostr.TagMap{"t": {"1"}}}, 0, nil},
		{"kind and tag (checked)", nostr.Filter{Kinds: []int{3}, Tags: nostr.TagMap{"t": {"2"}}}, 0, nil},
		{"since", nostr.Filter{Since: ts(90)}, 0, nil},
		{"budget enough", nostr.Filter{Kinds: []int{1}}, len(stored), nil},
		{"budget short", nostr.Filter{Since: ts(1)}, 100, ErrScanBudget},
		{"budget short, checked", nostr.Filter{Tags: nostr.TagMap{"t": {"1"}}, Kinds: []int{1}}, 10, ErrScanBudget},
		{"ids budget short", nostr.Filter{IDs: []string{stored[0].ID, stored[1].ID}}, 1, ErrScanBudget},
		{"ids", nostr.Filter{IDs: []string{stored[0].ID, stored[1].ID, hexOf("none")}}, 0, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			n, err := s.Count(t.Context(), tc.f, Limits{Scan: tc.scan})
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			want := int64(len(bruteForce(stored, tc.f, 0)))
			if err == nil && n != want {
				t.Fatalf("count = %d, want %d", n, want)
			}
			if err != nil && n > want {
				t.Fatalf("count = %d with %v, more than %d", n, err, want)
			}
		})
	}
}

// TestQueryScanBudget: a query out of budget returns what it found, then ErrScanBudget.
func TestQueryScanBudget(t *testing.T) {
	s := openTest(t, Options{ChunkEvents: 4})
	var stored []*nostr.Event
	for i := range 30 {
		stored = append(stored, mkEvent(pkA, i%2, nostr.Timestamp(i), fmt.Sprint(i)))
	}
	saveAll(t, s, stored...)
	var got []*nostr.Event
	err := s.Query(t.Context(), nostr.Filter{Kinds: []int{1}}, Limits{Scan: 10}, func(e []*nostr.Event) error {
		got = append(got, e...)
		return nil
	})
	if !errors.Is(err, ErrScanBudget) {
		t.Fatalf("err = %v", err)
	}
	requireSame(t, got, bruteForce(stored, nostr.Filter{Kinds: []int{1}}, 10), "within budget")

	// a budget that is spent exactly as the limit is reached is not exceeded
	got = queryAll(t, s, nostr.Filter{Kinds: []int{1}}, Limits{Limit: 10, Scan: 10})
	requireSame(t, got, bruteForce(stored, nostr.Filter{Kinds: []int{1}}, 10), "limit = budget")
	// nor one spent as the ranges end
	got = queryAll(t, s, nostr.Filter{Kinds: []int{1}}, Limits{Scan: 15})
	requireSame(t, got, bruteForce(stored, nostr.Filter{Kinds: []int{1}}, 0), "budget = entries")
}

// TestReadersWaitForSlot: with every reader slot taken, a read waits for one (or for its
// context) instead of failing with MDB_READERS_FULL.
func TestReadersWaitForSlot(t *testing.T) {
	s := openTest(t, Options{MaxReaders: 1})
	evt := mkEvent(pkA, 1, 1, "x")
	saveAll(t, s, evt)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()

	holding, release := make(chan struct{}), make(chan struct{})
	held := make(chan error, 1)
	go func() {
		held <- s.view(ctx, func(*lmdb.Txn) error { close(holding); <-release; return nil })
	}()
	select {
	case <-holding:
	case <-ctx.Done():
		t.Fatal("could not take the only slot")
	}

	got := make(chan error, 1)
	go func() {
		e, err := s.Get(evt.ID)
		if err == nil && e == nil {
			err = errors.New("not found")
		}
		got <- err
	}()
	canceled, stop := context.WithCancel(ctx)
	stop()
	if _, err := s.Count(canceled, nostr.Filter{Kinds: []int{1}}, Limits{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("count with a canceled context: %v", err)
	}
	select {
	case err := <-got:
		t.Fatalf("get returned while the only slot was taken: %v", err)
	default:
	}
	close(release)
	for _, ch := range []chan error{held, got} {
		select {
		case err := <-ch:
			if err != nil {
				t.Fatal(err)
			}
		case <-ctx.Done():
			t.Fatal("still waiting after the slot was freed")
		}
	}
}

// A query's read transactions take a slot of Limits.Gate: with the gate full they wait (until
// ctx ends), and with a slot free they run; the gate is empty again afterwards.
func TestQueryGate(t *testing.T) {
	s := openTest(t, Options{})
	evt := mkEvent(hexOf("gate author"), 1, 100, "gated")
	if err := s.Save(evt); err != nil {
		t.Fatal(err)
	}
	gate := make(chan struct{}, 1)
	gate <- struct{}{} // someone else holds the only slot
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	err := s.Query(ctx, nostr.Filter{}, Limits{Gate: gate}, func([]*nostr.Event) error { return nil })
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("query with the gate full: %v, want the context's deadline", err)
	}
	if _, err := s.Count(ctx, nostr.Filter{Kinds: []int{1}}, Limits{Gate: gate}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("count with the gate full: %v, want the context's deadline", err)
	}
	<-gate
	var got []*nostr.Event
	if err := s.Query(t.Context(), nostr.Filter{}, Limits{Gate: gate}, func(evs []*nostr.Event) error {
		if len(gate) != 0 {
			t.Error("the gate is held while emit runs")
		}
		got = append(got, evs...)
		return nil
	}); err != nil || len(got) != 1 {
		t.Fatalf("query with a free slot: %d events, %v", len(got), err)
	}
	if n, err := s.Count(t.Context(), nostr.Filter{Kinds: []int{1}}, Limits{Gate: gate}); err != nil || n != 1 {
		t.Fatalf("count with a free slot: %d, %v", n, err)
	}
	if len(gate) != 0 {
		t.Fatal("a slot of the gate was not given back")
	}
}
