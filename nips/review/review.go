// Package review reads, writes and verifies paid reviews (spec: nips/review.md): a NIP-32
// label (kind 1985, namespace "dvm.review") by which the customer of a NIP-90 job rates the
// worker that did it, 1 to 5, with a short text. A review carries its proof of payment: the
// worker's bolt11 and the payment's preimage. It counts only when the proof holds:
//
//   - sha256(preimage) is the invoice's payment hash (the reviewer paid it, or was paid the
//     preimage by whoever did);
//   - the invoice's description names the job ("sparecycles job <id>", or a stream part's
//     "sparecycles job <id> part <k>/<n>");
//   - the job request is the reviewer's own, of the kind the review's "k" tag names;
//   - the reviewed worker issued that invoice for that job: a kind 7000 feedback or a result of
//     the job, signed by the worker, carries it in its "amount" tag.
//
// The package is pure: Parse and Event read and write the event, Verify checks the proof on
// what the caller looked up (the job request, the worker's event carrying the invoice) and
// decoded (the invoice's payment hash and description; nips/ does not decode BOLT11).
package review

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/nbd-wtf/go-nostr"

	"github.com/sparecycles/sparecycles/nips/nip90"
	"github.com/sparecycles/sparecycles/nips/stream"
)

// Kind is NIP-32's label kind. It is a regular kind: a reviewer's later review of the same
// job and worker is a new event, and readers count only the newest.
const Kind = nostr.KindLabel

// Namespace is the NIP-32 namespace of paid reviews (the "L" tag, and the third element of
// the "l" tag whose value is the rating).
const Namespace = "dvm.review"

// Bounds a parser enforces: a review comes from a stranger and is about money.
const (
	MinRating = 1
	MaxRating = 5
	// MaxText is the most characters (Unicode code points) of review text, the content.
	MaxText = 2000
	// MaxBolt11 is the longest bolt11 accepted (an invoice with a long description and many
	// route hints stays well below it).
	MaxBolt11 = 4096
	maxRelay  = 256
)

// Sentinel errors. Parse returns ErrWrongKind or an error wrapping ErrInvalid or ErrNoProof;
// Verify returns one of the others, wrapped with the details. Their texts may be shown to the
// reviewer (after an "invalid: " prefix).
var (
	ErrWrongKind    = errors.New("review: not a paid review (kind 1985, namespace " + Namespace + ")")
	ErrInvalid      = errors.New("review: malformed review")
	ErrNoProof      = errors.New("review: no proof of payment (a bolt11 and a preimage tag)")
	ErrNoJob        = errors.New("review: the job request is not known here")
	ErrNotRequester = errors.New("review: the job request was not posted by the reviewer")
	ErrJobKind      = errors.New("review: the job's kind is not the one the k tag names")
	ErrPreimage     = errors.New("review: the preimage does not hash to the invoice's payment hash")
	ErrNotBound     = errors.New("review: the invoice's description does not name the job")
	ErrNotIssued    = errors.New("review: the reviewed worker did not issue this invoice for this job")
	// ErrBolt11 is for the verifier that decodes the bolt11 (Verify takes it decoded).
	ErrBolt11 = errors.New("review: the bolt11 does not decode")
)

// Review is one paid review.
type Review struct {
	ID, PubKey string // the reviewer: the job's customer
	CreatedAt  nostr.Timestamp
	Job        string // "e": the job request id
	JobRelay   string // relay hint in the "e" tag; "" for none
	Worker     string // "p": the reviewed worker's pubkey
	JobKind    int    // "k": the job request's kind
	Rating     int    // the "l" value: MinRating..MaxRating
	Text       string // the content: at most MaxText characters
	Bolt11     string // the worker's invoice the reviewer paid
	Preimage   string // its preimage: 64 lowercase hex
}

// Event builds the unsigned kind 1985 event for r (created now when r.CreatedAt is 0).
func (r Review) Event() nostr.Event {
	created := r.CreatedAt
	if created == 0 {
		created = nostr.Now()
	}
	e := nostr.Tag{"e", r.Job}
	if r.JobRelay != "" {
		e = append(e, r.JobRelay)
	}
	return nostr.Event{Kind: Kind, CreatedAt: created, Content: r.Text, Tags: nostr.Tags{
		{"L", Namespace},
		{"l", strconv.Itoa(r.Rating), Namespace},
		e,
		{"p", r.Worker},
		{"k", strconv.Itoa(r.JobKind)},
		{"bolt11", r.Bolt11},
		{"preimage", r.Preimage},
	}}
}

