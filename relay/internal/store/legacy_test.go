package store

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	"github.com/nbd-wtf/go-nostr"
)

// legacyEncode writes evt the way eventstore v0.16.2 did (see decodeLegacy), for tests.
func legacyEncode(evt *nostr.Event) []byte {
	var b []byte
	for _, h := range []string{evt.ID, evt.PubKey, evt.Sig} {
		raw, _ := hex.DecodeString(h)
		b = append(b, raw...)
	}
	b = binary.BigEndian.AppendUint32(b, uint32(evt.CreatedAt))
	b = binary.BigEndian.AppendUint16(b, uint16(evt.Kind))
	b = binary.BigEndian.AppendUint16(b, uint16(len(evt.Content)))
	b = append(b, evt.Content...)
	b = binary.BigEndian.AppendUint16(b, uint16(len(evt.Tags)))
	for _, tag := range evt.Tags {
		b = append(b, uint8(len(tag)))
		for _, item := range tag {
			b = binary.BigEndian.AppendUint16(b, uint16(len(item)))
			b = append(b, item...)
			b = append(b, 0)
		}
	}
	return b
}

var legacyTests = []struct {
	name string
	evt  *nostr.Event
}{
	{"no tags", mkEvent(pkA, 1, 1700000000, "hello")},
	{"tags", mkEvent(pkB, 30023, 1, "x", nostr.Tag{"d", "post"}, nostr.Tag{"e", hexOf("e"), "wss://r"})},
	{"empty tags", mkEvent(pkA, 1, 2, "", nostr.Tag{}, nostr.Tag{"t"}, nostr.Tag{})},
	{"content near 64 KiB", mkEvent(pkA, 1, 3, strings.Repeat("c", 65535))},
	{"max kind and created_at", mkEvent(pkA, 65535, 1<<32-1, "")},
}

func TestDecodeLegacy(t *testing.T) {
	for _, tc := range legacyTests {
		t.Run(tc.name, func(t *testing.T) {
			b := legacyEncode(tc.evt)
			got, err := decodeLegacy(b)
			if err != nil {
				t.Fatal(err)
			}
			if !sameEvent(got, tc.evt) {
				t.Fatalf("decoded %v, want %v", got, tc.evt)
			}
			// eventstore did not read the last terminator, so it need not be there
			if len(tc.evt.Tags) > 0 && len(tc.evt.Tags[len(tc.evt.Tags)-1]) > 0 {
				if got, err := decodeLegacy(b[:len(b)-1]); err != nil || !sameEvent(got, tc.evt) {
					t.Fatalf("without the last terminator: %v, %v", got, err)
				}
			}
		})
	}
}

func TestDecodeLegacyRejects(t *testing.T) {
	good := legacyEncode(legacyTests[1].evt)
	tests := []struct {
		name string
		in   []byte
	}{
		{"empty", nil},
		{"short header", good[:135]},
		{"content past the end", good[:137]},
		{"missing tag count", good[:136+1]},
		{"tags cut short", good[:len(good)-6]},
		{"too many tags", append(append([]byte{}, good[:136+1]...), 0xff, 0xff, 1)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if evt, err := decodeLegacy(tc.in); !errors.Is(err, errLegacyCorrupt) {
				t.Fatalf("decode = %v, %v; want errLegacyCorrupt", evt, err)
			}
		})
	}
}

func FuzzLegacyDecode(f *testing.F) {
	for _, tc := range legacyTests {
		if b := legacyEncode(tc.evt); len(b) < 4096 {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		evt, err := decodeLegacy(b)
		if err != nil {
			return // refusing is fine; panicking is not
		}
		// what it reads, the store can hold and read back
		k, err := parseFields(evt)
		if err != nil {
			t.Fatalf("decoded an event the store refuses: %v", err)
		}
		again, err := decodeEvent(encodeEvent(evt, k))
		if err != nil || !sameEvent(again, evt) {
			t.Fatalf("store round trip: %v, %v", again, err)
		}
	})
}
