package sigcheck

import (
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/nbd-wtf/go-nostr"
)

func signed(t testing.TB, sk string, content string) nostr.Event {
	t.Helper()
	evt := nostr.Event{Kind: 5000, CreatedAt: 1700000000, Content: content, Tags: nostr.Tags{{"i", "x", "text"}}}
	if err := evt.Sign(sk); err != nil {
		t.Fatal(err)
	}
	return evt
}

// withID recomputes evt's id after a change, so that only the signature is wrong.
func withID(evt nostr.Event) nostr.Event {
	evt.ID = evt.GetID()
	return evt
}

// n is the order of secp256k1's group; p its field prime.
const (
	n = "fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141"
	p = "fffffffffffffffffffffffffffffffffffffffffffffffffffffffefffffc2f"
)

func TestVerify(t *testing.T) {
	sk := nostr.GeneratePrivateKey()
	good := signed(t, sk, "hello")
	other := signed(t, nostr.GeneratePrivateKey(), "hello")
	tampered := good
	tampered.Content = "hullo"
	tampered = withID(tampered)
	flipped := good
	flipped.Sig = good.Sig[:127] + string("01"[1-strings.IndexByte("01", good.Sig[127]%2+'0')])
	wrongKey := good
	wrongKey.PubKey = other.PubKey
	wrongKey = withID(wrongKey)
	highS := good
	highS.Sig = good.Sig[:64] + n // s = n
	highR := good
	highR.Sig = p + good.Sig[64:] // r = p
	offCurve := good
	offCurve.PubKey = strings.Repeat("0", 63) + "5" // x = 5: x³+7 is not a square
	offCurve = withID(offCurve)
	shortSig := good
	shortSig.Sig = good.Sig[:126]
	badHex := good
	badHex.Sig = "zz" + good.Sig[2:]

	for _, tc := range []struct {
		name string
		evt  nostr.Event
		ok   bool
		bad  bool // the signature does not verify (rather than being malformed)
	}{
		{"valid", good, true, false},
		{"valid, other key", other, true, false},
		{"content changed, id recomputed", tampered, false, true},
		{"one signature bit flipped", flipped, false, true},
		{"someone else's pubkey", wrongKey, false, true},
		{"s not below the group order", highS, false, true},
		{"r not below the field prime", highR, false, true},
		{"pubkey not on the curve", offCurve, false, false},
		{"signature too short", shortSig, false, false},
		{"signature not hex", badHex, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, v := range []*Verifier{NewVerifier(0), NewSequentialVerifier(0)} {
				for range 2 { // a second time with the key cached
					err := v.Verify(&tc.evt)
					if (err == nil) != tc.ok || errors.Is(err, ErrBadSignature) != tc.bad {
						t.Fatalf("Verify (sequential %v): %v, want ok=%v bad-signature=%v", v.sequential, err, tc.ok, tc.bad)
					}
					ok, cerr := v.CheckSignature(&tc.evt)
					if ok != tc.ok || (cerr != nil) != (!tc.ok && !tc.bad) {
						t.Fatalf("CheckSignature (sequential %v): %v %v", v.sequential, ok, cerr)
					}
				}
			}
		})
	}
}

// The cache stays within its size and keys evicted from it still verify.
func TestCacheBounded(t *testing.T) {
	v := NewVerifier(3)
	for i := range 10 {
		evt := signed(t, nostr.GeneratePrivateKey(), fmt.Sprint(i))
		if err := v.Verify(&evt); err != nil {
			t.Fatal(err)
		}
		if len(v.keys) > 3 {
			t.Fatalf("cache holds %d keys, limit 3", len(v.keys))
		}
	}
}

// FuzzVerifyMatchesGoNostr mutates a signed event's fields and checks that Verify agrees with
// go-nostr's CheckSignature, except where BIP-340 refuses an s at or above the group order,
// which btcec (and so go-nostr) reduces instead.
func FuzzVerifyMatchesGoNostr(f *testing.F) {
	sk := "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90"
	evt := signed(f, sk, "seed")
	f.Add(evt.Content, evt.PubKey, evt.Sig, uint8(0))
	f.Add("changed", evt.PubKey, evt.Sig, uint8(1))
	f.Add(evt.Content, strings.Repeat("f", 64), evt.Sig, uint8(0))
	f.Add(evt.Content, evt.PubKey, evt.Sig[:64]+n, uint8(0))
	f.Add(evt.Content, evt.PubKey, p+evt.Sig[64:], uint8(0))
	v := NewVerifier(0)
	f.Fuzz(func(t *testing.T, content, pubkey, sig string, flip uint8) {
		e := evt
		e.Content, e.PubKey, e.Sig = content, pubkey, sig
		if flip%2 == 1 && len(e.Sig) > 0 {
			e.Sig = e.Sig[:len(e.Sig)-1] + string(e.Sig[len(e.Sig)-1]^1)
		}
		e.ID = e.GetID()
		theirs, _ := e.CheckSignature()
		err := v.Verify(&e)
		if (err == nil) == theirs {
			return
		}
		if theirs && err != nil && highS(e.Sig) {
			return // BIP-340 refuses s >= n; btcec reduces it
		}
		t.Fatalf("Verify: %v; go-nostr's CheckSignature: %v (pubkey %q sig %q)", err, theirs, e.PubKey, e.Sig)
	})
}

func highS(sig string) bool {
	if len(sig) != 128 {
		return false
	}
	s, err := hex.DecodeString(sig[64:])
	return err == nil && strings.Compare(hex.EncodeToString(s), n) >= 0
}

// BenchmarkVerify compares Verify, with the key cached, with go-nostr's CheckSignature on the
// same events.
func BenchmarkVerify(b *testing.B) {
	sk := nostr.GeneratePrivateKey()
	events := make([]nostr.Event, 64)
	for i := range events {
		events[i] = signed(b, sk, fmt.Sprint(i))
	}
	b.Run("sigcheck", func(b *testing.B) {
		v := NewVerifier(0)
		i := 0
		for b.Loop() {
			if err := v.Verify(&events[i%len(events)]); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
	b.Run("go-nostr", func(b *testing.B) {
		i := 0
		for b.Loop() {
			if ok, err := events[i%len(events)].CheckSignature(); !ok || err != nil {
				b.Fatal(ok, err)
			}
			i++
		}
	})
}
