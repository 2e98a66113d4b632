package store

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math"

	"github.com/nbd-wtf/go-nostr"
)

// formatVersion is the first byte of every encoded event, so a later format can live next to this one.
const formatVersion byte = 1

// fixedLen is the size of the version byte, id, pubkey and sig that open every encoded event.
const fixedLen = 1 + 32 + 32 + 64

// errCorrupt is what decoding bytes that no encoder wrote returns (wrapped with the reason).
var errCorrupt = errors.New("store: corrupt event encoding")

// parsed holds the raw bytes of an event's hex fields, parsed once when it is queued.
type parsed struct {
	id, pubkey [32]byte
	sig        [64]byte
}

// parseFields checks that evt's id, pubkey and sig are lowercase hex of the right length and
// that its kind fits the index (0 to 2^32-1).
func parseFields(evt *nostr.Event) (parsed, error) {
	var k parsed
	if evt == nil {
		return k, fmt.Errorf("%w: nil event", ErrInvalid)
	}
	if !parseHex(k.id[:], evt.ID) {
		return k, fmt.Errorf("%w: id %q is not 64 lowercase hex digits", ErrInvalid, clip(evt.ID))
	}
	if !parseHex(k.pubkey[:], evt.PubKey) {
		return k, fmt.Errorf("%w: pubkey %q is not 64 lowercase hex digits", ErrInvalid, clip(evt.PubKey))
	}
	if !parseHex(k.sig[:], evt.Sig) {
		return k, fmt.Errorf("%w: sig %q is not 128 lowercase hex digits", ErrInvalid, clip(evt.Sig))
	}
	if evt.Kind < 0 || evt.Kind > math.MaxUint32 {
		return k, fmt.Errorf("%w: kind %d out of range", ErrInvalid, evt.Kind)
	}
	return k, nil
}

// clip shortens s for an error message: a client may send a megabyte where an id belongs.
func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}

// parseHex decodes s into dst, accepting only lowercase hex of exactly 2*len(dst) digits:
// ids are compared as strings elsewhere (Filter.Matches), so "AB" and "ab" must not both pass.
func parseHex(dst []byte, s string) bool {
	if len(s) != 2*len(dst) {
		return false
	}
	for i := range dst {
		hi, ok1 := unhex(s[2*i])
		lo, ok2 := unhex(s[2*i+1])
		if !ok1 || !ok2 {
			return false
		}
		dst[i] = hi<<4 | lo
	}
	return true
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	}
	return 0, false
}

// encodedLen is the size encodeEvent will produce for evt.
func encodedLen(evt *nostr.Event) int {
	n := fixedLen + varintLen(int64(evt.CreatedAt)) + uvarintLen(uint64(evt.Kind))
	n += uvarintLen(uint64(len(evt.Content))) + len(evt.Content)
	n += uvarintLen(uint64(len(evt.Tags)))
	for _, tag := range evt.Tags {
		n += uvarintLen(uint64(len(tag)))
		for _, item := range tag {
			n += uvarintLen(uint64(len(item))) + len(item)
		}
	}
	return n
}

// encodeEvent writes evt in the store's format:
//
//	version(1) id(32) pubkey(32) sig(64) created_at(varint) kind(uvarint)
//	len(content)(uvarint) content  ntags(uvarint) { nitems(uvarint) { len(uvarint) item } }
//
// Lengths are varints, so nothing is capped at 65,535 the way eventstore's format was.
func encodeEvent(evt *nostr.Event, k parsed) []byte {
	buf := make([]byte, 0, encodedLen(evt))
	buf = append(buf, formatVersion)
	buf = append(buf, k.id[:]...)
	buf = append(buf, k.pubkey[:]...)
	buf = append(buf, k.sig[:]...)
	buf = binary.AppendVarint(buf, int64(evt.CreatedAt))
	buf = binary.AppendUvarint(buf, uint64(evt.Kind))
	buf = binary.AppendUvarint(buf, uint64(len(evt.Content)))
	buf = append(buf, evt.Content...)
	buf = binary.AppendUvarint(buf, uint64(len(evt.Tags)))
	for _, tag := range evt.Tags {
		buf = binary.AppendUvarint(buf, uint64(len(tag)))
		for _, item := range tag {
			buf = binary.AppendUvarint(buf, uint64(len(item)))
			buf = append(buf, item...)
		}
	}
	return buf
}