// IsReview reports whether evt claims to be a paid review: a kind 1985 label that names the
// namespace in an "L" tag or in an "l" tag. Such an event must then parse and verify.
func IsReview(evt *nostr.Event) bool {
	if evt == nil || evt.Kind != Kind {
		return false
	}
	for _, t := range evt.Tags {
		switch {
		case len(t) >= 2 && t[0] == "L" && t[1] == Namespace:
			return true
		case len(t) >= 3 && t[0] == "l" && t[2] == Namespace:
			return true
		}
	}
	return false
}

// Parse reads a paid review. It returns ErrWrongKind when evt is not one (IsReview), an error
// wrapping ErrNoProof when the bolt11 or the preimage is missing, and one wrapping ErrInvalid
// for anything else malformed: each of L, l, e, p, k, bolt11 and preimage exactly once (other
// tags are ignored), the rating 1..5, ids and pubkeys 64 lowercase hex, k a job kind
// (5000-5999), the text valid UTF-8 of at most MaxText characters. The signature is not checked.
func Parse(evt *nostr.Event) (Review, error) {
	if !IsReview(evt) {
		return Review{}, ErrWrongKind
	}
	r := Review{ID: evt.ID, PubKey: evt.PubKey, CreatedAt: evt.CreatedAt, Text: evt.Content}
	seen := map[string]bool{}
	for _, t := range evt.Tags {
		if len(t) == 0 {
			continue
		}
		name := t[0]
		switch name {
		case "L", "l", "e", "p", "k", "bolt11", "preimage":
		default:
			continue
		}
		if seen[name] {
			return Review{}, fmt.Errorf("%w: more than one %q tag", ErrInvalid, name)
		}
		seen[name] = true
		if len(t) < 2 {
			return Review{}, fmt.Errorf("%w: %q tag without a value", ErrInvalid, name)
		}
		v := t[1]
		switch name {
		case "L":
			if v != Namespace {
				return Review{}, fmt.Errorf("%w: namespace %q, want %q", ErrInvalid, clip(v), Namespace)
			}
		case "l":
			if len(t) < 3 || t[2] != Namespace {
				return Review{}, fmt.Errorf("%w: the l tag is not in namespace %q", ErrInvalid, Namespace)
			}
			if len(v) != 1 || v[0] < '0'+MinRating || v[0] > '0'+MaxRating {
				return Review{}, fmt.Errorf("%w: rating %q, want %d to %d", ErrInvalid, clip(v), MinRating, MaxRating)
			}
			r.Rating = int(v[0] - '0')
		case "e":
			if !isHex64(v) {
				return Review{}, fmt.Errorf("%w: e tag %q is not a job request id", ErrInvalid, clip(v))
			}
			r.Job = v
			if len(t) >= 3 && t[2] != "" {
				if len(t[2]) > maxRelay {
					return Review{}, fmt.Errorf("%w: relay hint longer than %d", ErrInvalid, maxRelay)
				}
				r.JobRelay = t[2]
			}
		case "p":
			if !isHex64(v) {
				return Review{}, fmt.Errorf("%w: p tag %q is not a pubkey", ErrInvalid, clip(v))
			}
			r.Worker = v
		case "k":
			n, err := strconv.Atoi(v)
			if err != nil || !nip90.IsRequestKind(n) || strconv.Itoa(n) != v {
				return Review{}, fmt.Errorf("%w: k tag %q is not a job kind (5000-5999)", ErrInvalid, clip(v))
			}
			r.JobKind = n
		case "bolt11":
			if v == "" || len(v) > MaxBolt11 || strings.TrimSpace(v) != v {
				return Review{}, fmt.Errorf("%w: bolt11 empty, padded or longer than %d", ErrInvalid, MaxBolt11)
			}
			r.Bolt11 = v
		case "preimage":
			if !isHex64(v) {
				return Review{}, fmt.Errorf("%w: preimage is not 32 bytes of lowercase hex", ErrInvalid)
			}
			r.Preimage = v
		}
	}
	for _, name := range []string{"L", "l", "e", "p", "k"} {
		if !seen[name] {
			return Review{}, fmt.Errorf("%w: no %q tag", ErrInvalid, name)
		}
	}
	if !seen["bolt11"] || !seen["preimage"] {
		return Review{}, ErrNoProof
	}
	if !utf8.ValidString(r.Text) {
		return Review{}, fmt.Errorf("%w: the text is not UTF-8", ErrInvalid)
	}
	if n := utf8.RuneCountInString(r.Text); n > MaxText {
		return Review{}, fmt.Errorf("%w: the text has %d characters, more than %d", ErrInvalid, n, MaxText)
	}
	return r, nil
}

