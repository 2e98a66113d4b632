package store

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/PowerDNS/lmdb-go/lmdb"
	"github.com/nbd-wtf/go-nostr"
	"github.com/rs/zerolog"
)

// Options configure Open. Zero fields take their defaults.
type Options struct {
	Path    string // folder, created 0700 if missing; LMDB keeps data.mdb and lock.mdb in it
	MapSize int64  // largest the data file may grow, default 1<<38
	// MaxReaders is the number of LMDB reader slots, default 256. Read transactions take a slot
	// from a semaphore a little smaller than this, so a burst of readers waits (or gives up
	// with its context) instead of failing with MDB_READERS_FULL.
	MaxReaders    int
	MaxEventBytes int // largest encoded event accepted, default 1 MiB
	MaxBatch      int // most operations per group-commit transaction, default 1024
	// MaxCommitDelay bounds how long a commit's leader waits for the writers of the commit
	// before to queue again before it takes its batch (see Store.lead): default 2ms, and never
	// longer than the last commit took; negative disables the wait.
	MaxCommitDelay time.Duration
	// ChunkEvents and ChunkBytes bound what a query copies out under one read transaction:
	// default 256 events and 1 MiB (a single larger event still makes a chunk of one).
	ChunkEvents int
	ChunkBytes  int
	Logger      zerolog.Logger // migration progress; the zero value logs nothing
}

func (o *Options) setDefaults() {
	if o.MapSize <= 0 {
		o.MapSize = 1 << 38
	}
	if o.MaxReaders <= 0 {
		o.MaxReaders = 256
	}
	if o.MaxEventBytes <= 0 {
		o.MaxEventBytes = 1 << 20
	}
	if o.MaxBatch <= 0 {
		o.MaxBatch = 1024
	}
	if o.MaxCommitDelay == 0 {
		o.MaxCommitDelay = 2 * time.Millisecond
	}
	if o.ChunkEvents <= 0 {
		o.ChunkEvents = 256
	}
	if o.ChunkBytes <= 0 {
		o.ChunkBytes = 1 << 20
	}
}

// readerMargin is how many LMDB reader slots the semaphore leaves free, for tools such as
// mdb_stat or a backup that open the environment from outside.
func readerMargin(maxReaders int) int {
	switch {
	case maxReaders > 16:
		return 4
	case maxReaders > 2:
		return 1
	}
	return 0
}

// Store is an event store in one LMDB environment. Its methods are safe for concurrent use.
type Store struct {
	opts                     Options
	log                      zerolog.Logger
	env                      *lmdb.Env
	meta, events, ids, index lmdb.DBI

	// readers holds a token for every read transaction open, so there are never more than
	// LMDB has slots for.
	readers chan struct{}
	// reading counts read transactions begun or waiting for a token; Close waits for it.
	// Add happens under mu and only while !closed, so it never races Close's Wait.
	reading sync.WaitGroup

	mu      sync.Mutex
	closed  bool
	queue   []*op            // operations waiting for a commit, in order
	pending map[[32]byte]*op // by id: events queued or being committed, not yet settled
	leading bool             // a commit is running
	idle    chan struct{}    // closed (and replaced) each time a commit finishes
	// want is how many ops the next commit waits for (see lead): the last commit's batch and
	// the ops queued while it ran. full, while a leader waits, is closed once the queue holds
	// want ops or the store closes.
	want       int
	full       chan struct{}
	lastCommit time.Duration // how long the last commit's transaction took
	// A wait that gathered nothing (its writers did not come back: a job's request, say, whose
	// worker's claim queued while it committed) makes the next waitSkip leaders that would
	// wait commit at once; waitBackoff, doubled by each such wait (up to maxWaitBackoff) and
	// cleared by one that gathered an op, is how many.
	waitSkip, waitBackoff int

	// nextSerial is the serial the next stored event gets. Only a commit leader (one at a time)
	// or Open touches it.
	nextSerial uint64

	commits atomic.Int64 // write transactions committed by group commit
	ops     atomic.Int64 // operations in them

	closeOnce sync.Once
	closeErr  error

	lock *os.File // holds the folder's lock (LockFile) while the store is open

	// migrateBatch is how many eventstore records one migration transaction copies.
	migrateBatch int

	// Test hooks. beforeCommit runs in the leader just before each batch is written;
	// afterMigrateBatch runs after each migration batch is committed, and an error from it
	// stops the migration (as a crash would).
	beforeCommit      func(batch int)
	afterMigrateBatch func() error
}

