//go:build !libsecp256k1

package sigcheck

import (
	"testing"

	"github.com/nbd-wtf/go-nostr"
)

// Both ways of computing R (the scalar multiplications in parallel for a lone verification,
// one after the other under concurrency) give the same answers.
func TestVerifySplitAndSequential(t *testing.T) {
	sk := nostr.GeneratePrivateKey()
	good := signed(t, sk, "hello")
	bad := good
	bad.Content = "changed"
	bad = withID(bad)
	for _, evt := range []nostr.Event{good, bad} {
		msg, pk, r, s, err := parse(&evt)
		if err != nil {
			t.Fatal(err)
		}
		P, err := NewVerifier(0).pubKey(pk)
		if err != nil {
			t.Fatal(err)
		}
		split, seq := verify(P, pk, r, s, msg, true), verify(P, pk, r, s, msg, false)
		if (split == nil) != (evt.ID == good.ID) || (seq == nil) != (split == nil) {
			t.Fatalf("event %s: split %v, sequential %v", evt.ID, split, seq)
		}
	}
}
