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

// TestGroupCommitBatches: operations queued before anyone waits share one commit, up to
// MaxBatch per commit.
func TestGroupCommitBatches(t *testing.T) {
	tests := []struct {
		name        string
		maxBatch    int
		events      int
		wantCommits int64
	}{
		{"one batch", 0, 100, 1},
		{"max batch", 10, 100, 10},
		{"uneven", 30, 100, 4},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := openTest(t, Options{MaxBatch: tc.maxBatch})
			var evts []*nostr.Event
			for i := range tc.events {
				evts = append(evts, mkEvent(pkA, 1, nostr.Timestamp(i), fmt.Sprint(i)))
			}
			saveBatch(t, s, evts)
			if st := s.Stats(); st.Commits != tc.wantCommits || st.Ops != int64(tc.events) {
				t.Fatalf("stats %+v, want %d commits of %d ops", st, tc.wantCommits, tc.events)
			}
			requireSame(t, queryAll(t, s, nostr.Filter{}, Limits{}), bruteForce(evts, nostr.Filter{}, 0), "stored")
		})
	}
}

// TestConcurrentSaves: many goroutines saving at once all get their events stored, and
// commits are shared. The first commit is held until every goroutine has queued its first
// event, so at least one later commit carries more than one.
func TestConcurrentSaves(t *testing.T) {
	s := openTest(t, Options{})
	const writers, each = 64, 20
	queued := make(chan struct{}, writers)
	release := make(chan struct{})
	var hold sync.Once
	s.beforeCommit = func(int) { hold.Do(func() { <-release }) }

	errs := make(chan error, writers*each)
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				c, err := s.Enqueue(mkEvent(hexOf(fmt.Sprint("writer", w)), 1, nostr.Timestamp(i), fmt.Sprint(w, "/", i)))
				if i == 0 {
					queued <- struct{}{}
				}
				if err == nil {
					err = c.Wait()
				}
				errs <- err
			}
		}()
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	allQueued(t, ctx, queued, writers)
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	n, err := s.Count(t.Context(), nostr.Filter{}, Limits{})
	if err != nil || n != writers*each {
		t.Fatalf("count = %d, %v; want %d", n, err, writers*each)
	}
	st := s.Stats()
	t.Logf("%d events in %d commits", st.Ops, st.Commits)
	if st.Ops != writers*each || st.Commits >= st.Ops {
		t.Fatalf("stats %+v: no commit carried more than one event", st)
	}
}

// allQueued waits, until ctx ends, for n writers to say on queued that they have queued.
func allQueued(t *testing.T, ctx context.Context, queued <-chan struct{}, n int) {
	t.Helper()
	for range n {
		select {
		case <-queued:
		case <-ctx.Done():
			t.Fatal("writers did not all queue")
		}
	}
}

// TestCommitHandsOff: a commit that ends hands the next one to a single waiter of a queued op
// (the others sleep on until their op is done), so every waiter must still be served when
// commits are small, when several wait on one op (copies) and when deletions are queued among
// the saves. The first commit is held until every writer has queued, so the rest queue behind it.
func TestCommitHandsOff(t *testing.T) {
	for _, maxBatch := range []int{1, 2, 7} {
		t.Run(fmt.Sprint("max batch ", maxBatch), func(t *testing.T) {
			s := openTest(t, Options{MaxBatch: maxBatch})
			const writers = 24
			queued := make(chan struct{}, writers)
			release := make(chan struct{})
			var hold sync.Once
			s.beforeCommit = func(int) { hold.Do(func() { <-release }) }
			first := mkEvent(pkA, 1, 0, "first")
			c0, err := s.Enqueue(first)
			if err != nil {
				t.Fatal(err)
			}
			errs := make(chan error, writers+1)
			go func() { errs <- c0.Wait() }() // leads a commit, held, unless a writer leads it
			for w := range writers {
				go func() {
					var err error
					switch {
					case w%4 == 3: // a deletion of an event that is not stored
						queued <- struct{}{}
						err = s.Delete(hexOf(fmt.Sprint("absent ", w)))
					default: // writers w and w+1 of each pair of 0..2 save the same event: copies
						c, qerr := s.Enqueue(mkEvent(pkB, 1, nostr.Timestamp(w/2), fmt.Sprint("event ", w/2)))
						queued <- struct{}{}
						err = qerr
						if err == nil {
							err = c.Wait()
						}
						if errors.Is(err, ErrDuplicate) {
							err = nil
						}
					}
					errs <- err
				}()
			}
			ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
			defer cancel()
			allQueued(t, ctx, queued, writers)
			close(release)
			for range writers + 1 {
				select {
				case err := <-errs:
					if err != nil {
						t.Fatal(err)
					}
				case <-ctx.Done():
					t.Fatal("a waiter was never served")
				}
			}
			if n, err := s.Count(ctx, nostr.Filter{}, Limits{}); err != nil || n != 1+writers/4*2 {
				t.Fatalf("count = %d, %v; want %d", n, err, 1+writers/4*2)
			}
		})
	}
}