// Stats count group commits since Open.
type Stats struct {
	Commits int64 // write transactions
	Ops     int64 // saves, replacements and deletions written by them
}

// Stats reports how many commits wrote how many operations.
func (s *Store) Stats() Stats {
	return Stats{Commits: s.commits.Load(), Ops: s.ops.Load()}
}

const (
	metaVersion        = "version"
	metaLegacyProgress = "legacy-progress" // last eventstore serial copied, while migrating
)

// Open opens (creating if needed) the store in opts.Path and migrates a folder written by
// eventstore's LMDB backend (see the package doc). It starts no goroutines.
func Open(opts Options) (*Store, error) {
	s, err := newStore(opts)
	if err != nil {
		return nil, err
	}
	if err := s.open(); err != nil {
		return nil, err
	}
	return s, nil
}

// newStore prepares a Store for open.
func newStore(opts Options) (*Store, error) {
	opts.setDefaults()
	if opts.Path == "" {
		return nil, errors.New("store: no path")
	}
	return &Store{
		opts:         opts,
		log:          opts.Logger,
		readers:      make(chan struct{}, max(1, opts.MaxReaders-readerMargin(opts.MaxReaders))),
		pending:      map[[32]byte]*op{},
		idle:         make(chan struct{}),
		migrateBatch: 1000,
	}, nil
}

// open creates the folder, opens the environment and migrates; on error the environment is
// closed again.
func (s *Store) open() error {
	if err := os.MkdirAll(s.opts.Path, 0o700); err != nil {
		return fmt.Errorf("store: create %s: %w", s.opts.Path, err)
	}
	lock, err := lockFolder(s.opts.Path)
	if err != nil {
		return err
	}
	env, err := lmdb.NewEnv()
	if err != nil {
		lock.Close()
		return fmt.Errorf("store: new env: %w", err)
	}
	s.env, s.lock = env, lock
	if err := s.setup(); err != nil {
		env.Close()
		lock.Close()
		return fmt.Errorf("store: open %s: %w", s.opts.Path, err)
	}
	return nil
}

func (s *Store) setup() error {
	// 4 of ours and up to 12 of eventstore's during a migration
	if err := s.env.SetMaxDBs(32); err != nil {
		return fmt.Errorf("set max dbs: %w", err)
	}
	if err := s.env.SetMapSize(s.opts.MapSize); err != nil {
		return fmt.Errorf("set map size: %w", err)
	}
	if err := s.env.SetMaxReaders(s.opts.MaxReaders); err != nil {
		return fmt.Errorf("set max readers: %w", err)
	}
	// NoTLS: a read transaction is not tied to an OS thread, so goroutines can use them freely and
	// a slot is freed when its transaction ends. No WriteMap: commits write the dirty pages and
	// fdatasync, rather than msync the whole map, and stray writes cannot reach the file.
	if err := s.env.Open(s.opts.Path, lmdb.NoTLS, 0o600); err != nil {
		return fmt.Errorf("open env: %w", err)
	}
	// Slots left by a process that died would otherwise stay taken.
	if _, err := s.env.ReaderCheck(); err != nil {
		return fmt.Errorf("reader check: %w", err)
	}
	var legacy legacyDBIs
	err := s.env.Update(func(txn *lmdb.Txn) error {
		for _, d := range []struct {
			name string
			dbi  *lmdb.DBI
		}{{"meta", &s.meta}, {"events", &s.events}, {"ids", &s.ids}, {"index", &s.index}} {
			dbi, err := txn.OpenDBI(d.name, lmdb.Create)
			if err != nil {
				return fmt.Errorf("open dbi %s: %w", d.name, err)
			}
			*d.dbi = dbi
		}
		v, err := txn.Get(s.meta, []byte(metaVersion))
		switch {
		case lmdb.IsNotFound(err):
			if err := txn.Put(s.meta, []byte(metaVersion), []byte{formatVersion}, 0); err != nil {
				return fmt.Errorf("write format version: %w", err)
			}
		case err != nil:
			return fmt.Errorf("read format version: %w", err)
		case len(v) != 1 || v[0] != formatVersion:
			return fmt.Errorf("format version %v is not %d (written by a different build?)", v, formatVersion)
		}
		var lerr error
		legacy, lerr = openLegacy(txn)
		return lerr
	})
	if err != nil {
		return err
	}
	if err := s.loadSerial(); err != nil {
		return err
	}
	if legacy.found() {
		return s.migrate(legacy)
	}
	return nil
}

