//go:build libsecp256k1

package sigcheck

/*
#cgo pkg-config: libsecp256k1
#include <secp256k1.h>
#include <secp256k1_extrakeys.h>
#include <secp256k1_schnorrsig.h>
*/
import "C"

import (
	"errors"
	"fmt"
	"unsafe"
)

// secpContext is libsecp256k1's context for verification: created once, read-only after, safe
// to share between goroutines.
var secpContext = C.secp256k1_context_create(C.SECP256K1_CONTEXT_VERIFY)

// pubKey is a lifted x-only public key, in libsecp256k1's representation.
type pubKey = *C.secp256k1_xonly_pubkey

var errNotOnCurve = errors.New("x is not on the curve")

// liftPubKey lifts the x-only key pk with libsecp256k1.
func liftPubKey(pk [32]byte) (pubKey, error) {
	p := new(C.secp256k1_xonly_pubkey)
	if C.secp256k1_xonly_pubkey_parse(secpContext, p, (*C.uchar)(unsafe.Pointer(&pk[0]))) != 1 {
		return nil, errNotOnCurve
	}
	return p, nil
}

// check verifies the signature (r, s) of msg by P with secp256k1_schnorrsig_verify.
func (v *Verifier) check(P pubKey, _, r, s, msg [32]byte) error {
	var sig [64]byte
	copy(sig[:32], r[:])
	copy(sig[32:], s[:])
	if C.secp256k1_schnorrsig_verify(secpContext, (*C.uchar)(unsafe.Pointer(&sig[0])), (*C.uchar)(unsafe.Pointer(&msg[0])), 32, P) != 1 {
		return fmt.Errorf("%w", ErrBadSignature)
	}
	return nil
}
