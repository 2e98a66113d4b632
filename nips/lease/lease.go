// Package lease implements the job-lease extension to NIP-90 that sparecycles relays speak
// (spec: nips/lease.md). A worker takes a job by publishing a kind 7000 "processing" feedback
// with a ["lease", "<seconds>"] tag; a relay that speaks the extension grants one live lease
// per job and refuses competing claims with a machine-readable "duplicate:" reason.
//
// The package holds the wire format only: the tag, the relay's NIP-11 advertisement and the
// text of its refusals. The relay's decision logic lives in the relay.
package lease

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nbd-wtf/go-nostr"
)

// TagName is the name of the lease tag on a kind 7000 feedback event.
const TagName = "lease"

// Version is the version of the extension this package implements.
const Version = 2

// Sentinel errors. ErrBadTag is wrapped with the reason.
var (
	ErrBadTag   = errors.New("lease: malformed lease tag")
	ErrNoReason = errors.New("lease: not a lease refusal")
)

// Tag builds the lease tag asking for d, rounded up to whole seconds.
func Tag(d time.Duration) nostr.Tag {
	secs := int64((d + time.Second - 1) / time.Second)
	return nostr.Tag{TagName, strconv.FormatInt(secs, 10)}
}

// Parse reads the lease tag from tags. ok is false when there is none. A tag whose value is
// not a positive whole number of seconds, or a second lease tag, is an error wrapping ErrBadTag.
func Parse(tags nostr.Tags) (d time.Duration, ok bool, err error) {
	for _, t := range tags {
		if len(t) == 0 || t[0] != TagName {
			continue
		}
		if ok {
			return 0, false, fmt.Errorf("%w: more than one lease tag", ErrBadTag)
		}
		if len(t) < 2 {
			return 0, false, fmt.Errorf("%w: missing duration", ErrBadTag)
		}
		secs, perr := strconv.ParseInt(t[1], 10, 64)
		if perr != nil || secs <= 0 || secs > 1<<31 {
			return 0, false, fmt.Errorf("%w: duration %q is not a positive number of seconds", ErrBadTag, t[1])
		}
		d, ok = time.Duration(secs)*time.Second, true
	}
	return d, ok, nil
}

// Info is what a relay that speaks the extension publishes in its NIP-11 document under the
// "job_leases" key. A client or worker that finds it knows the relay coordinates leases.
type Info struct {
	Version    int `json:"version"`
	MaxSeconds int `json:"max_seconds"`
	// SkewSeconds bounds how far a claim's created_at may be from the relay's clock.
	SkewSeconds int `json:"skew_seconds"`
}

// InfoKey is the NIP-11 document key under which Info is published.
const InfoKey = "job_leases"

// Held describes a live lease as a relay reports it when refusing a competing claim or result:
// "duplicate: leased by <pubkey> until <unix seconds>".
type Held struct {
	Holder string
	Until  nostr.Timestamp
}

// Reason is the OK reason (without the "duplicate: " prefix) that refuses a claim on a held job.
func (h Held) Reason() string {
	return fmt.Sprintf("leased by %s until %d", h.Holder, h.Until)
}

// ParseRefusal reads an OK message such as "duplicate: leased by <pubkey> until <ts>" back
// into a Held. It returns ErrNoReason for any other message.
func ParseRefusal(msg string) (Held, error) {
	rest, ok := strings.CutPrefix(msg, "duplicate: leased by ")
	if !ok {
		return Held{}, ErrNoReason
	}
	holder, until, ok := strings.Cut(rest, " until ")
	if !ok || !nostr.IsValid32ByteHex(holder) {
		return Held{}, ErrNoReason
	}
	ts, err := strconv.ParseInt(strings.TrimSpace(until), 10, 64)
	if err != nil {
		return Held{}, ErrNoReason
	}
	return Held{Holder: holder, Until: nostr.Timestamp(ts)}, nil
}