// loadSerial sets nextSerial past the last stored event.
func (s *Store) loadSerial() error {
	return s.env.View(func(txn *lmdb.Txn) error {
		cur, err := txn.OpenCursor(s.events)
		if err != nil {
			return fmt.Errorf("open events cursor: %w", err)
		}
		defer cur.Close()
		k, _, err := cur.Get(nil, nil, lmdb.Last)
		switch {
		case lmdb.IsNotFound(err):
			s.nextSerial = 1
			return nil
		case err != nil:
			return fmt.Errorf("read last serial: %w", err)
		case len(k) != 8:
			return fmt.Errorf("events key %x is not a serial", k)
		}
		s.nextSerial = binary.BigEndian.Uint64(k) + 1
		return nil
	})
}

// Close refuses new operations (ErrClosed), commits what is queued, waits for read
// transactions to end and closes the environment. A query whose emit is running holds no
// transaction, so Close does not wait for it; its next chunk fails with ErrClosed. Close is
// idempotent and returns the first call's result.
func (s *Store) Close() error {
	s.closeOnce.Do(func() { s.closeErr = s.close() })
	return s.closeErr
}

func (s *Store) close() error {
	s.mu.Lock()
	s.closed = true
	s.wakeFull(true)
	for s.leading || len(s.queue) > 0 {
		if !s.leading {
			s.lead()
			continue
		}
		idle := s.idle
		s.mu.Unlock()
		<-idle
		s.mu.Lock()
	}
	s.mu.Unlock()
	s.reading.Wait()
	err := s.env.Close()
	s.lock.Close() // after the environment: the next holder finds it closed
	if err != nil {
		return fmt.Errorf("store: close env: %w", err)
	}
	return nil
}

// gated is view holding a slot of gate (when not nil) as well: see Limits.Gate.
func (s *Store) gated(ctx context.Context, gate chan struct{}, fn func(*lmdb.Txn) error) error {
	if gate != nil {
		select {
		case gate <- struct{}{}:
		case <-ctx.Done():
			return ctx.Err()
		}
		defer func() { <-gate }()
	}
	return s.view(ctx, fn)
}

// view runs fn in a read transaction, once a reader slot is free (or ctx is done). Values fn
// reads are LMDB memory (RawRead): fn must copy what it keeps.
func (s *Store) view(ctx context.Context, fn func(*lmdb.Txn) error) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	s.reading.Add(1)
	s.mu.Unlock()
	defer s.reading.Done()
	select {
	case s.readers <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-s.readers }()
	return s.env.View(func(txn *lmdb.Txn) error {
		txn.RawRead = true
		return fn(txn)
	})
}

// Get returns the event with this id, or nil, nil when none is stored. It returns ErrInvalid
// for an id that is not 64 lowercase hex digits, and ErrClosed.
func (s *Store) Get(id string) (*nostr.Event, error) {
	var key [32]byte
	if !parseHex(key[:], id) {
		return nil, fmt.Errorf("%w: id %q is not 64 lowercase hex digits", ErrInvalid, clip(id))
	}
	var evt *nostr.Event
	err := s.view(context.Background(), func(txn *lmdb.Txn) error {
		p, ok, err := s.lookup(txn, key)
		if err != nil || !ok {
			return err
		}
		evt, _, err = s.fetch(txn, p.serial)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", id, err)
	}
	return evt, nil
}

// lookup finds where the event with this id is stored.
func (s *Store) lookup(txn *lmdb.Txn, id [32]byte) (pos, bool, error) {
	v, err := txn.Get(s.ids, id[:])
	if lmdb.IsNotFound(err) {
		return pos{}, false, nil
	}
	if err != nil {
		return pos{}, false, fmt.Errorf("look up id %x: %w", id, err)
	}
	p, ok := readIDValue(v)
	if !ok {
		return pos{}, false, fmt.Errorf("look up id %x: %w: ids value %x", id, errCorrupt, v)
	}
	return p, true, nil
}

// fetch reads and decodes the event with this serial; nil when there is none. It also
// returns the size of its encoding.
func (s *Store) fetch(txn *lmdb.Txn, serial uint64) (*nostr.Event, int, error) {
	v, err := txn.Get(s.events, serialKey(serial))
	if lmdb.IsNotFound(err) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, fmt.Errorf("read event %d: %w", serial, err)
	}
	evt, err := decodeEvent(v)
	if err != nil {
		return nil, 0, fmt.Errorf("decode event %d: %w", serial, err)
	}
	return evt, len(v), nil
}
