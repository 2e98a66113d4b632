package lmdb

// sparecycles patch: group commit. With GroupCommit set, SaveEvent calls that arrive together
// are written by one committer goroutine in one write transaction, so they share one disk sync;
// each caller still returns only after the transaction holding its event has been committed.

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"runtime"

	"github.com/PowerDNS/lmdb-go/lmdb"
	"github.com/fiatjaf/eventstore"
	"github.com/nbd-wtf/go-nostr"
)

// ErrClosed is returned by saves queued after Close.
var ErrClosed = errors.New("lmdb: store closed")

// maxBatch bounds how many events one group-commit transaction writes.
const maxBatch = 1024

type pendingSave struct {
	evt  *nostr.Event
	id   [32]byte
	done chan error // buffered(1): the committer never blocks on a caller
}

// startCommitter starts the group-commit goroutine; Close stops it.
func (b *LMDBBackend) startCommitter() {
	b.saves = make(chan *pendingSave, maxBatch)
	b.pending = make(map[[32]byte]struct{})
	b.committerDone = make(chan struct{})
	go b.commitLoop()
}

// QueueSave queues evt for the next group commit and returns a function that waits until evt
// is durably stored (nil), found to be a duplicate (eventstore.ErrDupEvent) or refused. It lets
// a caller decide something under its own lock, queue the save, release the lock and then wait,
// so its lock is not held across the disk sync. Without GroupCommit it saves evt at once.
func (b *LMDBBackend) QueueSave(evt *nostr.Event) (wait func() error) {
	wait, err := b.Enqueue(evt)
	if err != nil {
		return func() error { return err }
	}
	return wait
}

// Enqueue is QueueSave that tells at once what it can: eventstore.ErrDupEvent when an event
// with evt's id is stored or already queued, ErrClosed after Close, or a bounds error. Only
// when err is nil was evt queued, and wait then waits for its commit. A caller that acts on an
// event as soon as it is queued (a relay that broadcasts it while the disk syncs) learns here,
// before acting, that the event is not new. Without GroupCommit it saves evt at once and wait
// returns nil.
func (b *LMDBBackend) Enqueue(evt *nostr.Event) (wait func() error, err error) {
	if err := checkBounds(evt); err != nil {
		return nil, err
	}
	if !b.GroupCommit {
		if err := b.saveOne(evt); err != nil {
			return nil, err
		}
		return func() error { return nil }, nil
	}
	id, err := parseID(evt.ID)
	if err != nil {
		return nil, err
	}
	// Holding savesMu keeps Close from closing the env under the lookup below and the queue
	// under the send.
	b.savesMu.RLock()
	defer b.savesMu.RUnlock()
	if b.savesClosed {
		return nil, ErrClosed
	}
	b.pendingMu.Lock()
	if _, queued := b.pending[id]; queued {
		b.pendingMu.Unlock()
		return nil, eventstore.ErrDupEvent
	}
	b.pending[id] = struct{}{}
	b.pendingMu.Unlock()
	// An event leaves pending only after its commit, so an id that is neither pending (checked
	// above) nor found here was not stored when this looked.
	var stored bool
	err = b.lmdbEnv.View(func(txn *lmdb.Txn) error {
		txn.RawRead = true
		var err error
		stored, err = b.storedInTxn(txn, id[:])
		return err
	})
	if err != nil || stored {
		b.unpend(id)
		if err == nil {
			err = eventstore.ErrDupEvent
		}
		return nil, err
	}
	p := &pendingSave{evt: evt, id: id, done: make(chan error, 1)}
	b.saves <- p
	return func() error { return <-p.done }, nil
}

func (b *LMDBBackend) unpend(id [32]byte) {
	b.pendingMu.Lock()
	delete(b.pending, id)
	b.pendingMu.Unlock()
}

func parseID(s string) (id [32]byte, err error) {
	if len(s) != 64 {
		return id, fmt.Errorf("event id %q is not 32 bytes of hex", s)
	}
	if _, err := hex.Decode(id[:], []byte(s)); err != nil {
		return id, fmt.Errorf("event id %q is not 32 bytes of hex", s)
	}
	return id, nil
}