// TestConcurrentDuplicates: of identical events saved at once, exactly one is stored.
func TestConcurrentDuplicates(t *testing.T) {
	s := openTest(t, Options{})
	for round := range 10 {
		evt := mkEvent(pkA, 1, nostr.Timestamp(round), fmt.Sprint("dup ", round))
		const copies = 16
		errs := make(chan error, copies)
		var wg sync.WaitGroup
		for range copies {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs <- s.Save(evt)
			}()
		}
		wg.Wait()
		close(errs)
		stored := 0
		for err := range errs {
			switch {
			case err == nil:
				stored++
			case !errors.Is(err, ErrDuplicate):
				t.Fatal(err)
			}
		}
		if stored != 1 {
			t.Fatalf("round %d: %d copies reported stored, want 1", round, stored)
		}
	}
	if n, _ := s.Count(t.Context(), nostr.Filter{}, Limits{}); n != 10 {
		t.Fatalf("count = %d, want 10", n)
	}
}

// TestCopyWaitsForFirst: a copy of a queued event gets a Commit that is not Fresh, and its
// Wait returns ErrDuplicate only once the first copy is on disk.
func TestCopyWaitsForFirst(t *testing.T) {
	s := openTest(t, Options{})
	evt := mkEvent(pkA, 1, 1, "first")
	entered, release := make(chan struct{}), make(chan struct{})
	var hold sync.Once
	s.beforeCommit = func(int) { hold.Do(func() { close(entered); <-release }) }

	first, err := s.Enqueue(evt)
	if err != nil || !first.Fresh {
		t.Fatalf("first enqueue: fresh %v, %v", first != nil && first.Fresh, err)
	}
	copyOf, err := s.Enqueue(evt)
	if err != nil || copyOf.Fresh {
		t.Fatalf("copy enqueue: fresh %v, %v", copyOf != nil && copyOf.Fresh, err)
	}
	firstErr := make(chan error, 1)
	go func() { firstErr <- first.Wait() }()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	select {
	case <-entered: // the first copy's commit is under way and held
	case <-ctx.Done():
		t.Fatal("commit never started")
	}

	type result struct {
		err    error
		stored *nostr.Event
	}
	copyRes := make(chan result, 1)
	go func() {
		err := copyOf.Wait()
		stored, _ := s.Get(evt.ID) // what is on disk the moment Wait returns
		copyRes <- result{err, stored}
	}()
	select {
	case r := <-copyRes:
		t.Fatalf("copy's Wait returned %v while the first commit was held", r.err)
	default:
	}
	close(release)
	if err := <-firstErr; err != nil {
		t.Fatalf("first: %v", err)
	}
	select {
	case r := <-copyRes:
		if !errors.Is(r.err, ErrDuplicate) || !sameEvent(r.stored, evt) {
			t.Fatalf("copy: %v, stored %v", r.err, r.stored != nil)
		}
	case <-ctx.Done():
		t.Fatal("copy's Wait did not return")
	}
	if _, err := s.Enqueue(evt); !errors.Is(err, ErrDuplicate) {
		t.Fatalf("enqueue once stored: %v", err)
	}
}

