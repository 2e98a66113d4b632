// Package store is the relay's event store: one LMDB environment (github.com/PowerDNS/lmdb-go),
// written here to replace the patched copy of fiatjaf/eventstore's LMDB backend.
//
// # Why not eventstore
//
// Its COUNT never advanced its iterator and spun forever; its queries held a read transaction
// open while the caller drained a channel at socket speed, so clients that stopped reading
// used up LMDB's reader slots (MDB_READERS_FULL for everyone); its encoding refused content
// or tag values over 65,535 bytes after the relay had broadcast the event; and a duplicate of
// an event still being committed got OK before the first copy was synced. This package fixes
// each by construction, as described below.
//
// # Layout
//
// The environment (data.mdb, lock.mdb in Options.Path) holds four named DBIs:
//
//	meta    "version" -> format version (1); "legacy-progress" while migrating (see below)
//	events  serial8 -> the event, encoded (see below)
//	ids     id32 -> serial8 ts8
//	index   key -> nothing (LMDB stores one zero byte); every key ends in ts8 serial8:
//	        'c' ts8 serial8                  all events, by created_at
//	        'k' kind4 ts8 serial8
//	        'a' pubkey32 ts8 serial8
//	        'K' pubkey32 kind4 ts8 serial8
//	        't' hash8 ts8 serial8            hash8 = sha256(letter 0x00 value)[:8], for every
//	                                         tag whose name is one byte and that has a value
//
// Numbers are big-endian. A serial is the order events were stored in: at Open the next one is
// the last key of events plus one. ts8 is created_at as uint64 with its sign bit flipped, so byte
// order is time order for negative timestamps too. Because each index key ends in ts8 serial8,
// every range sorts its events the same way, and (ts, serial) is a total order: a query walks
// ranges backwards and merges them newest first. Tag values are hashed, so values of any length
// (even hundreds of kilobytes) fit LMDB's 511-byte key limit; since a hash can collide (or be made
// to), every candidate is checked with nostr.Filter.Matches before it is returned.
//
// # Event encoding
//
//	version(1)=1 id(32) pubkey(32) sig(64) created_at(varint) kind(uvarint)
//	len(content)(uvarint) content  ntags(uvarint) { nitems(uvarint) { len(uvarint) item } }
//
// All lengths are varints, so no field has a 65,535 limit; the only limit is
// Options.MaxEventBytes on the whole encoding. Decoding checks every length against the bytes
// left, never panics, and accepts only canonical input, so encode(decode(b)) == b.
//
// # Group commit
//
// Writes (Enqueue/Save, Replace, Delete) are queued and committed in batches, one write
// transaction and one fdatasync per batch, without a background goroutine: a caller waiting
// for its write (Commit.Wait) becomes the leader when no commit is running, lets concurrent
// writers join (it yields once, or, when fewer ops are queued than the last commit carried plus
// those queued while it ran, waits for them up to Options.MaxCommitDelay and the last commit's
// own time: clients that each wait for their OK come back a round trip after their commit, and
// without the wait they split into two alternating half batches, each paying a sync; a wait
// that gathers nothing, as when a job's customer does not come back while a worker's claim
// commits, makes the next 1, 2, 4... up to 64 leaders that would wait commit at once), takes up
// to Options.MaxBatch queued operations, writes them in one transaction and wakes every waiter
// with its own result.
// Others wait for their result or for the running commit to end, and then perhaps lead the next.
// Inside the transaction duplicates are checked again against the ids DBI, which also holds the
// batch's earlier writes. If the transaction fails (MDB_MAP_FULL, say), its operations are
// retried one per transaction, so one bad operation cannot fail the others.
//
// Enqueue answers at once: ErrDuplicate when the id is stored (one short read), or a Commit. A
// pending set of the ids queued and not yet committed makes a second copy of a queued event get
// a Commit that is not Fresh; its Wait waits for the first copy's commit, so "stored" is never
// reported for a copy before the first copy is on disk. The environment is opened without
// MDB_WRITEMAP, so a commit writes its dirty pages and fdatasyncs.
//
// # Queries
//
// A query is planned once (plan.go): ids become direct lookups; else the single-letter tag
// filter with the fewest values becomes one 't' range per value; else authors×kinds (at most
// 1000 pairs) become 'K' ranges; else authors 'a', kinds 'k', or everything 'c'. Since and until
// bound every range. The ranges are merged by a heap of cursors stepping backwards; an event
// found in two ranges comes out twice in a row and is read once. Every visited index entry
// counts toward the scan budget (Limits.Scan).
//
// Results are copied out in chunks, at most Options.ChunkEvents events and Options.ChunkBytes
// bytes per read transaction. The transaction ends before the chunk is handed to emit, so a
// consumer that blocks (a client that stops reading) holds no reader slot and pins no pages. The
// next chunk resumes strictly below the last (created_at, serial) visited, so limits are exact
// and nothing is emitted twice. Read transactions take a token from a semaphore slightly
// smaller than Options.MaxReaders, so readers wait (with their context) instead of ever
// meeting MDB_READERS_FULL. Count walks the same ranges in the same short transactions, without
// reading events when the index alone answers the filter.
//
// # Closing
//
// Close refuses new operations with ErrClosed, commits what is queued, waits for read
// transactions (which are short) and closes the environment. It does not wait for a query
// whose emit is running: that query gets ErrClosed at its next chunk.
//
// # Migration from eventstore
//
// A data folder written by eventstore v0.16.2's LMDB backend shares the environment file: its
// DBIs ("settings", "raw", "created_at", "id", "kind", "pubkey", "pubkeyKind", "tag", "tag32",
// "tagaddr", "ptagKind", "hllCache") sit next to ours. When Open finds "raw" it decodes every
// record (legacy.go, a decoder written from the format) and stores it in this layout, 1000 per
// write transaction, in eventstore's order, recording the last copied key in meta with each
// batch so an interrupted migration resumes (ids already stored are skipped). Records that
// cannot be decoded are logged and skipped. Then eventstore's DBIs are dropped in one
// transaction. Opening a migrated folder again finds none of them and does nothing.
package store