func (b *LMDBBackend) commitLoop() {
	defer close(b.committerDone)
	batch := make([]*pendingSave, 0, maxBatch)
	for p := range b.saves {
		batch = append(batch[:0], p)
		// Let goroutines that are about to queue a save do so first: under load this grows the
		// batch (fewer syncs, less CPU per event); when nothing else is runnable it returns at once.
		runtime.Gosched()
	drain:
		for len(batch) < maxBatch {
			select {
			case p, ok := <-b.saves:
				if !ok {
					break drain
				}
				batch = append(batch, p)
			default:
				break drain
			}
		}
		b.commitBatch(batch)
		clear(batch)
	}
}

// commitBatch writes batch in one transaction and answers each caller after the commit. If the
// transaction fails, it saves the events one by one so one bad event cannot fail the others.
func (b *LMDBBackend) commitBatch(batch []*pendingSave) {
	results := make([]error, len(batch))
	err := b.lmdbEnv.Update(func(txn *lmdb.Txn) error {
		for i, p := range batch {
			results[i] = nil
			err := b.saveInTxn(txn, p.evt)
			if errors.Is(err, eventstore.ErrDupEvent) {
				results[i] = err
				continue
			}
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil && len(batch) > 1 {
		for i, p := range batch {
			results[i] = b.saveOne(p.evt)
		}
	} else if err != nil {
		results[0] = err
	}
	// Leave pending only now: from here on the store itself knows the committed events.
	b.pendingMu.Lock()
	for _, p := range batch {
		delete(b.pending, p.id)
	}
	b.pendingMu.Unlock()
	for i, p := range batch {
		p.done <- results[i]
	}
}

// saveOne saves evt in a transaction of its own, with the duplicate check of saveInTxn.
func (b *LMDBBackend) saveOne(evt *nostr.Event) error {
	if err := checkBounds(evt); err != nil {
		return err
	}
	return b.lmdbEnv.Update(func(txn *lmdb.Txn) error { return b.saveInTxn(txn, evt) })
}

// saveInTxn is SaveEvent's body with a duplicate check that works: the id index is keyed by
// the first 8 bytes of the id (see getIndexKeysForEvent), so the full id is compared against the
// stored event. Earlier events of the same transaction are seen, so duplicates within a batch
// are caught too.
func (b *LMDBBackend) saveInTxn(txn *lmdb.Txn, evt *nostr.Event) error {
	if b.EnableHLLCacheFor != nil {
		useCache, skipSaving := b.EnableHLLCacheFor(evt.Kind)
		if useCache {
			if err := b.updateHyperLogLogCachedValues(txn, evt); err != nil {
				return fmt.Errorf("failed to update hll cache: %w", err)
			}
			if skipSaving {
				return nil
			}
		}
	}
	id, err := parseID(evt.ID)
	if err != nil {
		return err
	}
	switch stored, err := b.storedInTxn(txn, id[:]); {
	case err != nil:
		return err
	case stored:
		return eventstore.ErrDupEvent
	}
	return b.save(txn, evt)
}

// storedInTxn reports whether the event with this 32-byte id is stored.
func (b *LMDBBackend) storedInTxn(txn *lmdb.Txn, id []byte) (bool, error) {
	idx, err := txn.Get(b.indexId, id[:8])
	switch {
	case lmdb.IsNotFound(err):
		return false, nil
	case err != nil:
		return false, err
	}
	raw, err := txn.Get(b.rawEventStore, idx)
	if lmdb.IsNotFound(err) {
		return false, nil
	}
	return err == nil && len(raw) >= 32 && bytes.Equal(raw[:32], id), err
}

func checkBounds(evt *nostr.Event) error {
	if evt.CreatedAt > math.MaxUint32 || evt.Kind > math.MaxUint16 {
		return fmt.Errorf("event with values out of expected boundaries")
	}
	return nil
}

// stopCommitter refuses new saves, lets the committer write those already queued and waits
// for it to exit.
func (b *LMDBBackend) stopCommitter() {
	if b.saves == nil {
		return
	}
	b.savesMu.Lock()
	if !b.savesClosed {
		b.savesClosed = true
		close(b.saves)
	}
	b.savesMu.Unlock()
	<-b.committerDone
}
