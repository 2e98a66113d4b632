//go:build libsecp256k1

package sigcheck

import (
	"fmt"

	"github.com/nbd-wtf/go-nostr"
)

// Verify returns nil when evt's signature is valid for its id and pubkey, an error wrapping
// ErrBadSignature when it is not, and another error when the pubkey or signature is malformed.
// With the libsecp256k1 build tag it is go-nostr's check, which calls libsecp256k1.
func (v *Verifier) Verify(evt *nostr.Event) error {
	if _, _, _, _, err := parse(evt); err != nil {
		return err
	}
	ok, err := evt.CheckSignature()
	switch {
	case err != nil:
		return err
	case !ok:
		return fmt.Errorf("%w", ErrBadSignature)
	}
	return nil
}
