package store

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/nbd-wtf/go-nostr"
)

var (
	pkA = hexOf("a")
	pkB = hexOf("b")
)

// encodeTests are events that must survive encoding; they also seed FuzzDecode.
var encodeTests = []struct {
	name string
	evt  *nostr.Event
}{
	{"empty", mkEvent(pkA, 1, 0, "")},
	{"negative created_at", mkEvent(pkA, 1, -1700000000, "before 1970")},
	{"large created_at", mkEvent(pkA, 1, 1<<62, "far future")},
	{"kind 0", mkEvent(pkA, 0, 1, `{"name":"a"}`)},
	{"max kind", mkEvent(pkA, 1<<32-1, 1, "")},
	{"tags", mkEvent(pkB, 7000, 1700000000, "ok",
		nostr.Tag{"e", hexOf("x"), "wss://relay", "root"}, nostr.Tag{"p", pkA}, nostr.Tag{"t"}, nostr.Tag{})},
	{"content over 64 KiB", mkEvent(pkA, 1, 5, strings.Repeat("x", 200_000))},
	{"tag value over 64 KiB", mkEvent(pkA, 1, 5, "", nostr.Tag{"x", strings.Repeat("y", 200_000)})},
	{"binary content", mkEvent(pkA, 1, 5, "\x00\xff\x80")},
}

func TestEncodeDecode(t *testing.T) {
	for _, tc := range encodeTests {
		t.Run(tc.name, func(t *testing.T) {
			k, err := parseFields(tc.evt)
			if err != nil {
				t.Fatal(err)
			}
			b := encodeEvent(tc.evt, k)
			if len(b) != encodedLen(tc.evt) {
				t.Errorf("encoded %d bytes, encodedLen says %d", len(b), encodedLen(tc.evt))
			}
			got, err := decodeEvent(b)
			if err != nil {
				t.Fatal(err)
			}
			if !sameEvent(got, tc.evt) {
				t.Fatalf("decoded %v, want %v", got, tc.evt)
			}
		})
	}
}

func TestParseFields(t *testing.T) {
	good := mkEvent(pkA, 1, 1, "")
	with := func(change func(e *nostr.Event)) *nostr.Event {
		e := *good
		change(&e)
		return &e
	}
	tests := []struct {
		name    string
		evt     *nostr.Event
		wantErr error
	}{
		{"good", good, nil},
		{"nil", nil, ErrInvalid},
		{"uppercase id", with(func(e *nostr.Event) { e.ID = strings.ToUpper(e.ID) }), ErrInvalid},
		{"short id", with(func(e *nostr.Event) { e.ID = e.ID[2:] }), ErrInvalid},
		{"long pubkey", with(func(e *nostr.Event) { e.PubKey += "00" }), ErrInvalid},
		{"non-hex sig", with(func(e *nostr.Event) { e.Sig = "zz" + e.Sig[2:] }), ErrInvalid},
		{"empty sig", with(func(e *nostr.Event) { e.Sig = "" }), ErrInvalid},
		{"negative kind", with(func(e *nostr.Event) { e.Kind = -1 }), ErrInvalid},
		{"kind over 32 bits", with(func(e *nostr.Event) { e.Kind = 1 << 32 }), ErrInvalid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseFields(tc.evt)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
		})
	}
}

func TestDecodeRejects(t *testing.T) {
	k, _ := parseFields(encodeTests[5].evt)
	good := encodeEvent(encodeTests[5].evt, k)
	tests := []struct {
		name string
		in   []byte
	}{
		{"empty", nil},
		{"header only, short", good[:fixedLen-1]},
		{"header only", good[:fixedLen]},
		{"unknown version", append([]byte{2}, good[1:]...)},
		{"truncated", good[:len(good)-1]},
		{"trailing byte", append(bytes.Clone(good), 0)},
		{"overlong varint", append(append(bytes.Clone(good[:fixedLen]), 0x80, 0x00), good[fixedLen+1:]...)},
		{"huge tag count", append(bytes.Clone(good[:fixedLen]), 2, 1, 0, 0xff, 0xff, 0xff, 0xff, 0x0f)},
		{"kind over 32 bits", append(bytes.Clone(good[:fixedLen]), 2, 0x80, 0x80, 0x80, 0x80, 0x10, 0, 0)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if evt, err := decodeEvent(tc.in); !errors.Is(err, errCorrupt) {
				t.Fatalf("decode = %v, %v; want errCorrupt", evt, err)
			}
		})
	}
}

func FuzzDecode(f *testing.F) {
	for _, tc := range encodeTests {
		k, _ := parseFields(tc.evt)
		if b := encodeEvent(tc.evt, k); len(b) < 4096 {
			f.Add(b)
		}
	}
	f.Add([]byte{formatVersion})
	f.Fuzz(func(t *testing.T, b []byte) {
		evt, err := decodeEvent(b)
		if err != nil {
			return // refusing is fine; panicking is not
		}
		k, err := parseFields(evt)
		if err != nil {
			t.Fatalf("decoded an event that does not parse: %v", err)
		}
		if again := encodeEvent(evt, k); !bytes.Equal(again, b) {
			t.Fatalf("re-encoding changed the bytes:\n in  %x\n out %x", b, again)
		}
	})
}

// TestIndexKeysOnePerTag: indexKeys lists the four fixed keys and one key per distinct
// single-letter tag with a value, whether an event repeats its tags a few times or, past the
// linear scan, many.
func TestIndexKeysOnePerTag(t *testing.T) {
	tagged := func(distinct, copies int) nostr.Tags {
		var tags nostr.Tags
		for c := range copies {
			for i := range distinct {
				tags = append(tags, nostr.Tag{"t", fmt.Sprint("v", i)})
				if c == 0 && i%3 == 0 {
					tags = append(tags, nostr.Tag{"e"}, nostr.Tag{"long", "x"}) // not indexed
				}
			}
		}
		return tags
	}
	tests := []struct {
		name             string
		distinct, copies int
	}{
		{"no tags", 0, 1},
		{"one", 1, 1},
		{"repeated", 3, 4},
		{"at the switch", 16, 2},
		{"many", 100, 3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			evt := mkEvent(pkA, 1, 1, "x")
			evt.Tags = tagged(tc.distinct, tc.copies)
			keys := indexKeys(evt, [32]byte{1}, pos{ts: 1, serial: 2})
			if len(keys) != 4+tc.distinct {
				t.Fatalf("%d keys, want %d", len(keys), 4+tc.distinct)
			}
			for i := range tc.distinct {
				prefix := tagPrefix('t', fmt.Sprint("v", i))
				n := 0
				for _, k := range keys {
					if bytes.HasPrefix(k, prefix) {
						n++
					}
				}
				if n != 1 {
					t.Fatalf("tag v%d has %d keys", i, n)
				}
			}
		})
	}
}