// TestFailedCommit: when a batch cannot be committed (the map is full), its operations are
// retried one per transaction, so only the one that does not fit fails, and a copy of it
// queued meanwhile gets that failure rather than ErrDuplicate.
func TestFailedCommit(t *testing.T) {
	s := openTest(t, Options{MapSize: 1 << 20, MaxEventBytes: 4 << 20})
	small1 := mkEvent(pkA, 1, 1, "small 1")
	huge := mkEvent(pkA, 1, 2, strings.Repeat("h", 2<<20))
	small2 := mkEvent(pkA, 1, 3, "small 2")
	var commits []*Commit
	for _, e := range []*nostr.Event{small1, huge, small2, huge} {
		c, err := s.Enqueue(e)
		if err != nil {
			t.Fatal(err)
		}
		commits = append(commits, c)
	}
	if commits[3].Fresh {
		t.Fatal("the second huge copy is fresh")
	}
	for i, wantFull := range []bool{false, true, false, true} {
		err := commits[i].Wait()
		var opErr *lmdb.OpError
		full := errors.As(err, &opErr) && opErr.Errno == lmdb.MapFull
		if full != wantFull || (!wantFull && err != nil) {
			t.Fatalf("commit %d: %v (want map full: %v)", i, err, wantFull)
		}
	}
	if st := s.Stats(); st.Commits != 2 || st.Ops != 2 {
		t.Fatalf("stats %+v, want the two small events in one commit each", st)
	}
	requireSame(t, queryAll(t, s, nostr.Filter{}, Limits{}), []*nostr.Event{small2, small1}, "stored")
	// the store still works, and serials stayed in order
	small3 := mkEvent(pkA, 1, 3, "small 3")
	saveAll(t, s, small3)
	requireSame(t, queryAll(t, s, nostr.Filter{}, Limits{}), []*nostr.Event{small3, small2, small1}, "after")
}

// TestCloseCommitsQueued: Close writes what is queued; waiting afterwards reports it.
func TestCloseCommitsQueued(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(Options{Path: dir, MapSize: 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	var evts []*nostr.Event
	var commits []*Commit
	for i := range 10 {
		e := mkEvent(pkA, 1, nostr.Timestamp(i), fmt.Sprint(i))
		c, err := s.Enqueue(e)
		if err != nil {
			t.Fatal(err)
		}
		evts, commits = append(evts, e), append(commits, c)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	for _, c := range commits {
		if err := c.Wait(); err != nil {
			t.Fatal(err)
		}
		if err := c.Wait(); err != nil {
			t.Fatal("a second Wait changed its answer:", err)
		}
	}
	s = openTest(t, Options{Path: dir})
	requireSame(t, queryAll(t, s, nostr.Filter{}, Limits{}), bruteForce(evts, nostr.Filter{}, 0), "after reopen")
	// serials continue after the last one
	later := mkEvent(pkA, 1, 0, "later, same created_at as the first")
	saveAll(t, s, later)
	got := queryAll(t, s, nostr.Filter{Until: ts(0)}, Limits{})
	requireSame(t, got, []*nostr.Event{later, evts[0]}, "stored after reopen comes first")
}

// Flush returns only once every write queued before it has committed, including one behind a
// commit that is running, and at once when nothing is queued.
func TestFlush(t *testing.T) {
	s := openTest(t, Options{})
	if err := s.Flush(t.Context()); err != nil {
		t.Fatalf("flush with nothing queued: %v", err)
	}
	hold := make(chan struct{})
	entered := make(chan struct{}, 10)
	s.beforeCommit = func(int) { entered <- struct{}{}; <-hold }
	e1 := mkEvent(hexOf("flush"), 1, 10, "first")
	e2 := mkEvent(hexOf("flush"), 1, 11, "second")
	c1, err := s.Enqueue(e1)
	if err != nil {
		t.Fatal(err)
	}
	go c1.Wait() // leads the first commit, held in beforeCommit
	<-entered
	if _, err := s.Enqueue(e2); err != nil { // queued behind the running commit
		t.Fatal(err)
	}
	flushed := make(chan error, 1)
	go func() { flushed <- s.Flush(t.Context()) }()
	select {
	case err := <-flushed:
		t.Fatalf("flush returned (%v) while its writes were held", err)
	default:
	}
	close(hold)
	if err := <-flushed; err != nil {
		t.Fatal(err)
	}
	for _, e := range []*nostr.Event{e1, e2} {
		if got, err := s.Get(e.ID); err != nil || got == nil {
			t.Fatalf("event %q not stored when Flush returned (%v)", e.Content, err)
		}
	}
}
