package nip90

import (
	"crypto/aes"
	cbc "crypto/cipher"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	nostr "github.com/nbd-wtf/go-nostr"
	"github.com/nbd-wtf/go-nostr/nip04"
	"github.com/nbd-wtf/go-nostr/nip44"
)

// Encrypted requests ("Encrypted Params" in 90.md, "private jobs" here).
//
// A customer keeps a job's inputs from the relays by moving the request's "i" and "param" tags,
// as a JSON array of tags, into the content, encrypted to one provider, and adding ["encrypted"]
// and that provider's ["p", <pubkey>]. The provider answers with its feedback and result content
// encrypted to the customer and an ["encrypted"] tag; the result copies no "i" tag, and its
// "request" tag is the encrypted request as it was posted.
//
// What stays in the clear: every tag other than "i" and "param". The relay's job table and
// leases, and the provider's money decisions, need "relays", "bid", "expiration", "payment" and
// the "p" tag; "output" and "t" say nothing of the inputs. A request that is encrypted and also
// has "i" or "param" tags in the clear is refused (it would leak what it means to hide, and
// two sources of inputs are ambiguous). The decrypted array may also hold an "output" tag
// (when the clear tags have none); any other tag in it is ignored, so a provider and a relay
// never disagree on a value that moves money or routes events.
//
// Schemes: we encrypt with NIP-44 v2, and decrypt NIP-44 v2 and NIP-04 (90.md names NIP-04;
// a NIP-04 payload has the form "<base64>?iv=<base64>"). A provider answers in the scheme of
// the request. NIP-44 v2 encrypts at most 65535 bytes: a private request's inputs must fit.
//
// Feedback: the status tag's extra info can name an input (a fetch error quotes the URL), so
// it is never in the clear either. An encrypted feedback event's content is the encryption of
// its content, or, when that is empty, of its info, and its status tag carries no info.
// RevealFeedback reverses this: a decrypted content is the info of any status but partial.

// Limits on what a stranger's encrypted request can make a reader hold.
const (
	// MaxEncryptedContent is the longest encrypted content read, in bytes: a NIP-44 v2 payload
	// is at most 87472 characters; NIP-04 has no limit of its own, and gets the same one.
	MaxEncryptedContent = 87472
	// MaxPrivateTags is the most tags a decrypted request content may hold.
	MaxPrivateTags = 1024
)

// Errors of encrypted content. Match them with errors.Is.
var (
	// ErrUndecryptable means the content is not a NIP-44 v2 or NIP-04 payload this key opens:
	// it was encrypted to another provider, or it is damaged.
	ErrUndecryptable = errors.New("nip90: encrypted content does not decrypt")
	// ErrBadPrivateTags means the decrypted content of a request is not a JSON array of tags
	// within MaxPrivateTags, or an encrypted request is malformed around it.
	ErrBadPrivateTags = errors.New("nip90: encrypted request content")
)

// Scheme is how a content is encrypted.
type Scheme int

// Encryption schemes.
const (
	NIP44 Scheme = iota // NIP-44 v2: what we send
	NIP04               // NIP-04: accepted for compatibility, and answered in kind
)

func (s Scheme) String() string {
	if s == NIP04 {
		return "nip04"
	}
	return "nip44"
}

// SchemeOf tells a content's scheme from its form: NIP-04's "?iv=" or else NIP-44.
func SchemeOf(content string) Scheme {
	if strings.Contains(content, "?iv=") {
		return NIP04
	}
	return NIP44
}

// Cipher encrypts to and decrypts from one peer: it holds the NIP-44 conversation key and the
// NIP-04 shared secret of a secret key and the peer's public key. Both directions use the same
// key, so a customer's Cipher for a provider and the provider's for the customer agree.
type Cipher struct {
	conversation [32]byte // NIP-44 v2
	shared       []byte   // NIP-04
}

// NewCipher derives the keys between secretKey (hex) and peer (hex public key).
func NewCipher(secretKey, peer string) (*Cipher, error) {
	ck, err := nip44.GenerateConversationKey(peer, secretKey)
	if err != nil {
		return nil, fmt.Errorf("nip90: conversation key: %w", err)
	}
	shared, err := nip04.ComputeSharedSecret(peer, secretKey)
	if err != nil {
		return nil, fmt.Errorf("nip90: shared secret: %w", err)
	}
	return &Cipher{conversation: ck, shared: shared}, nil
}

