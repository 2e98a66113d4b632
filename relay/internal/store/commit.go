package store

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"time"

	"github.com/PowerDNS/lmdb-go/lmdb"
	"github.com/nbd-wtf/go-nostr"
)

type opKind uint8

const (
	opSave opKind = iota
	opReplace
	opDelete
)

// op is one write waiting for (or in) a group commit.
type op struct {
	kind   opKind
	evt    *nostr.Event // save, replace
	enc    []byte       // save, replace: evt encoded
	fields parsed       // save, replace: id, pubkey, sig; delete: id only
	// listed is closed once the op is in the queue or settled early: a copy's waiter must not
	// try to lead a commit before there is anything to commit.
	listed chan struct{}
	done   chan struct{} // closed once err is set
	err    error
	// waiters counts the callers of await blocked on this op, and wake, made by the first of
	// them, is closed to hand one of them the next commit (see lead); both under Store.mu.
	waiters int
	wake    chan struct{}
}

func (o *op) settle(err error) {
	o.err = err
	close(o.done)
}

// Commit is a queued write. Wait for it.
type Commit struct {
	// Fresh reports that the event was new when queued. When false, a copy of it (same id) was
	// queued before and is not committed yet, and Wait reports on that copy's commit.
	Fresh bool
	s     *Store
	op    *op
}

// Wait waits until the write is committed and returns its outcome: nil once it is on disk
// (synced), ErrDuplicate, ErrClosed, or the error that failed the commit. For a Commit that is
// not Fresh it returns ErrDuplicate once the first copy is committed, or that copy's error if
// its commit failed, so nobody is told "stored" before the first copy is synced.
//
// A queued write is committed by whichever caller of Wait leads the next commit, or by Close:
// nothing commits in the background.
func (c *Commit) Wait() error {
	c.s.await(c.op)
	if !c.Fresh && (c.op.err == nil || errors.Is(c.op.err, ErrDuplicate)) {
		return ErrDuplicate
	}
	return c.op.err
}

// Enqueue checks evt and queues it for the next group commit. It returns at once, with no I/O
// beyond one short read: ErrInvalid or ErrTooLarge for an event it cannot store, ErrDuplicate
// when its id is stored, ErrClosed. See Commit for what Fresh means.
func (s *Store) Enqueue(evt *nostr.Event) (*Commit, error) {
	return s.enqueue(opSave, evt)
}

// Save stores evt: Enqueue and Wait. It returns ErrDuplicate for any duplicate.
func (s *Store) Save(evt *nostr.Event) error {
	c, err := s.Enqueue(evt)
	if err != nil {
		return err
	}
	return c.Wait()
}

// Replace stores a replaceable (kind 0, 3, 10000-19999) or addressable (30000-39999, keyed by
// its d tag) event and deletes the older ones of its kind and author (and d tag) in the same
// transaction, queued through the group commit so it is ordered with saves. It returns
// ErrDuplicate when a stored one is newer (NIP-01: on equal created_at the lowest id wins) or
// its id is stored, and ErrInvalid for other kinds.
func (s *Store) Replace(evt *nostr.Event) error {
	if evt != nil && !nostr.IsReplaceableKind(evt.Kind) && !nostr.IsAddressableKind(evt.Kind) {
		return fmt.Errorf("%w: kind %d is neither replaceable nor addressable", ErrInvalid, evt.Kind)
	}
	c, err := s.enqueue(opReplace, evt)
	if err != nil {
		return err
	}
	return c.Wait()
}

// Delete removes the event with this id and its index entries, through the commit queue (so
// after a queued save of it). It returns nil when there is no such event, ErrInvalid for an id
// that is not 64 lowercase hex digits, and ErrClosed.
func (s *Store) Delete(id string) error {
	o := &op{kind: opDelete, listed: closedChan, done: make(chan struct{})}
	if !parseHex(o.fields.id[:], id) {
		return fmt.Errorf("%w: id %q is not 64 lowercase hex digits", ErrInvalid, clip(id))
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	s.queue = append(s.queue, o)
	s.wakeFull(false)
	s.mu.Unlock()
	s.await(o)
	return o.err
}

var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

func (s *Store) enqueue(kind opKind, evt *nostr.Event) (*Commit, error) {
	fields, err := parseFields(evt)
	if err != nil {
		return nil, err
	}
	if n := encodedLen(evt); n > s.opts.MaxEventBytes {
		return nil, fmt.Errorf("%w: event %s encodes to %d bytes, max %d", ErrTooLarge, evt.ID, n, s.opts.MaxEventBytes)
	}
	o := &op{
		kind:   kind,
		evt:    evt,
		enc:    encodeEvent(evt, fields),
		fields: fields,
		listed: make(chan struct{}),
		done:   make(chan struct{}),
	}

	// Reserve the id before looking it up: from here on a copy finds o, and any commit of this
	// id that finished before it is visible to the read below.
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, ErrClosed
	}
	if first := s.pending[fields.id]; first != nil {
		s.mu.Unlock()
		return &Commit{s: s, op: first}, nil
	}
	s.pending[fields.id] = o
	s.mu.Unlock()

	stored, err := s.has(fields.id)
	if err == nil && stored {
		err = ErrDuplicate
	}
	s.mu.Lock()
	if err == nil && s.closed {
		err = ErrClosed
	}
	if err != nil {
		delete(s.pending, fields.id)
		s.mu.Unlock()
		// copies that found o are told the same
		o.settle(err)
		close(o.listed)
		return nil, err
	}
	s.queue = append(s.queue, o)
	s.wakeFull(false)
	s.mu.Unlock()
	close(o.listed)
	return &Commit{Fresh: true, s: s, op: o}, nil
}