// Invoice is what Verify needs of the decoded bolt11.
type Invoice struct {
	PaymentHash     string // 64 hex
	Description     string // "" when the invoice carries a description hash instead
	DescriptionHash string // 64 hex; "" when it carries the description
}

// Proof is what a verifier looked up and decoded for a review.
type Proof struct {
	Job     *nostr.Event // the job request named by the review's "e" tag; nil: not found
	Invoice Invoice      // the review's bolt11, decoded
	Issued  *nostr.Event // the worker's event carrying the bolt11 (Issues); nil: none found
}

// Issues reports whether evt is one by which r's worker issued r's invoice for r's job: a
// kind 7000 feedback (a quote, an escrow quote, a stream part's quote) or a result of the
// job's kind (a post-pay result), signed by the worker, naming the job, whose "amount" tag
// carries r.Bolt11. The signature is not checked.
func Issues(evt *nostr.Event, r Review) bool {
	if evt == nil || evt.PubKey != r.Worker {
		return false
	}
	var job string
	var amount *nip90.Amount
	switch {
	case evt.Kind == nip90.KindFeedback:
		f, err := nip90.ParseJobFeedback(evt)
		if err != nil {
			return false
		}
		job, amount = f.JobID, f.Amount
	case evt.Kind == nip90.ResultKind(r.JobKind):
		res, err := nip90.ParseJobResult(evt)
		if err != nil {
			return false
		}
		job, amount = res.JobID, res.Amount
	default:
		return false
	}
	return job == r.Job && amount != nil && amount.Bolt11 != "" && strings.EqualFold(strings.TrimSpace(amount.Bolt11), r.Bolt11)
}

// Verify checks r's proof of payment against p. Errors, each wrapped with its details:
// ErrNoJob (p.Job is nil or another event), ErrNotRequester, ErrJobKind, ErrPreimage,
// ErrNotIssued (p.Issued is nil or does not issue r.Bolt11 for the job, Issues) and
// ErrNotBound. The signatures of the events are not checked: the caller read them from a
// store that checked them.
func Verify(r Review, p Proof) error {
	switch {
	case p.Job == nil || p.Job.ID != r.Job:
		return fmt.Errorf("%w: job %s", ErrNoJob, r.Job)
	case p.Job.PubKey != r.PubKey:
		return fmt.Errorf("%w: job %s is %s's", ErrNotRequester, r.Job, short(p.Job.PubKey))
	case p.Job.Kind != r.JobKind:
		return fmt.Errorf("%w: job %s is kind %d, k says %d", ErrJobKind, r.Job, p.Job.Kind, r.JobKind)
	}
	pre, err := hex.DecodeString(r.Preimage)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrPreimage, err)
	}
	sum := sha256.Sum256(pre)
	if !strings.EqualFold(hex.EncodeToString(sum[:]), p.Invoice.PaymentHash) {
		return fmt.Errorf("%w (%s)", ErrPreimage, short(p.Invoice.PaymentHash))
	}
	if !Issues(p.Issued, r) {
		return fmt.Errorf("%w: no feedback or result of job %s signed by %s carries it", ErrNotIssued, r.Job, short(r.Worker))
	}
	want := Description(r.Job)
	if part, ok, err := stream.ParsePart(p.Issued.Tags); err == nil && ok {
		want = stream.InvoiceDescription(r.Job, part)
	}
	if !describes(p.Invoice, want) {
		return fmt.Errorf("%w: want %q", ErrNotBound, want)
	}
	return nil
}

// Description is the description a worker's invoice for a whole job carries (a stream part's
// is stream.InvoiceDescription).
func Description(jobID string) string { return "sparecycles job " + jobID }

func describes(inv Invoice, description string) bool {
	if inv.Description != "" {
		return inv.Description == description
	}
	sum := sha256.Sum256([]byte(description))
	return inv.DescriptionHash != "" && strings.EqualFold(inv.DescriptionHash, hex.EncodeToString(sum[:]))
}

func isHex64(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := range len(s) {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// clip shortens a stranger's value before it goes into an error message.
func clip(s string) string {
	if len(s) > 32 {
		return s[:32] + "…"
	}
	return s
}

func short(s string) string {
	if len(s) > 12 {
		return s[:12]
	}
	return s
}
