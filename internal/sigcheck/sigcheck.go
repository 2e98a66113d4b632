// Package sigcheck verifies the Schnorr signatures (BIP-340) of Nostr events whose id has
// already been checked, faster than go-nostr's Event.CheckSignature does it on the default
// (pure Go, btcec) build:
//
//   - the message signed is the event id, so it is decoded from the checked id rather than
//     serialising and hashing the event a second time;
//   - the author's public key is lifted to a curve point once and kept in a bounded cache,
//     instead of twice per event (go-nostr parses it, then btcec's Verify serialises and parses
//     it again);
//   - a lone verification, with a core to spare, computes its two scalar multiplications in
//     parallel;
//   - a signature whose s is not below the group order is refused, as BIP-340 says (btcec
//     reduces it instead).
//
// The curve arithmetic is btcec's. With the libsecp256k1 build tag (cgo, Debian's
// libsecp256k1-dev) the same is done by libsecp256k1: lifted keys cached, the id verified.
package sigcheck

import (
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/nbd-wtf/go-nostr"
)

// DefaultCacheSize is how many public keys a Verifier keeps lifted when NewVerifier is given 0.
const DefaultCacheSize = 4096

// ErrBadSignature is wrapped by Verify's errors for a signature that does not verify.
var ErrBadSignature = errors.New("signature is invalid")

// Verifier checks event signatures; it is safe for concurrent use.
type Verifier struct {
	running    atomic.Int32 // verifications in progress
	sequential bool         // never split a verification across goroutines
	max        int
	mu         sync.RWMutex
	keys       map[[32]byte]pubKey
}

// NewVerifier returns a Verifier caching up to size public keys (DefaultCacheSize for 0). When
// the cache is full it starts over empty: the keys in use come back on their next event.
func NewVerifier(size int) *Verifier {
	if size <= 0 {
		size = DefaultCacheSize
	}
	return &Verifier{max: size, keys: make(map[[32]byte]pubKey)}
}

// NewSequentialVerifier is NewVerifier for a Verifier that does each verification on the
// calling goroutine, even a lone one with a core to spare: the least CPU time per signature
// (one key lift per distinct author while the cache holds it, one Schnorr verification), which
// the relay benchmarks use as their floor.
func NewSequentialVerifier(size int) *Verifier {
	v := NewVerifier(size)
	v.sequential = true
	return v
}

// CheckSignature reports whether evt's signature is valid for its id and pubkey, with
// go-nostr's Event.CheckSignature's meaning of the results: (false, err) for a malformed
// pubkey or signature, (false, nil) for one that does not verify. The caller must have checked
// evt's id (Event.CheckID): the signature is verified over it.
func (v *Verifier) CheckSignature(evt *nostr.Event) (bool, error) {
	err := v.Verify(evt)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, ErrBadSignature):
		return false, nil
	}
	return false, err
}

// Verify returns nil when evt's signature is valid for its id and pubkey, an error wrapping
// ErrBadSignature when it is not, and another error when the pubkey or signature is malformed.
// The caller must have checked evt's id: it is the message verified.
func (v *Verifier) Verify(evt *nostr.Event) error {
	msg, pk, r, s, err := parse(evt)
	if err != nil {
		return err
	}
	P, err := v.pubKey(pk)
	if err != nil {
		return err
	}
	return v.check(P, pk, r, s, msg)
}

// parse decodes evt's id (the message signed), pubkey and the signature's r and s.
func parse(evt *nostr.Event) (msg, pk, r, s [32]byte, err error) {
	if msg, err = decodeHex32(evt.ID, "id"); err != nil {
		return
	}
	if pk, err = decodeHex32(evt.PubKey, "pubkey"); err != nil {
		return
	}
	if len(evt.Sig) != 128 {
		err = fmt.Errorf("event signature %q is not 64 bytes of hex", evt.Sig)
		return
	}
	if r, err = decodeHex32(evt.Sig[:64], "signature"); err != nil {
		return
	}
	s, err = decodeHex32(evt.Sig[64:], "signature")
	return
}

// decodeHex32 decodes a 64-character hex string.
func decodeHex32(s, what string) (b [32]byte, err error) {
	if len(s) != 64 {
		return b, fmt.Errorf("event %s %q is not 32 bytes of hex", what, s)
	}
	if _, err := hex.Decode(b[:], []byte(s)); err != nil {
		return b, fmt.Errorf("event %s %q is not hex: %w", what, s, err)
	}
	return b, nil
}

// pubKey returns the lifted x-only key pk, lifting it (liftPubKey) on a cache miss.
func (v *Verifier) pubKey(pk [32]byte) (pubKey, error) {
	v.mu.RLock()
	p, ok := v.keys[pk]
	v.mu.RUnlock()
	if ok {
		return p, nil
	}
	p, err := liftPubKey(pk)
	if err != nil {
		return p, fmt.Errorf("event has invalid pubkey %x: %w", pk, err)
	}
	v.mu.Lock()
	if len(v.keys) >= v.max {
		clear(v.keys)
	}
	v.keys[pk] = p
	v.mu.Unlock()
	return p, nil
}