// Flush returns once every write queued before it was called has settled (committed, or
// failed), leading commits itself as needed. A reader that must see every event anyone was
// told is queued (the relay broadcasts an event as soon as it is queued, so a subscription
// that starts listening after that broadcast must find it stored) calls Flush first. It waits
// for at most the commits already queued, never for writes queued after it; ctx bounds the
// wait for a commit another caller leads.
func (s *Store) Flush(ctx context.Context) error {
	s.mu.Lock()
	var last *op
	if n := len(s.queue); n > 0 {
		last = s.queue[n-1]
	}
	running, idle := s.leading, s.idle
	s.mu.Unlock()
	switch {
	case last != nil:
		// commits take the queue in order: once the last op queued settles, so has every
		// op before it, and the batch being written now
		s.await(last)
	case running:
		select {
		case <-idle:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// has reports whether an event with this id is stored.
func (s *Store) has(id [32]byte) (bool, error) {
	var found bool
	err := s.view(context.Background(), func(txn *lmdb.Txn) error {
		_, ok, err := s.lookup(txn, id)
		found = ok
		return err
	})
	return found, err
}

// await returns once o is settled. While no commit runs it leads one; otherwise it waits for
// o, or for the running commit to hand it the next one (see lead).
func (s *Store) await(o *op) {
	<-o.listed
	s.mu.Lock()
	for {
		select {
		case <-o.done:
			s.mu.Unlock()
			return
		default:
		}
		if !s.leading {
			s.lead()
			continue
		}
		if o.wake == nil {
			o.wake = make(chan struct{})
		}
		wake := o.wake
		o.waiters++
		s.mu.Unlock()
		select {
		case <-o.done:
		case <-wake:
		}
		s.mu.Lock()
		o.waiters--
	}
}

// lead runs one group commit: it takes up to MaxBatch queued operations and writes them in one
// transaction (one disk sync). It is called and returns with mu held.
//
// Before it takes the batch it waits, briefly, for the writers of the commit before to queue
// again (PostgreSQL's commit_delay, bounded by the commit's own cost): clients that each wait
// for their OK before they send the next event come back a round trip after their commit, and
// a leader that started at once would commit only those that were already queued, splitting
// them into two alternating batches that each pay a disk sync. The wait is for want ops
// (the last commit's batch and the ops queued while it ran, so it follows the load), at most
// MaxCommitDelay and the last commit's own time (so an op waits at most about what it would
// waiting behind a running commit), and ends as soon as they are queued or the store closes.
// Nobody is told "stored" sooner than before: an op is done after its commit.
//
// The writers the wait expects do not always come back: a job request's customer waits for a
// result, not for its next OK, while the worker's claim, queued during the request's commit,
// leads the next one. A wait that gathered nothing makes the next 1, 2, 4... (at most
// maxWaitBackoff) leaders that would wait commit at once; a wait that gathers an op resets it.
// Clients that do come back (the ingest load) make waits that gather and never back off.
func (s *Store) lead() {
	s.leading = true
	d := s.commitDelay()
	wait := d > 0 && len(s.queue) < s.want && !s.closed
	if wait && s.waitSkip > 0 {
		s.waitSkip--
		wait = false
	}
	if wait {
		queued := len(s.queue)
		full := make(chan struct{})
		s.full = full
		s.mu.Unlock()
		t := time.NewTimer(d)
		select {
		case <-full:
		case <-t.C:
		}
		t.Stop()
		s.mu.Lock()
		s.full = nil
		if len(s.queue) > queued || s.closed {
			s.waitBackoff = 0
		} else { // nobody came: the next leaders that would wait (1, 2, 4... of them) do not
			s.waitBackoff = min(max(1, 2*s.waitBackoff), maxWaitBackoff)
			s.waitSkip = s.waitBackoff
		}
	} else {
		s.mu.Unlock()
		// Concurrent writers that are about to queue get one chance to join this batch.
		runtime.Gosched()
		s.mu.Lock()
	}
	n := min(len(s.queue), s.opts.MaxBatch)
	batch := s.queue[:n:n]
	s.queue = s.queue[n:]
	if len(s.queue) == 0 {
		s.queue = nil // let the old backing array go
	}
	s.mu.Unlock()

	var took time.Duration
	if len(batch) > 0 {
		start := time.Now()
		s.write(batch)
		took = time.Since(start)
	}

	s.mu.Lock()
	if len(batch) > 0 {
		s.lastCommit = took
		s.want = min(len(batch)+len(s.queue), s.opts.MaxBatch)
	}
	for _, o := range batch {
		if o.kind != opDelete && s.pending[o.fields.id] == o {
			delete(s.pending, o.fields.id)
		}
		close(o.done)
	}
	s.leading = false
	close(s.idle)
	s.idle = make(chan struct{})
	// Hand the next commit to one waiter of a queued op, the first in the queue that has one.
	// The others sleep on until their op is done: a waiter blocks only while a commit runs, so
	// every blocked waiter's op was in this batch (now done) or is still queued, and one of the
	// latter is woken here whenever there is one. (Waking every waiter, as closing a shared
	// channel did, woke all of the next batch's for one of them to lead.)
	for _, o := range s.queue {
		if o.waiters > 0 {
			close(o.wake)
			o.wake = nil
			break
		}
	}
}

// maxWaitBackoff bounds how many leaders in a row skip the wait after waits that gathered
// nothing: one in 65 still tries, so a load whose writers do come back is found again.
const maxWaitBackoff = 64

// commitDelay is the longest the next leader waits for its batch to fill (see lead).
func (s *Store) commitDelay() time.Duration {
	if s.opts.MaxCommitDelay < 0 {
		return 0
	}
	return min(s.opts.MaxCommitDelay, s.lastCommit)
}

// wakeFull ends a leader's wait for its batch when the queue holds what it waits for, or
// always when force is set (Close). Called with mu held.
func (s *Store) wakeFull(force bool) {
	if s.full != nil && (force || len(s.queue) >= s.want) {
		close(s.full)
		s.full = nil
	}
}

// write commits batch in one transaction and sets each op's err (done is closed by lead). An
// op's own verdict (ErrDuplicate) does not fail the transaction; an LMDB error does, and then
// the ops are written one per transaction, so one bad op cannot fail the others.
func (s *Store) write(batch []*op) {
	if s.beforeCommit != nil {
		s.beforeCommit(len(batch))
	}
	verdicts := make([]error, len(batch))
	start := s.nextSerial
	err := s.env.Update(func(txn *lmdb.Txn) error {
		txn.RawRead = true
		for i, o := range batch {
			v, err := s.apply(txn, o)
			if err != nil {
				return err
			}
			verdicts[i] = v
		}
		return nil
	})
	if err == nil {
		s.commits.Add(1)
		s.ops.Add(int64(len(batch)))
		for i, o := range batch {
			o.err = verdicts[i]
		}
		return
	}
	s.nextSerial = start // the aborted transaction stored nothing
	if len(batch) == 1 {
		batch[0].err = fmt.Errorf("commit %s: %w", batch[0].describe(), err)
		return
	}
	for _, o := range batch {
		var verdict error
		start := s.nextSerial
		err := s.env.Update(func(txn *lmdb.Txn) error {
			txn.RawRead = true
			v, err := s.apply(txn, o)
			verdict = v
			return err
		})
		if err != nil {
			s.nextSerial = start
			o.err = fmt.Errorf("commit %s: %w", o.describe(), err)
			continue
		}
		s.commits.Add(1)
		s.ops.Add(1)
		o.err = verdict
	}
}

func (o *op) describe() string {
	switch o.kind {
	case opSave:
		return "save of " + o.evt.ID
	case opReplace:
		return "replacement by " + o.evt.ID
	}
	return fmt.Sprintf("deletion of %x", o.fields.id)
}

// apply performs o inside txn. verdict is o's outcome when the transaction commits (nil or
// ErrDuplicate); err is an LMDB error that must abort the transaction.
func (s *Store) apply(txn *lmdb.Txn, o *op) (verdict, err error) {
	switch o.kind {
	case opDelete:
		return nil, s.remove(txn, o.fields.id)
	case opReplace:
		return s.replace(txn, o)
	}
	// The authoritative duplicate check: this sees every commit and the earlier ops of this batch.
	if _, ok, err := s.lookup(txn, o.fields.id); err != nil || ok {
		return ErrDuplicate, err
	}
	return nil, s.insert(txn, o)
}

// insert stores o's event under the next serial with all its index entries.
func (s *Store) insert(txn *lmdb.Txn, o *op) error {
	p := pos{ts: tsKey(o.evt.CreatedAt), serial: s.nextSerial}
	// serials only grow, so Append holds and spares LMDB the search
	if err := txn.Put(s.events, serialKey(p.serial), o.enc, lmdb.Append); err != nil {
		return fmt.Errorf("put event %s: %w", o.evt.ID, err)
	}
	if err := txn.Put(s.ids, o.fields.id[:], idValue(p), 0); err != nil {
		return fmt.Errorf("put id %s: %w", o.evt.ID, err)
	}
	for _, k := range indexKeys(o.evt, o.fields.pubkey, p) {
		if err := txn.Put(s.index, k, nil, 0); err != nil {
			return fmt.Errorf("put index %x for %s: %w", k, o.evt.ID, err)
		}
	}
	s.nextSerial++
	return nil
}

// remove deletes the event with this id, if stored, and its index entries.
func (s *Store) remove(txn *lmdb.Txn, id [32]byte) error {
	p, ok, err := s.lookup(txn, id)
	if err != nil || !ok {
		return err
	}
	evt, _, err := s.fetch(txn, p.serial)
	if err != nil {
		return err
	}
	if evt != nil {
		var pk [32]byte
		if !parseHex(pk[:], evt.PubKey) {
			return fmt.Errorf("delete %x: %w: pubkey %q", id, errCorrupt, evt.PubKey)
		}
		for _, k := range indexKeys(evt, pk, p) {
			if err := txn.Del(s.index, k, nil); err != nil && !lmdb.IsNotFound(err) {
				return fmt.Errorf("delete index %x of %x: %w", k, id, err)
			}
		}
		if err := txn.Del(s.events, serialKey(p.serial), nil); err != nil {
			return fmt.Errorf("delete event %x: %w", id, err)
		}
	}
	if err := txn.Del(s.ids, id[:], nil); err != nil {
		return fmt.Errorf("delete id %x: %w", id, err)
	}
	return nil
}

// replace stores o's event unless a stored version (same kind, author and, when addressable,
// d tag) is newer, and deletes the older ones. It makes no change when it refuses.
func (s *Store) replace(txn *lmdb.Txn, o *op) (verdict, err error) {
	if _, ok, err := s.lookup(txn, o.fields.id); err != nil || ok {
		return ErrDuplicate, err
	}
	evt := o.evt
	addressable := nostr.IsAddressableKind(evt.Kind)
	d := evt.Tags.GetD()
	prefix := authorKindPrefix(o.fields.pubkey, uint32(evt.Kind))
	var older [][32]byte
	err = s.eachInRange(txn, prefix, func(p pos) (bool, error) {
		prev, _, err := s.fetch(txn, p.serial)
		if err != nil || prev == nil {
			return err == nil, err
		}
		if addressable && prev.Tags.GetD() != d {
			return true, nil
		}
		if prev.CreatedAt > evt.CreatedAt || (prev.CreatedAt == evt.CreatedAt && prev.ID < evt.ID) {
			verdict = ErrDuplicate
			return false, nil
		}
		var id [32]byte
		if !parseHex(id[:], prev.ID) {
			return false, fmt.Errorf("replace: %w: id %q", errCorrupt, prev.ID)
		}
		older = append(older, id)
		return true, nil
	})
	if err != nil || verdict != nil {
		return verdict, err
	}
	for _, id := range older {
		if err := s.remove(txn, id); err != nil {
			return nil, err
		}
	}
	return nil, s.insert(txn, o)
}

// eachInRange calls fn with the pos of every entry of one index range, oldest first, until fn
// returns false or an error.
func (s *Store) eachInRange(txn *lmdb.Txn, prefix []byte, fn func(pos) (bool, error)) error {
	cur, err := txn.OpenCursor(s.index)
	if err != nil {
		return fmt.Errorf("open index cursor: %w", err)
	}
	defer cur.Close()
	k, _, err := cur.Get(prefix, nil, lmdb.SetRange)
	for err == nil {
		p, ok := readPos(k, len(prefix))
		if !ok || string(k[:len(prefix)]) != string(prefix) {
			return nil
		}
		more, ferr := fn(p)
		if ferr != nil || !more {
			return ferr
		}
		k, _, err = cur.Get(nil, nil, lmdb.Next)
	}
	if lmdb.IsNotFound(err) {
		return nil
	}
	return fmt.Errorf("walk index %x: %w", prefix, err)
}
