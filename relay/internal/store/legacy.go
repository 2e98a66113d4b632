package store

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/nbd-wtf/go-nostr"
)

// errLegacyCorrupt is what decodeLegacy returns (wrapped with the reason) for bytes
// eventstore could not have written.
var errLegacyCorrupt = errors.New("store: corrupt eventstore record")

// decodeLegacy reads an event in the binary format of eventstore v0.16.2's LMDB backend (its
// internal/binary package), which a relay's data folder holds until it is migrated:
//
//	id(32) pubkey(32) sig(64) created_at(u32) kind(u16) len(content)(u16) content
//	ntags(u16) { nitems(u8) { len(u16) item 0x00 } }
//
// all big-endian. eventstore's reader skips the 0x00 after an item only when something follows,
// and ignores trailing bytes; so does this one, which is written from the format, not from
// eventstore's code, and checks every length against the bytes left, so it never panics.
func decodeLegacy(b []byte) (*nostr.Event, error) {
	const head = 32 + 32 + 64 + 4 + 2 + 2
	if len(b) < head {
		return nil, fmt.Errorf("%w: %d bytes is shorter than the fixed header", errLegacyCorrupt, len(b))
	}
	evt := &nostr.Event{
		ID:        hex.EncodeToString(b[0:32]),
		PubKey:    hex.EncodeToString(b[32:64]),
		Sig:       hex.EncodeToString(b[64:128]),
		CreatedAt: nostr.Timestamp(binary.BigEndian.Uint32(b[128:132])),
		Kind:      int(binary.BigEndian.Uint16(b[132:134])),
	}
	r := legacyReader{b: b, off: head}
	evt.Content = string(r.take(int(binary.BigEndian.Uint16(b[134:136]))))
	ntags := r.u16()
	if ntags > len(b)-r.off { // every tag takes at least its item count byte
		r.fail("more tags than bytes left")
	}
	evt.Tags = make(nostr.Tags, 0, ntags)
	for range ntags {
		if r.err != nil {
			break
		}
		r.skipTerminator()
		n := r.u8()
		tag := make(nostr.Tag, 0, n)
		for range n {
			r.skipTerminator()
			item := r.take(r.u16())
			if r.err != nil {
				break
			}
			tag = append(tag, string(item))
			r.terminated = true
		}
		evt.Tags = append(evt.Tags, tag)
	}
	if r.err != nil {
		return nil, r.err
	}
	return evt, nil
}

// legacyReader walks a legacy record; after the first error every read returns zero values.
type legacyReader struct {
	b   []byte
	off int
	err error
	// terminated: an item was just read, and its 0x00 terminator is skipped before whatever
	// comes next
	terminated bool
}

func (r *legacyReader) fail(why string) {
	if r.err == nil {
		r.err = fmt.Errorf("%w: %s at byte %d", errLegacyCorrupt, why, r.off)
	}
	r.off = len(r.b)
}

func (r *legacyReader) skipTerminator() {
	if r.terminated {
		r.terminated = false
		r.take(1)
	}
}

func (r *legacyReader) take(n int) []byte {
	if r.err != nil {
		return nil
	}
	if n > len(r.b)-r.off {
		r.fail("length larger than the bytes left")
		return nil
	}
	s := r.b[r.off : r.off+n]
	r.off += n
	return s
}

func (r *legacyReader) u8() int {
	if s := r.take(1); s != nil {
		return int(s[0])
	}
	return 0
}

func (r *legacyReader) u16() int {
	if s := r.take(2); s != nil {
		return int(binary.BigEndian.Uint16(s))
	}
	return 0
}