// Encrypt encrypts plaintext in scheme s. An empty plaintext stays empty (NIP-44 has no empty
// payload).
func (c *Cipher) Encrypt(s Scheme, plaintext string) (string, error) {
	if plaintext == "" {
		return "", nil
	}
	if s == NIP04 {
		return nip04.Encrypt(plaintext, c.shared)
	}
	return nip44.Encrypt(plaintext, c.conversation)
}

// Decrypt decrypts content in the scheme its form shows (SchemeOf). An empty content is an
// empty plaintext. Errors wrap ErrUndecryptable.
func (c *Cipher) Decrypt(content string) (string, error) {
	if content == "" {
		return "", nil
	}
	if len(content) > MaxEncryptedContent {
		return "", fmt.Errorf("%w: %d bytes is over the limit of %d", ErrUndecryptable, len(content), MaxEncryptedContent)
	}
	var (
		plain string
		err   error
	)
	if SchemeOf(content) == NIP04 {
		plain, err = decryptNIP04(content, c.shared)
	} else {
		plain, err = nip44.Decrypt(content, c.conversation)
	}
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrUndecryptable, err)
	}
	return plain, nil
}

// decryptNIP04 decrypts a NIP-04 payload (AES-256-CBC, PKCS#7 padding). go-nostr's
// nip04.Decrypt panics on an IV that is not one block or a ciphertext that is not whole blocks
// and checks only the last padding byte, so a wrong key read as text one time in sixteen.
// NIP-04 has no MAC: here the whole padding must hold and the text must be UTF-8, which a
// wrong key's garbage passes about once in a million.
func decryptNIP04(content string, key []byte) (string, error) {
	ct64, iv64, _ := strings.Cut(content, "?iv=")
	ct, err := base64.StdEncoding.DecodeString(ct64)
	if err != nil || len(ct) == 0 || len(ct)%aes.BlockSize != 0 {
		return "", errors.New("nip04: the ciphertext is not whole AES blocks in base64")
	}
	iv, err := base64.StdEncoding.DecodeString(iv64)
	if err != nil || len(iv) != aes.BlockSize {
		return "", errors.New("nip04: the iv is not 16 bytes in base64")
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return "", fmt.Errorf("nip04: %w", err)
	}
	cbc.NewCBCDecrypter(block, iv).CryptBlocks(ct, ct)
	pad := int(ct[len(ct)-1])
	if pad < 1 || pad > aes.BlockSize || slices.ContainsFunc(ct[len(ct)-pad:], func(b byte) bool { return int(b) != pad }) {
		return "", errors.New("nip04: bad padding (the wrong key?)")
	}
	plain := ct[:len(ct)-pad]
	if !utf8.Valid(plain) {
		return "", errors.New("nip04: not UTF-8 text (the wrong key?)")
	}
	return string(plain), nil
}

// EncryptRequest returns r's wire form as an encrypted request to its one provider (r.Providers
// must name exactly one): its "i" and "param" tags, as a JSON array, encrypted with NIP-44 v2
// into the content; its other tags and ["encrypted"] in the clear. c is the customer's Cipher
// for that provider. The nonce is derived from the conversation key, r.CreatedAt and the
// plaintext, so the same request encrypts to the same event (its id is known before it is
// signed, and posting it twice is one job) while any change gives an unrelated nonce.
func EncryptRequest(r *JobRequest, c *Cipher) (nostr.Event, error) {
	if len(r.Providers) != 1 {
		return nostr.Event{}, fmt.Errorf("%w: an encrypted request names exactly one provider, not %d", ErrBadPrivateTags, len(r.Providers))
	}
	clear := *r
	clear.Inputs, clear.Params, clear.Encrypted, clear.Content = nil, nil, true, ""
	private := (&JobRequest{Inputs: r.Inputs, Params: r.Params}).Tags()
	if len(private) > MaxPrivateTags {
		return nostr.Event{}, fmt.Errorf("%w: %d inputs and params is over the limit of %d", ErrBadPrivateTags, len(private), MaxPrivateTags)
	}
	plain, err := json.Marshal(private)
	if err != nil {
		return nostr.Event{}, fmt.Errorf("nip90: encode private tags: %w", err)
	}
	if len(plain) > nip44.MaxPlaintextSize {
		return nostr.Event{}, fmt.Errorf("%w: %d bytes of inputs and params is over NIP-44's limit of %d", ErrBadPrivateTags, len(plain), nip44.MaxPlaintextSize)
	}
	mac := hmac.New(sha256.New, c.conversation[:])
	mac.Write([]byte("nip90 encrypted request " + strconv.FormatInt(int64(r.CreatedAt), 10) + "\n"))
	mac.Write(plain)
	content, err := nip44.Encrypt(string(plain), c.conversation, nip44.WithCustomNonce(mac.Sum(nil)))
	if err != nil {
		return nostr.Event{}, fmt.Errorf("nip90: encrypt request: %w", err)
	}
	evt := clear.Event()
	evt.Content = content
	return evt, nil
}

