//go:build !libsecp256k1

package sigcheck

import (
	"fmt"
	"runtime"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/btcsuite/btcd/chaincfg/chainhash"
)

// pubKey is a lifted x-only public key: a curve point.
type pubKey = *btcec.PublicKey

// liftPubKey lifts the x-only key pk to the curve point with an even y (BIP-340).
func liftPubKey(pk [32]byte) (pubKey, error) {
	var compressed [33]byte
	compressed[0] = 0x02
	copy(compressed[1:], pk[:])
	return btcec.ParsePubKey(compressed[:])
}

// check verifies the signature (r, s) of msg by P, the lifted key pk. When this is the only
// verification running and there is a spare core, the two scalar multiplications run in
// parallel: that cuts a lone event's latency by about a third. Under load (ingest) the cores
// are busy anyway, and a goroutine would only cost. A sequential Verifier never splits.
func (v *Verifier) check(P pubKey, pk, r, s, msg [32]byte) error {
	split := v.running.Add(1) == 1 && !v.sequential && runtime.GOMAXPROCS(0) > 1
	defer v.running.Add(-1)
	return verify(P, pk, r, s, msg, split)
}

// verify is BIP-340's verification of the signature (r, s) of msg by the key P, whose x-only
// encoding is pk, with btcec's arithmetic, step for step as btcec's schnorrVerify; with split,
// s*G is computed on another goroutine while this one computes e*P.
func verify(P *btcec.PublicKey, pk, rb, sb, msg [32]byte, split bool) error {
	var r btcec.FieldVal
	if r.SetBytes(&rb) != 0 { // r >= p
		return fmt.Errorf("%w: r is not below the field prime", ErrBadSignature)
	}
	var s btcec.ModNScalar
	if s.SetBytes(&sb) != 0 { // s >= n
		return fmt.Errorf("%w: s is not below the group order", ErrBadSignature)
	}
	// e = int(tagged_hash("BIP0340/challenge", bytes(r) || bytes(P) || m)) mod n, negated so
	// that R = s*G + (-e)*P
	commitment := chainhash.TaggedHash(chainhash.TagBIP0340Challenge, rb[:], pk[:], msg[:])
	var e btcec.ModNScalar
	e.SetBytes((*[32]byte)(commitment))
	e.Negate()
	var jP, R, sG, eP btcec.JacobianPoint
	P.AsJacobian(&jP)
	if split {
		done := make(chan struct{})
		go func() {
			btcec.ScalarBaseMultNonConst(&s, &sG)
			close(done)
		}()
		btcec.ScalarMultNonConst(&e, &jP, &eP)
		<-done
	} else {
		btcec.ScalarBaseMultNonConst(&s, &sG)
		btcec.ScalarMultNonConst(&e, &jP, &eP)
	}
	btcec.AddNonConst(&sG, &eP, &R)
	if (R.X.IsZero() && R.Y.IsZero()) || R.Z.IsZero() {
		return fmt.Errorf("%w: R is the point at infinity", ErrBadSignature)
	}
	R.ToAffine()
	if R.Y.IsOdd() {
		return fmt.Errorf("%w: R has an odd y", ErrBadSignature)
	}
	if !r.Equals(&R.X) {
		return fmt.Errorf("%w: R's x is not r", ErrBadSignature)
	}
	return nil
}
