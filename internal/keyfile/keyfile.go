// Package keyfile keeps a Nostr secret key in a file readable by its owner only: created on
// first use, read as an nsec or hex after that. Its Key never prints the secret.
package keyfile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/nbd-wtf/go-nostr"
	"github.com/nbd-wtf/go-nostr/nip19"
)

// Key is a Nostr identity. Its String redacts the secret so it cannot reach a log.
type Key struct {
	secret string // hex
	PubKey string // hex
}

// String returns the public key only.
func (k Key) String() string { return "npub:" + k.PubKey }

// Sign signs evt with the key.
func (k Key) Sign(evt *nostr.Event) error { return evt.Sign(k.secret) }

// Secret returns the hex secret, for libraries that sign themselves. Never log it.
func (k Key) Secret() string { return k.secret }

// Npub is the public key in NIP-19 form.
func (k Key) Npub() string {
	npub, _ := nip19.EncodePublicKey(k.PubKey)
	return npub
}

// LoadOrCreate reads the secret key in path (an nsec or 64 hex characters). When the file
// does not exist it generates a key and saves it as an nsec, readable by the owner only.
// It reports whether the key is new.
func LoadOrCreate(path string) (Key, bool, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		sk := nostr.GeneratePrivateKey()
		nsec, err := nip19.EncodePrivateKey(sk)
		if err != nil {
			return Key{}, false, fmt.Errorf("encode new key: %w", err)
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return Key{}, false, fmt.Errorf("save new key: %w", err)
		}
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return Key{}, false, fmt.Errorf("save new key: %w", err)
		}
		_, werr := f.WriteString(nsec + "\n")
		if cerr := f.Close(); werr == nil {
			werr = cerr
		}
		if werr != nil {
			return Key{}, false, fmt.Errorf("save new key %s: %w", path, werr)
		}
		k, err := keyFrom(sk)
		return k, true, err
	}
	if err != nil {
		return Key{}, false, fmt.Errorf("read key: %w", err)
	}
	if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o077 != 0 {
		return Key{}, false, fmt.Errorf("key file %s is readable by others (mode %v): chmod 600 it", path, fi.Mode().Perm())
	}
	s := strings.TrimSpace(string(b))
	if strings.HasPrefix(s, "nsec1") {
		prefix, v, err := nip19.Decode(s)
		if err != nil || prefix != "nsec" {
			return Key{}, false, fmt.Errorf("key file %s: not a valid nsec", path)
		}
		s = v.(string)
	}
	k, err := keyFrom(s)
	if err != nil {
		return Key{}, false, fmt.Errorf("key file %s: %w", path, err)
	}
	return k, false, nil
}

func keyFrom(sk string) (Key, error) {
	if !nostr.IsValid32ByteHex(sk) {
		return Key{}, errors.New("secret key is not an nsec or 64 hex characters")
	}
	pk, err := nostr.GetPublicKey(sk)
	if err != nil {
		return Key{}, fmt.Errorf("derive public key: %w", err)
	}
	return Key{secret: sk, PubKey: pk}, nil
}
