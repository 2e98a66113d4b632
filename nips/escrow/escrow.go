// Package escrow implements the escrow extension to NIP-90 (spec: nips/escrow.md): a job paid
// through a NIP-47 hold invoice whose preimage P the worker chose, and a result sealed under a
// key derived from P. The customer's payment locks the funds before the work; the worker
// publishes the sealed result, then settles the invoice with P, which hands P to the payer:
// the worker is paid if and only if the customer can open the result.
//
// The package holds the wire format and the seal: preimages, the "escrow" tag of quotes and
// results, the "payment" tag of requests, and Seal/Open.
package escrow

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"time"

	"github.com/nbd-wtf/go-nostr"
	"golang.org/x/crypto/chacha20poly1305"
	"golang.org/x/crypto/hkdf"
)

// Tag names and values.
const (
	// TagName is the "escrow" tag of a quote (payment-required feedback) and of a sealed result.
	TagName = "escrow"
	// Seal names the one sealing construction of version 1: an HKDF-SHA256 key from the
	// preimage and the job id, XChaCha20-Poly1305 with a random 24-byte nonce.
	Seal = "xchacha20poly1305"
	// PaymentTag is a request's ["payment", <scheme>...]: the schemes its customer can pay by,
	// in its order of preference. A request without it is a plain NIP-90 request (prepay).
	PaymentTag = "payment"
)

// Payment schemes, as named in a request's "payment" tag and in NIP-89 announcements.
const (
	SchemeEscrow = "escrow" // hold invoice, sealed result, settle reveals the key
	SchemePrepay = "prepay" // plain NIP-90: pay the invoice, then the worker runs
	SchemeAfter  = "after"  // post-pay offer (nips/postpay.md)
)

// MaxSettleWindow bounds the settle window a quote may name.
const MaxSettleWindow = 24 * time.Hour

// Errors.
var (
	ErrBadTag      = errors.New("escrow: malformed escrow tag")
	ErrBadPreimage = errors.New("escrow: preimage must be 32 bytes of hex")
	ErrSealed      = errors.New("escrow: sealed content cannot be opened with this preimage")
)

// Preimage is the worker's secret for one job: the hold invoice is for sha256(P), and the
// result is sealed under a key derived from P.
type Preimage [32]byte

// NewPreimage draws a random preimage.
func NewPreimage() (Preimage, error) {
	var p Preimage
	if _, err := io.ReadFull(rand.Reader, p[:]); err != nil {
		return p, fmt.Errorf("escrow: preimage: %w", err)
	}
	return p, nil
}

// ParsePreimage reads a preimage as hex (as NIP-47's pay_invoice result carries it).
func ParsePreimage(s string) (Preimage, error) {
	var p Preimage
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != len(p) {
		return p, ErrBadPreimage
	}
	copy(p[:], b)
	return p, nil
}

// Hex is the preimage in hex.
func (p Preimage) Hex() string { return hex.EncodeToString(p[:]) }

// Hash is the payment hash of the preimage, in hex: sha256(P).
func (p Preimage) Hash() string {
	h := sha256.Sum256(p[:])
	return hex.EncodeToString(h[:])
}

// Quote is what an "escrow" tag on payment-required feedback says:
// ["escrow", "xchacha20poly1305", "<payment hash>", "<settle window seconds>"]. The worker
// promises to settle or cancel within SettleWindow of the payment's arrival.
type Quote struct {
	PaymentHash  string
	SettleWindow time.Duration
}

// Tag is the quote's tag.
func (q Quote) Tag() nostr.Tag {
	return nostr.Tag{TagName, Seal, q.PaymentHash, strconv.FormatInt(int64(q.SettleWindow/time.Second), 10)}
}

// ParseQuote finds the "escrow" tag of a quote. ok is false when there is none; err is set
// (wrapping ErrBadTag) when there is one that is malformed, or more than one.
func ParseQuote(tags nostr.Tags) (q Quote, ok bool, err error) {
	t, ok, err := find(tags)
	if !ok || err != nil {
		return q, ok, err
	}
	if len(t) < 4 {
		return q, true, fmt.Errorf("%w: a quote needs [%q, %q, <payment hash>, <settle window seconds>]", ErrBadTag, TagName, Seal)
	}
	secs, err := strconv.ParseInt(t[3], 10, 64)
	if err != nil || secs <= 0 || secs > int64(MaxSettleWindow/time.Second) {
		return q, true, fmt.Errorf("%w: settle window %.20q is not 1..%d seconds", ErrBadTag, t[3], int64(MaxSettleWindow/time.Second))
	}
	return Quote{PaymentHash: t[2], SettleWindow: time.Duration(secs) * time.Second}, true, nil
}

// ResultTag marks a sealed result: ["escrow", "xchacha20poly1305", "<payment hash>"].
func ResultTag(paymentHash string) nostr.Tag { return nostr.Tag{TagName, Seal, paymentHash} }

// ParseResult finds the "escrow" tag of a result and returns the payment hash whose preimage
// opens its content. ok is false for a plain (unsealed) result.
func ParseResult(tags nostr.Tags) (paymentHash string, ok bool, err error) {
	t, ok, err := find(tags)
	if !ok || err != nil {
		return "", ok, err
	}
	return t[2], true, nil
}