// decodeEvent parses what encodeEvent wrote. It copies everything out of b (b may be LMDB
// memory that goes away with its transaction) and never panics: counts are checked against
// the bytes left before anything is allocated for them. It accepts only canonical input (the
// shortest varints, no trailing bytes), so encodeEvent(decodeEvent(b)) == b.
//
// Queries decode every event they return, so allocations count: the three hex fields are
// slices of one string, and content and tag items are slices of one copy of the rest of b.
func decodeEvent(b []byte) (*nostr.Event, error) {
	if len(b) < fixedLen {
		return nil, fmt.Errorf("%w: %d bytes is shorter than the fixed header", errCorrupt, len(b))
	}
	if b[0] != formatVersion {
		return nil, fmt.Errorf("%w: unknown format version %d", errCorrupt, b[0])
	}
	var hexed [2 * (fixedLen - 1)]byte
	hex.Encode(hexed[:], b[1:fixedLen])
	h := string(hexed[:])
	evt := &nostr.Event{ID: h[:64], PubKey: h[64:128], Sig: h[128:]}

	r := reader{b: b, off: fixedLen, rest: string(b[fixedLen:])}
	evt.CreatedAt = nostr.Timestamp(r.varint())
	kind := r.uvarint()
	if kind > math.MaxUint32 {
		r.fail("kind out of range")
	}
	evt.Kind = int(kind)
	evt.Content = r.str(r.uvarint())
	evt.Tags = make(nostr.Tags, r.count())
	for i := range evt.Tags {
		tag := make(nostr.Tag, r.count())
		for j := range tag {
			tag[j] = r.str(r.uvarint())
		}
		evt.Tags[i] = tag
	}
	if r.err == nil && r.off != len(b) {
		r.fail("trailing bytes")
	}
	if r.err != nil {
		return nil, r.err
	}
	return evt, nil
}

// reader walks an encoded event; after the first error every read returns zero values.
type reader struct {
	b    []byte
	off  int
	err  error
	rest string // b[fixedLen:], copied once: strings read are slices of it
}

func (r *reader) fail(why string) {
	if r.err == nil {
		r.err = fmt.Errorf("%w: %s at byte %d", errCorrupt, why, r.off)
	}
	r.off = len(r.b)
}

func (r *reader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b[r.off:])
	if n <= 0 || n != uvarintLen(v) {
		r.fail("bad uvarint")
		return 0
	}
	r.off += n
	return v
}

func (r *reader) varint() int64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Varint(r.b[r.off:])
	if n <= 0 || n != varintLen(v) {
		r.fail("bad varint")
		return 0
	}
	r.off += n
	return v
}

// count reads a number of things that each take at least one more byte, so it can be no
// larger than what is left; that bounds the allocation a corrupt count could ask for.
func (r *reader) count() int {
	n := r.uvarint()
	if n > uint64(len(r.b)-r.off) {
		r.fail("count larger than the bytes left")
		return 0
	}
	return int(n)
}

// str reads n bytes as a string (a slice of rest).
func (r *reader) str(n uint64) string {
	if r.err != nil {
		return ""
	}
	if n > uint64(len(r.b)-r.off) {
		r.fail("length larger than the bytes left")
		return ""
	}
	at := r.off - fixedLen
	r.off += int(n)
	return r.rest[at : at+int(n)]
}

func uvarintLen(v uint64) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}

func varintLen(v int64) int {
	u := uint64(v) << 1
	if v < 0 {
		u = ^u
	}
	return uvarintLen(u)
}