// DecryptRequest reads an encrypted request with the provider's Cipher for its author: the
// clear tags as ParseJobRequest reads them, and the "i", "param" (and "output") tags of the
// decrypted content, checked by the same rules. It returns the request (Encrypted set, Content
// still the encrypted payload) and the scheme of the content, to answer in. Errors: those of
// ParseJobRequest; ErrUndecryptable; ErrBadPrivateTags for a request that is not encrypted, has
// "i" or "param" tags in the clear, or whose content is not a JSON array of at most
// MaxPrivateTags tags; a *TagError for a bad decrypted tag (its Index counts in the decrypted
// array).
func DecryptRequest(evt *nostr.Event, c *Cipher) (*JobRequest, Scheme, error) {
	req, err := ParseJobRequest(evt)
	if err != nil {
		return nil, 0, err
	}
	if !req.Encrypted {
		return nil, 0, fmt.Errorf("%w: the request is not encrypted", ErrBadPrivateTags)
	}
	if len(req.Inputs) > 0 || len(req.Params) > 0 {
		return nil, 0, fmt.Errorf("%w: an encrypted request has i or param tags in the clear", ErrBadPrivateTags)
	}
	scheme := SchemeOf(evt.Content)
	plain, err := c.Decrypt(evt.Content)
	if err != nil {
		return nil, 0, err
	}
	tags, err := ParsePrivateTags(plain)
	if err != nil {
		return nil, 0, err
	}
	private, err := ParseJobRequest(&nostr.Event{Kind: evt.Kind, Tags: tags})
	if err != nil {
		return nil, 0, err
	}
	req.Inputs, req.Params = private.Inputs, private.Params
	if req.Output == "" {
		req.Output = private.Output
	}
	return req, scheme, nil
}

// ParsePrivateTags reads a decrypted request content: a JSON array of at most MaxPrivateTags
// tags, each an array of strings. It keeps the "i", "param" and "output" tags, in order, and
// drops the rest. Errors wrap ErrBadPrivateTags.
func ParsePrivateTags(plain string) (nostr.Tags, error) {
	if len(plain) > nip44.MaxPlaintextSize*2 { // NIP-04 payloads up to MaxEncryptedContent
		return nil, fmt.Errorf("%w: %d bytes is over the limit", ErrBadPrivateTags, len(plain))
	}
	dec := json.NewDecoder(strings.NewReader(plain))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('[') {
		return nil, fmt.Errorf("%w: not a JSON array of tags", ErrBadPrivateTags)
	}
	var tags nostr.Tags
	for n := 0; dec.More(); n++ {
		if n == MaxPrivateTags {
			return nil, fmt.Errorf("%w: more than %d tags", ErrBadPrivateTags, MaxPrivateTags)
		}
		var tag []string
		if err := dec.Decode(&tag); err != nil {
			return nil, fmt.Errorf("%w: tag #%d is not an array of strings", ErrBadPrivateTags, n)
		}
		switch elem(tag, 0) {
		case "i", "param", "output":
			tags = append(tags, tag)
		}
	}
	if tok, err := dec.Token(); err != nil || tok != json.Delim(']') {
		return nil, fmt.Errorf("%w: not a JSON array of tags", ErrBadPrivateTags)
	}
	if dec.More() {
		return nil, fmt.Errorf("%w: data after the array of tags", ErrBadPrivateTags)
	}
	return tags, nil
}

