package store

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"slices"

	"github.com/nbd-wtf/go-nostr"
)

// Index key prefixes (the first byte of every key in the index DBI).
const (
	byCreated    = 'c' // 'c' ts8 serial8
	byKind       = 'k' // 'k' kind4 ts8 serial8
	byAuthor     = 'a' // 'a' pubkey32 ts8 serial8
	byAuthorKind = 'K' // 'K' pubkey32 kind4 ts8 serial8
	byTag        = 't' // 't' hash8(letter, value) ts8 serial8
)

// pos is where an event sits in every index range: its created_at (sign bit flipped, so
// unsigned order is time order for negative timestamps too) and its serial. Serials are
// unique, so pos orders all events totally, the same way in every range.
type pos struct {
	ts, serial uint64
}

func (p pos) less(q pos) bool {
	return p.ts < q.ts || (p.ts == q.ts && p.serial < q.serial)
}

// tsKey maps created_at to an unsigned value with the same order.
func tsKey(t nostr.Timestamp) uint64 { return uint64(t) ^ 1<<63 }

// appendPos appends ts8 serial8 to a range prefix.
func appendPos(prefix []byte, p pos) []byte {
	prefix = binary.BigEndian.AppendUint64(prefix, p.ts)
	return binary.BigEndian.AppendUint64(prefix, p.serial)
}

// readPos reads the pos at the end of an index key whose prefix is n bytes long.
func readPos(key []byte, n int) (pos, bool) {
	if len(key) != n+16 {
		return pos{}, false
	}
	return pos{
		ts:     binary.BigEndian.Uint64(key[n:]),
		serial: binary.BigEndian.Uint64(key[n+8:]),
	}, true
}

func serialKey(serial uint64) []byte { return binary.BigEndian.AppendUint64(nil, serial) }

// idValue is what the ids DBI maps an id to: serial8 ts8, so an ids query can sort its
// candidates without reading the events.
func idValue(p pos) []byte {
	v := binary.BigEndian.AppendUint64(make([]byte, 0, 16), p.serial)
	return binary.BigEndian.AppendUint64(v, p.ts)
}

func readIDValue(v []byte) (pos, bool) {
	if len(v) != 16 {
		return pos{}, false
	}
	return pos{serial: binary.BigEndian.Uint64(v), ts: binary.BigEndian.Uint64(v[8:])}, true
}

// The range prefixes, one function per index.

func kindPrefix(kind uint32) []byte {
	return binary.BigEndian.AppendUint32([]byte{byKind}, kind)
}

func authorPrefix(pk [32]byte) []byte {
	return append([]byte{byAuthor}, pk[:]...)
}

func authorKindPrefix(pk [32]byte, kind uint32) []byte {
	return binary.BigEndian.AppendUint32(append([]byte{byAuthorKind}, pk[:]...), kind)
}

// tagPrefix hashes the tag so that a value of any length (LMDB keys stop at 511 bytes) gets a
// fixed-size key. The letter is one byte and the 0 after it keeps letter and value apart.
// Eight bytes can collide, and could be made to on purpose; every match is checked against the
// event itself, so a collision costs a wasted read, never a wrong answer.
func tagPrefix(letter byte, value string) []byte {
	buf := make([]byte, 0, 2+len(value))
	buf = append(buf, letter, 0)
	buf = append(buf, value...)
	sum := sha256.Sum256(buf)
	return append([]byte{byTag}, sum[:8]...)
}

// indexKeys lists every index key of evt at p. Tags are indexed when their name is one byte
// and they have a value (NIP-01 filters on single-letter tags by their first value).
func indexKeys(evt *nostr.Event, pk [32]byte, p pos) [][]byte {
	kind := uint32(evt.Kind)
	keys := [][]byte{
		appendPos([]byte{byCreated}, p),
		appendPos(kindPrefix(kind), p),
		appendPos(authorPrefix(pk), p),
		appendPos(authorKindPrefix(pk, kind), p),
	}
	// an event may repeat a tag; one entry finds it. A few tag keys are compared one by one,
	// more through a map, so that an event of thousands of tags stays linear.
	tags := len(keys)
	var seen map[string]bool
	for _, tag := range evt.Tags {
		if len(tag) < 2 || len(tag[0]) != 1 {
			continue
		}
		prefix := tagPrefix(tag[0][0], tag[1])
		if seen == nil && len(keys)-tags >= 16 {
			seen = make(map[string]bool, len(evt.Tags))
			for _, k := range keys[tags:] {
				seen[string(k[:len(prefix)])] = true
			}
		}
		if seen != nil {
			if seen[string(prefix)] {
				continue
			}
			seen[string(prefix)] = true
		} else if slices.ContainsFunc(keys[tags:], func(k []byte) bool { return bytes.HasPrefix(k, prefix) }) {
			continue
		}
		keys = append(keys, appendPos(prefix, p))
	}
	return keys
}
