package store

import (
	"container/heap"
	"context"
	"fmt"
	"math"
	"slices"

	"github.com/PowerDNS/lmdb-go/lmdb"
	"github.com/nbd-wtf/go-nostr"
)

// txnScan is the most index entries one read transaction visits; a filter that matches
// little among many entries then still gives the transaction up regularly (old pages can only
// be reused once no reader needs them).
const txnScan = 4096

// ctxEvery is how many index entries are visited between looks at ctx.
const ctxEvery = 256

// Limits bound a query.
type Limits struct {
	Limit int // most events returned; 0 (or less) for no limit
	Scan  int // most index entries visited; 0 (or less) for no limit
	// Gate, when set, is a semaphore each of the query's read transactions holds a slot of
	// besides the store's own reader slot: the caller's bound on reads at once (the relay keeps
	// its clients' reads well below LMDB's reader slots this way, so its own reads always find
	// one).
	Gate chan struct{}
}

// Query calls emit with the events matching f, newest first (created_at descending, then
// the order they were stored in, latest first), in chunks. It copies a chunk out under one
// read transaction, ends the transaction and only then calls emit, which may block (on a slow
// socket, say): no transaction is held while emit runs. The next chunk resumes strictly after
// the last (created_at, serial) visited, so nothing is emitted twice and the limit is exact;
// an event stored or deleted while a query runs is seen or not depending on where it falls
// in the order (each chunk is a consistent snapshot; the query as a whole is not).
//
// Query uses lim.Limit, not f.Limit (the caller decides). A filter with LimitZero or a Search
// matches nothing. Each chunk is a new slice of new events, which emit may keep.
//
// Query returns emit's error, ctx.Err(), ErrClosed (Close ran between chunks), or
// ErrScanBudget after emitting what it found when lim.Scan index entries were not enough.
func (s *Store) Query(ctx context.Context, f nostr.Filter, lim Limits, emit func([]*nostr.Event) error) error {
	if f.LimitZero {
		return nil
	}
	sc := s.newScan(f, max(lim.Limit, 0), max(lim.Scan, 0), false)
	sc.gate = lim.Gate
	for !sc.done {
		evts, err := sc.step(ctx)
		if len(evts) > 0 {
			if eerr := emit(evts); eerr != nil {
				return eerr
			}
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// Count returns the number of events matching f (f.Limit and LimitZero are ignored, a Search
// matches nothing; lim.Limit is ignored). When that needs more than lim.Scan index entries (0
// for no limit) it returns ErrScanBudget with the number found so far, which is then a lower
// bound. It also returns ctx.Err() and ErrClosed. Like Query it works in short read
// transactions, each holding a slot of lim.Gate when set.
func (s *Store) Count(ctx context.Context, f nostr.Filter, lim Limits) (int64, error) {
	sc := s.newScan(f, 0, max(lim.Scan, 0), true)
	sc.gate = lim.Gate
	if sc.p.everything() {
		// LMDB keeps the number of entries of a DBI: no scan needed
		var n int64
		err := s.gated(ctx, lim.Gate, func(txn *lmdb.Txn) error {
			st, err := txn.Stat(s.events)
			if err != nil {
				return fmt.Errorf("stat events: %w", err)
			}
			n = int64(st.Entries)
			return nil
		})
		return n, err
	}
	for !sc.done {
		if _, err := sc.step(ctx); err != nil {
			return sc.found, err
		}
	}
	return sc.found, nil
}

// scan is one query's progress across its read transactions.
type scan struct {
	s      *Store
	f      nostr.Filter
	p      plan
	limit  int  // 0: none
	budget int  // 0: none
	count  bool // count only: no events are kept
	gate   chan struct{}
	// below is where the next transaction resumes: every entry at or above it has been
	// visited. It is exclusive.
	below   pos
	scanned int   // index entries visited
	found   int64 // events matched (emitted or counted)
	done    bool

	// ids plans: candidates, newest first, once all are looked up (or the budget ran out
	// first: short); next is the first not yet read
	looked bool
	short  bool
	cands  []pos
	next   int
}

func (s *Store) newScan(f nostr.Filter, limit, budget int, count bool) *scan {
	p := makePlan(f)
	return &scan{
		s: s, f: f, p: p, limit: limit, budget: budget, count: count,
		below: pos{ts: p.hi, serial: math.MaxUint64},
		done:  p.none,
	}
}

func (sc *scan) budgetSpent() bool { return sc.budget > 0 && sc.scanned >= sc.budget }

// step runs one read transaction and returns the events it matched (none when counting). It
// sets done when the scan is over.
func (sc *scan) step(ctx context.Context) ([]*nostr.Event, error) {
	if err := ctx.Err(); err != nil {
		sc.done = true
		return nil, err
	}
	var out []*nostr.Event
	err := sc.s.gated(ctx, sc.gate, func(txn *lmdb.Txn) error {
		var err error
		switch {
		case !sc.p.byIDs:
			out, err = sc.merge(ctx, txn)
		case !sc.looked:
			err = sc.lookIDs(ctx, txn)
		default:
			out, err = sc.readIDs(ctx, txn)
		}
		return err
	})
	if err != nil {
		sc.done = true
	}
	return out, err
}

// take decides on one candidate event: it reports whether the chunk is full before it (and
// then the candidate is not taken), and adds it to out when it matches.
func (sc *scan) take(out []*nostr.Event, bytes *int, evt *nostr.Event, size int) ([]*nostr.Event, bool) {
	if evt == nil || !sc.f.Matches(evt) {
		return out, false
	}
	if sc.count {
		sc.found++
		return out, false
	}
	if len(out) > 0 && *bytes+size > sc.s.opts.ChunkBytes {
		return out, true
	}
	*bytes += size
	sc.found++
	out = append(out, evt)
	if sc.limit > 0 && sc.found >= int64(sc.limit) {
		sc.done = true
	}
	return out, false
}

// merge walks the plan's ranges newest first under one transaction: a heap of cursors, each
// stepping backwards through its range, yields the entries in global order; an event found
// in two ranges (two of its tag values, say) comes out twice in a row and is read once.
func (sc *scan) merge(ctx context.Context, txn *lmdb.Txn) ([]*nostr.Event, error) {
	h := make(cursorHeap, 0, len(sc.p.ranges))
	defer func() {
		for _, rc := range h {
			rc.cur.Close()
		}
	}()
	for _, prefix := range sc.p.ranges {
		cur, err := txn.OpenCursor(sc.s.index)
		if err != nil {
			return nil, fmt.Errorf("open index cursor: %w", err)
		}
		rc := &rangeCursor{cur: cur, prefix: prefix, lo: sc.p.lo}
		ok, err := rc.seek(sc.below)
		if err != nil || !ok {
			cur.Close()
			if err != nil {
				return nil, err
			}
			continue
		}
		h = append(h, rc)
	}
	heap.Init(&h)

	var (
		out   []*nostr.Event
		bytes int
		last  pos
		seen  bool
	)
	for visited := 0; len(h) > 0; visited++ {
		if sc.budgetSpent() {
			return out, ErrScanBudget
		}
		if visited >= txnScan || (!sc.count && len(out) >= sc.s.opts.ChunkEvents) {
			return out, nil
		}
		if visited%ctxEvery == ctxEvery-1 {
			if err := ctx.Err(); err != nil {
				return out, err
			}
		}
		rc := h[0]
		at := rc.at
		sc.scanned++
		ok, err := rc.prev()
		if err != nil {
			return out, err
		}
		if ok {
			heap.Fix(&h, 0)
		} else {
			heap.Pop(&h)
			rc.cur.Close()
		}
		if seen && at == last {
			continue // the same event from another range
		}
		last, seen = at, true
		sc.below = at
		if sc.count && sc.p.exact {
			sc.found++
			continue
		}
		evt, size, err := sc.s.fetch(txn, at.serial)
		if err != nil {
			return out, err
		}
		var full bool
		if out, full = sc.take(out, &bytes, evt, size); full {
			// leave it for the next chunk: resume just above it
			sc.below = pos{ts: at.ts, serial: at.serial + 1}
			sc.scanned--
			return out, nil
		}
		if sc.done {
			return out, nil
		}
	}
	sc.done = true
	return out, nil
}

// lookIDs looks the plan's ids up (at most txnScan per transaction) and, once all are,
// sorts what was found newest first.
func (sc *scan) lookIDs(ctx context.Context, txn *lmdb.Txn) error {
	for i := 0; i < txnScan && len(sc.p.ids) > 0; i++ {
		if sc.budgetSpent() {
			sc.short = true
			sc.p.ids = nil
			break
		}
		if i%ctxEvery == ctxEvery-1 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		id := sc.p.ids[0]
		sc.p.ids = sc.p.ids[1:]
		sc.scanned++
		p, ok, err := sc.s.lookup(txn, id)
		if err != nil {
			return err
		}
		if ok && p.ts >= sc.p.lo && p.ts <= sc.p.hi {
			sc.cands = append(sc.cands, p)
		}
	}
	if len(sc.p.ids) > 0 {
		return nil // more to look up in the next transaction
	}
	sc.looked = true
	slices.SortFunc(sc.cands, func(a, b pos) int {
		switch {
		case b.less(a):
			return -1
		case a.less(b):
			return 1
		}
		return 0
	})
	if len(sc.cands) == 0 {
		sc.done = true
		if sc.short {
			return ErrScanBudget
		}
	}
	return nil
}

// readIDs reads the looked-up candidates, a chunk per transaction. A candidate deleted since
// it was looked up is skipped.
func (sc *scan) readIDs(ctx context.Context, txn *lmdb.Txn) ([]*nostr.Event, error) {
	var (
		out   []*nostr.Event
		bytes int
	)
	for visited := 0; sc.next < len(sc.cands); visited++ {
		if visited >= txnScan || (!sc.count && len(out) >= sc.s.opts.ChunkEvents) {
			return out, nil
		}
		if visited%ctxEvery == ctxEvery-1 {
			if err := ctx.Err(); err != nil {
				return out, err
			}
		}
		evt, size, err := sc.s.fetch(txn, sc.cands[sc.next].serial)
		if err != nil {
			return out, err
		}
		var full bool
		if out, full = sc.take(out, &bytes, evt, size); full {
			return out, nil
		}
		sc.next++
		if sc.done {
			return out, nil
		}
	}
	sc.done = true
	if sc.short {
		return out, ErrScanBudget
	}
	return out, nil
}

// rangeCursor walks one index range backwards, from newest to oldest.
type rangeCursor struct {
	cur    *lmdb.Cursor
	prefix []byte
	lo     uint64 // oldest ts in range
	at     pos    // the entry the cursor is on
}

// seek puts the cursor on the newest entry of its range below p; false when there is none.
func (rc *rangeCursor) seek(p pos) (bool, error) {
	k, _, err := rc.cur.Get(appendPos(slices.Clip(rc.prefix), p), nil, lmdb.SetRange)
	switch {
	case lmdb.IsNotFound(err): // nothing at or above p: start from the very last key
		k, _, err = rc.cur.Get(nil, nil, lmdb.Last)
	case err == nil: // on the first key at or above p: the one before is below p
		k, _, err = rc.cur.Get(nil, nil, lmdb.Prev)
	}
	return rc.check(k, err)
}

// prev moves to the next older entry; false at the end of the range.
func (rc *rangeCursor) prev() (bool, error) {
	k, _, err := rc.cur.Get(nil, nil, lmdb.Prev)
	return rc.check(k, err)
}

func (rc *rangeCursor) check(k []byte, err error) (bool, error) {
	if lmdb.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("walk index %x: %w", rc.prefix, err)
	}
	p, ok := readPos(k, len(rc.prefix))
	if !ok || string(k[:len(rc.prefix)]) != string(rc.prefix) || p.ts < rc.lo {
		return false, nil
	}
	rc.at = p
	return true, nil
}

// cursorHeap orders range cursors newest entry first.
type cursorHeap []*rangeCursor

func (h cursorHeap) Len() int           { return len(h) }
func (h cursorHeap) Less(i, j int) bool { return h[j].at.less(h[i].at) }
func (h cursorHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *cursorHeap) Push(x any)        { *h = append(*h, x.(*rangeCursor)) }
func (h *cursorHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}
