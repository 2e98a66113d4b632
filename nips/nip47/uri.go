package nip47

import (
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/nbd-wtf/go-nostr"
)

// Scheme is the connection URI's scheme.
const Scheme = "nostr+walletconnect"

// Sentinel errors of ParseURI. None of their wrapping texts quotes the secret.
var (
	ErrBadScheme = errors.New("nip47: not a nostr+walletconnect:// URI")
	ErrBadURI    = errors.New("nip47: malformed connection URI")
	ErrBadPubKey = errors.New("nip47: bad wallet pubkey")
	ErrNoRelay   = errors.New("nip47: connection URI has no relay")
	ErrBadRelay  = errors.New("nip47: bad relay URL")
	ErrNoSecret  = errors.New("nip47: connection URI has no secret")
	ErrBadSecret = errors.New("nip47: bad secret")
)

const errBadKeyText = "not 64 hex characters"

// Secret is a secp256k1 secret key as 64 lowercase hex characters: a connection's client
// secret or a wallet's key. It prints, logs and marshals as "[redacted]"; Hex is the value.
type Secret string

const redacted = "[redacted]"

// NewSecret returns a fresh random key.
func NewSecret() Secret { return Secret(nostr.GeneratePrivateKey()) }

// Hex returns the key itself. Pass it only to signing and encryption.
func (s Secret) Hex() string { return string(s) }

// String returns "[redacted]".
func (s Secret) String() string { return redacted }

// GoString returns "[redacted]", so %#v doesn't print the key either.
func (s Secret) GoString() string { return redacted }

// MarshalText returns "[redacted]", so JSON and other encoders don't write the key.
func (s Secret) MarshalText() ([]byte, error) { return []byte(redacted), nil }

// PubKey returns the key's public key in hex, or "" when the key is invalid.
func (s Secret) PubKey() string {
	if validKey(string(s)) != "" {
		return ""
	}
	pk, err := nostr.GetPublicKey(string(s))
	if err != nil {
		return ""
	}
	return pk
}

// secp256k1's group order: a key must be in [1, n).
const curveOrder = "fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141"

// validKey says what is wrong with a hex secret key, or "" when it is a valid one. The answer
// never contains the key.
func validKey(k string) string {
	if !isLowerHex(k, 64) {
		return errBadKeyText
	}
	if k >= curveOrder || k == strings.Repeat("0", 64) { // same-length lowercase hex compares as numbers
		return "out of the secp256k1 range"
	}
	return ""
}

func isLowerHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// URI is a parsed nostr+walletconnect:// connection string.
type URI struct {
	WalletPubKey string   // hex
	Relays       []string // ws:// or wss:// URLs, at least one
	Secret       Secret   // the client's key
	LUD16        string   // optional lightning address
}

// ParseURI parses a connection string. It also reads the "nostr+walletconnect:" form without
// "//" of early revisions, takes hex in either case (keeping it lowercase) and ignores unknown
// parameters. Errors wrap ErrBadScheme, ErrBadURI, ErrBadPubKey, ErrNoRelay, ErrBadRelay,
// ErrNoSecret or ErrBadSecret, and never quote the secret.
func ParseURI(s string) (URI, error) {
	rest, ok := cutPrefixFold(strings.TrimSpace(s), Scheme+":")
	if !ok {
		return URI{}, ErrBadScheme
	}
	rest = strings.TrimPrefix(rest, "//")
	pk, query, _ := strings.Cut(rest, "?")
	query, _, _ = strings.Cut(query, "#")
	pk = strings.ToLower(strings.TrimSuffix(pk, "/"))
	if !isLowerHex(pk, 64) {
		return URI{}, fmt.Errorf("%w: %s", ErrBadPubKey, errBadKeyText)
	}
	if !nostr.IsValidPublicKey(pk) {
		return URI{}, fmt.Errorf("%w: not a point on secp256k1", ErrBadPubKey)
	}
	vals, err := url.ParseQuery(query)
	if err != nil {
		return URI{}, ErrBadURI // the parser's error quotes the query, secret and all
	}
	u := URI{WalletPubKey: pk, Relays: vals["relay"]}
	if len(u.Relays) == 0 {
		return URI{}, ErrNoRelay
	}
	for _, r := range u.Relays {
		if err := checkRelay(r); err != nil {
			return URI{}, err
		}
	}
	switch secrets := vals["secret"]; len(secrets) {
	case 0:
		return URI{}, ErrNoSecret
	case 1:
		sec := strings.ToLower(secrets[0])
		if why := validKey(sec); why != "" {
			return URI{}, fmt.Errorf("%w: %s", ErrBadSecret, why)
		}
		u.Secret = Secret(sec)
	default:
		return URI{}, fmt.Errorf("%w: given %d times", ErrBadSecret, len(secrets))
	}
	if l := vals["lud16"]; len(l) > 0 {
		u.LUD16 = l[0]
	}
	return u, nil
}

func checkRelay(r string) error {
	ru, err := url.Parse(r)
	if err != nil {
		return fmt.Errorf("%w %q: does not parse", ErrBadRelay, r)
	}
	if ru.Scheme != "ws" && ru.Scheme != "wss" {
		return fmt.Errorf("%w %q: scheme is not ws or wss", ErrBadRelay, r)
	}
	if ru.Host == "" {
		return fmt.Errorf("%w %q: no host", ErrBadRelay, r)
	}
	return nil
}

func cutPrefixFold(s, prefix string) (string, bool) {
	if len(s) < len(prefix) || !strings.EqualFold(s[:len(prefix)], prefix) {
		return s, false
	}
	return s[len(prefix):], true
}

// Encode returns the full connection string, secret included: for showing to the user once,
// never for logs.
func (u URI) Encode() string { return u.encode(url.QueryEscape(u.Secret.Hex())) }

// String returns the connection string with the secret redacted, safe for logs.
func (u URI) String() string { return u.encode(redacted) }

func (u URI) encode(secret string) string {
	var b strings.Builder
	b.WriteString(Scheme + "://" + u.WalletPubKey)
	sep := "?"
	for _, r := range u.Relays {
		b.WriteString(sep + "relay=" + url.QueryEscape(r))
		sep = "&"
	}
	b.WriteString(sep + "secret=" + secret)
	if u.LUD16 != "" {
		b.WriteString("&lud16=" + url.QueryEscape(u.LUD16))
	}
	return b.String()
}

// ClientPubKey returns the public key of the URI's secret: the client's identity towards the
// wallet. It is "" when the secret is invalid.
func (u URI) ClientPubKey() string { return u.Secret.PubKey() }
