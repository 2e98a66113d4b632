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

	"github.com/nbd-wtf/go-nostr"
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

// Verify returns nil when evt's signature is valid for its id and pubkey, an error wrapping
// ErrBadSignature when it is not, and another error when the pubkey or signature is malformed.
// The caller must have checked evt's id. With the libsecp256k1 build tag, libsecp256k1 verifies
// (secp256k1_schnorrsig_verify over the id), with the lifted key cached.
func (v *Verifier) Verify(evt *nostr.Event) error {
	msg, pk, r, s, err := parse(evt)
	if err != nil {
		return err
	}
	P, err := v.pubKey(pk)
	if err != nil {
		return err
	}
	var sig [64]byte
	copy(sig[:32], r[:])
	copy(sig[32:], s[:])
	if C.secp256k1_schnorrsig_verify(secpContext, (*C.uchar)(unsafe.Pointer(&sig[0])), (*C.uchar)(unsafe.Pointer(&msg[0])), 32, P) != 1 {
		return fmt.Errorf("%w", ErrBadSignature)
	}
	return nil
}
