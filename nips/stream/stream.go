// Package stream implements the stream extension to NIP-90 (spec: nips/stream.md): a job with
// many inputs delivered as one "partial" feedback per input (a part) and paid part by part,
// each part quoted with its own invoice, at most a window of parts ahead.
//
// The package holds the wire format: the "part", "window" and "parts" tags, the invoice
// description that binds an invoice to one part, the seal context of a part (escrow) and how
// the final result joins the parts.
package stream

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/nbd-wtf/go-nostr"
)

// Tag names.
const (
	PartTag   = "part"   // ["part", <k>, <n>] on a part's quote and on the part itself
	WindowTag = "window" // ["window", <w>] on a part's quote: the provider's window
	PartsTag  = "parts"  // ["parts", <n>] on the final result
)

// MaxParts bounds n on the wire.
const MaxParts = 1000

// Separator joins the parts' texts in the final result: a form feed line.
const Separator = "\n\f\n"

// ErrBadTag is a malformed part or window tag.
var ErrBadTag = errors.New("stream: malformed tag")

// Part is part K of N (1 <= K <= N <= MaxParts).
type Part struct {
	K, N int
}

// String is "k/n".
func (p Part) String() string { return fmt.Sprintf("%d/%d", p.K, p.N) }

// Valid reports whether p is within the bounds.
func (p Part) Valid() bool { return p.K >= 1 && p.K <= p.N && p.N <= MaxParts }

// Tag is ["part", k, n].
func (p Part) Tag() nostr.Tag { return nostr.Tag{PartTag, strconv.Itoa(p.K), strconv.Itoa(p.N)} }

// ParsePart reads the one "part" tag of tags: ok is false when there is none; a malformed one,
// or more than one, is an error.
func ParsePart(tags nostr.Tags) (p Part, ok bool, err error) {
	var found nostr.Tag
	for _, t := range tags {
		if len(t) == 0 || t[0] != PartTag {
			continue
		}
		if found != nil {
			return Part{}, true, fmt.Errorf("%w: more than one part tag", ErrBadTag)
		}
		found = t
	}
	if found == nil {
		return Part{}, false, nil
	}
	if len(found) < 3 {
		return Part{}, true, fmt.Errorf("%w: want [\"part\", k, n]", ErrBadTag)
	}
	k, err1 := count(found[1])
	n, err2 := count(found[2])
	p = Part{K: k, N: n}
	if err1 != nil || err2 != nil || !p.Valid() {
		return Part{}, true, fmt.Errorf("%w: part %q of %q", ErrBadTag, found[1], found[2])
	}
	return p, true, nil
}

// Window is ["window", w].
func Window(w int) nostr.Tag { return nostr.Tag{WindowTag, strconv.Itoa(w)} }

// ParseWindow reads a "window" tag: 0 when there is none or it is malformed.
func ParseWindow(tags nostr.Tags) int {
	t := tags.Find(WindowTag)
	if len(t) < 2 {
		return 0
	}
	w, err := count(t[1])
	if err != nil || w < 1 || w > MaxParts {
		return 0
	}
	return w
}

// Parts is the final result's ["parts", n].
func Parts(n int) nostr.Tag { return nostr.Tag{PartsTag, strconv.Itoa(n)} }

// count parses a canonical positive decimal (no sign, no leading zero) of at most 4 digits.
func count(s string) (int, error) {
	if s == "" || len(s) > 4 || s[0] == '0' {
		return 0, ErrBadTag
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0, ErrBadTag
		}
	}
	return strconv.Atoi(s)
}

// InvoiceDescription is the description of part p's invoice: it binds the invoice to the job
// and the part.
func InvoiceDescription(jobID string, p Part) string {
	return "sparecycles job " + jobID + " part " + p.String()
}

// Binds reports whether an invoice description names the job and the part.
func Binds(description, jobID string, p Part) bool {
	return description == InvoiceDescription(jobID, p)
}

// SealContext is what part p of job jobID is sealed under with escrow, in place of the job id:
// "<job id>:<k>".
func SealContext(jobID string, p Part) string { return jobID + ":" + strconv.Itoa(p.K) }

// Join is the final result's content: the parts' texts in order, joined by Separator.
func Join(texts []string) string { return strings.Join(texts, Separator) }

// Split undoes Join.
func Split(content string) []string { return strings.Split(content, Separator) }