// ConcealResponse encrypts a provider's feedback (kind 7000) or result (6000-6999) event for an
// encrypted request, in place, before it is signed: the status tag's info moves into the
// content when the content is empty (and is dropped otherwise), a result's "i" tags are
// removed, the content is encrypted in scheme s with the provider's Cipher for the customer,
// and ["encrypted"] is added. An event already marked ["encrypted"] is left as it is. Other
// kinds are an error.
func ConcealResponse(evt *nostr.Event, c *Cipher, s Scheme) error {
	if hasEncryptedTag(evt.Tags) {
		return nil
	}
	switch {
	case evt.Kind == KindFeedback:
		for i, tag := range evt.Tags {
			if len(tag) >= 3 && tag[0] == "status" {
				if evt.Content == "" {
					evt.Content = tag[2]
				}
				evt.Tags[i] = nostr.Tag{tag[0], tag[1]}
			}
		}
	case IsResultKind(evt.Kind):
		evt.Tags = slices.DeleteFunc(slices.Clone(evt.Tags), func(t nostr.Tag) bool { return elem(t, 0) == "i" })
	default:
		return fmt.Errorf("%w: kind %d is not feedback or a result", ErrWrongKind, evt.Kind)
	}
	content, err := c.Encrypt(s, evt.Content)
	if err != nil {
		return fmt.Errorf("nip90: encrypt %d bytes of content: %w", len(evt.Content), err)
	}
	evt.Content = content
	evt.Tags = append(evt.Tags, nostr.Tag{"encrypted"})
	return nil
}

// RevealFeedback decrypts an encrypted feedback event's content, read with the customer's
// Cipher for its provider: for a partial status it is the content; for any other status with
// no info in the clear it is the info (ConcealResponse moved it there). A feedback without
// ["encrypted"] is left as it is. Errors wrap ErrUndecryptable.
func RevealFeedback(f *JobFeedback, c *Cipher) error {
	if !hasEncryptedTag(f.Extra) {
		return nil
	}
	plain, err := c.Decrypt(f.Content)
	if err != nil {
		return err
	}
	f.Content = plain
	if f.Status != StatusPartial && f.Info == "" {
		f.Info, f.Content = plain, ""
	}
	return nil
}

// RevealResult decrypts an encrypted result's content with the customer's Cipher for its
// provider. A result without ["encrypted"] is left as it is. Errors wrap ErrUndecryptable.
func RevealResult(r *JobResult, c *Cipher) error {
	if !hasEncryptedTag(r.Extra) {
		return nil
	}
	plain, err := c.Decrypt(r.Content)
	if err != nil {
		return err
	}
	r.Content = plain
	return nil
}

// IsEncrypted reports whether evt carries the ["encrypted"] tag.
func IsEncrypted(evt *nostr.Event) bool { return evt != nil && hasEncryptedTag(evt.Tags) }

func hasEncryptedTag(tags nostr.Tags) bool {
	return slices.ContainsFunc(tags, func(t nostr.Tag) bool { return len(t) >= 1 && t[0] == "encrypted" })
}

// RevealResponse returns a copy of an encrypted feedback or result event as it would read in
// the clear, decrypted with the customer's Cipher for its provider: the content decrypted; for
// feedback of any status but partial with no info in the clear, the decrypted content as the
// status tag's info (as RevealFeedback reads it); no ["encrypted"] tag. The copy's signature
// no longer verifies: check the event before revealing it. An event without ["encrypted"] is
// returned as it is. Errors wrap ErrUndecryptable.
func RevealResponse(evt *nostr.Event, c *Cipher) (*nostr.Event, error) {
	if !IsEncrypted(evt) {
		return evt, nil
	}
	plain, err := c.Decrypt(evt.Content)
	if err != nil {
		return nil, err
	}
	out := *evt
	out.Content = plain
	out.Tags = make(nostr.Tags, 0, len(evt.Tags))
	for _, tag := range evt.Tags {
		switch {
		case elem(tag, 0) == "encrypted":
			continue
		case evt.Kind == KindFeedback && elem(tag, 0) == "status" && elem(tag, 2) == "" && Status(elem(tag, 1)) != StatusPartial && plain != "":
			tag = nostr.Tag{"status", tag[1], plain}
			out.Content = ""
		}
		out.Tags = append(out.Tags, slices.Clone(tag))
	}
	return &out, nil
}