// find returns the one "escrow" tag, checked for the seal and a payment hash.
func find(tags nostr.Tags) (nostr.Tag, bool, error) {
	var found nostr.Tag
	for _, t := range tags {
		if len(t) == 0 || t[0] != TagName {
			continue
		}
		if found != nil {
			return nil, true, fmt.Errorf("%w: more than one", ErrBadTag)
		}
		found = t
	}
	switch {
	case found == nil:
		return nil, false, nil
	case len(found) < 3:
		return nil, true, fmt.Errorf("%w: needs a seal and a payment hash", ErrBadTag)
	case found[1] != Seal:
		return nil, true, fmt.Errorf("%w: unknown seal %.40q (this version knows %q)", ErrBadTag, found[1], Seal)
	case !isHash(found[2]):
		return nil, true, fmt.Errorf("%w: payment hash %.70q is not 32 bytes of lowercase hex", ErrBadTag, found[2])
	}
	return found, true, nil
}

func isHash(s string) bool {
	if len(s) != 64 {
		return false
	}
	for _, c := range []byte(s) {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// PaymentSchemes reads a request's ["payment", <scheme>...] tag: the schemes its customer
// accepts, in order of preference. A request without it accepts prepay only (plain NIP-90: a
// client that does not know this extension cannot open a sealed result). Unknown schemes are
// kept, so a newer client's preferences pass through.
func PaymentSchemes(tags nostr.Tags) []string {
	t := tags.Find(PaymentTag)
	if len(t) < 2 {
		return []string{SchemePrepay}
	}
	out := make([]string, 0, len(t)-1)
	for _, s := range t[1:] {
		if s != "" && !slices.Contains(out, s) && len(out) < 8 {
			out = append(out, s)
		}
	}
	if len(out) == 0 {
		return []string{SchemePrepay}
	}
	return out
}

// PaymentSchemesTag is the request tag naming schemes in order of preference.
func PaymentSchemesTag(schemes ...string) nostr.Tag { return append(nostr.Tag{PaymentTag}, schemes...) }

// hkdfSalt separates this key derivation from every other use of a preimage.
const hkdfSalt = "sparecycles-escrow-v1"

// version is the first byte of a sealed payload.
const version = 1

// key derives the sealing key of one job: HKDF-SHA256(ikm = P, salt = "sparecycles-escrow-v1",
// info = the job id in hex), 32 bytes.
func key(p Preimage, jobID string) ([]byte, error) {
	k := make([]byte, chacha20poly1305.KeySize)
	if _, err := io.ReadFull(hkdf.New(sha256.New, p[:], []byte(hkdfSalt), []byte(jobID)), k); err != nil {
		return nil, fmt.Errorf("escrow: derive key: %w", err)
	}
	return k, nil
}

// SealContent seals a result's content for job jobID under preimage p: base64 (standard, padded)
// of 0x01 || nonce (24 bytes) || XChaCha20-Poly1305 ciphertext and tag, with the job id as
// associated data. Only a holder of p can open it, and only as the result of that job.
func SealContent(p Preimage, jobID string, plaintext []byte) (string, error) {
	var nonce [chacha20poly1305.NonceSizeX]byte
	if _, err := io.ReadFull(rand.Reader, nonce[:]); err != nil {
		return "", fmt.Errorf("escrow: nonce: %w", err)
	}
	return sealWithNonce(p, jobID, plaintext, nonce)
}

func sealWithNonce(p Preimage, jobID string, plaintext []byte, nonce [chacha20poly1305.NonceSizeX]byte) (string, error) {
	k, err := key(p, jobID)
	if err != nil {
		return "", err
	}
	aead, err := chacha20poly1305.NewX(k)
	if err != nil {
		return "", fmt.Errorf("escrow: %w", err)
	}
	out := make([]byte, 0, 1+len(nonce)+len(plaintext)+aead.Overhead())
	out = append(out, version)
	out = append(out, nonce[:]...)
	out = aead.Seal(out, nonce[:], plaintext, []byte(jobID))
	return base64.StdEncoding.EncodeToString(out), nil
}

// OpenContent opens what SealContent sealed. It fails (ErrSealed) unless p is the preimage the
// content was sealed under and jobID the job it was sealed for, and the content is unaltered.
func OpenContent(p Preimage, jobID string, sealed string) ([]byte, error) {
	raw, err := base64.StdEncoding.DecodeString(sealed)
	if err != nil {
		return nil, fmt.Errorf("%w: not base64", ErrSealed)
	}
	if len(raw) < 1+chacha20poly1305.NonceSizeX+chacha20poly1305.Overhead || raw[0] != version {
		return nil, fmt.Errorf("%w: not a version %d sealed payload", ErrSealed, version)
	}
	k, err := key(p, jobID)
	if err != nil {
		return nil, err
	}
	aead, err := chacha20poly1305.NewX(k)
	if err != nil {
		return nil, fmt.Errorf("escrow: %w", err)
	}
	nonce := raw[1 : 1+chacha20poly1305.NonceSizeX]
	plain, err := aead.Open(nil, nonce, raw[1+chacha20poly1305.NonceSizeX:], []byte(jobID))
	if err != nil {
		return nil, ErrSealed
	}
	return plain, nil
}
