package nip47

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"github.com/nbd-wtf/go-nostr"
	"github.com/nbd-wtf/go-nostr/nip04"
	"github.com/nbd-wtf/go-nostr/nip44"
)

// Errors of the encryption helpers. Key derivation and signing errors from go-nostr are never
// wrapped: some of them quote the secret key.
var (
	errKey        = errors.New("nip47: invalid key")
	errUnknownEnc = errors.New("nip47: unknown encryption")
	errDecrypt    = errors.New("nip47: cannot decrypt")
)

// encrypt seals plaintext from secret key sk to peer pubkey with scheme.
func encrypt(scheme, sk, peer, plaintext string) (string, error) {
	switch scheme {
	case EncryptionNIP44:
		ck, err := nip44.GenerateConversationKey(peer, sk)
		if err != nil {
			return "", errKey
		}
		ct, err := nip44.Encrypt(plaintext, ck)
		if err != nil {
			return "", fmt.Errorf("nip47: nip44 encrypt: %w", err) // e.g. plaintext over 64 KiB
		}
		return ct, nil
	case EncryptionNIP04:
		key, err := nip04.ComputeSharedSecret(peer, sk)
		if err != nil {
			return "", errKey
		}
		return nip04.Encrypt(plaintext, key)
	}
	return "", fmt.Errorf("%w %q", errUnknownEnc, scheme)
}

// decrypt opens ciphertext sent by peer to secret key sk with scheme. The ciphertext comes
// from anyone on the relay, so it is checked before go-nostr's nip04 sees it: that one
// panics on an IV that is not 16 bytes or a ciphertext that is not whole blocks.
func decrypt(scheme, sk, peer, ciphertext string) (string, error) {
	switch scheme {
	case EncryptionNIP44:
		ck, err := nip44.GenerateConversationKey(peer, sk)
		if err != nil {
			return "", errKey
		}
		pt, err := nip44.Decrypt(ciphertext, ck)
		if err != nil {
			return "", errDecrypt
		}
		return pt, nil
	case EncryptionNIP04:
		if !wellFormed04(ciphertext) {
			return "", errDecrypt
		}
		key, err := nip04.ComputeSharedSecret(peer, sk)
		if err != nil {
			return "", errKey
		}
		pt, err := nip04.Decrypt(ciphertext, key)
		if err != nil {
			return "", errDecrypt
		}
		return pt, nil
	}
	return "", fmt.Errorf("%w %q", errUnknownEnc, scheme)
}

// wellFormed04 reports whether s is base64(ciphertext) + "?iv=" + base64(16-byte IV) with a
// ciphertext of whole AES blocks.
func wellFormed04(s string) bool {
	ct64, iv64, ok := strings.Cut(s, "?iv=")
	if !ok || strings.Contains(iv64, "?iv=") {
		return false
	}
	ct, err1 := base64.StdEncoding.DecodeString(ct64)
	iv, err2 := base64.StdEncoding.DecodeString(iv64)
	return err1 == nil && err2 == nil && len(iv) == 16 && len(ct) > 0 && len(ct)%16 == 0
}

// sign sets evt's pubkey, id and signature.
func sign(evt *nostr.Event, sk string) error {
	if validKey(sk) != "" {
		return errKey
	}
	if err := evt.Sign(sk); err != nil {
		return errKey
	}
	return nil
}

// verified reports whether evt's id and signature are right.
func verified(evt *nostr.Event) bool {
	if !evt.CheckID() {
		return false
	}
	ok, err := evt.CheckSignature()
	return ok && err == nil
}
