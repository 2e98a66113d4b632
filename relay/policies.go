package relay

import (
	"context"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/fiatjaf/khatru"
	"github.com/nbd-wtf/go-nostr"
	"github.com/nbd-wtf/go-nostr/nip13"
	"github.com/nbd-wtf/go-nostr/nip40"

	"github.com/sparecycles/sparecycles/nips/nip90"
)

// A policy is a khatru RejectEvent hook: it returns true and a NIP-01-prefixed reason to refuse
// an event. The constructors below take their limits and return the closure, as khatru's own.
type policy = func(ctx context.Context, evt *nostr.Event) (reject bool, msg string)

// RejectOversizedEvent refuses events whose serialized JSON is larger than max bytes, and
// events whose content alone is (the NIP-11 max_content_length).
func RejectOversizedEvent(max int) policy {
	return func(_ context.Context, evt *nostr.Event) (bool, string) {
		if len(evt.Content) > max {
			return true, fmt.Sprintf("invalid: content is %d bytes, more than the %d allowed", len(evt.Content), max)
		}
		if n := serializedSize(evt, max); n > max {
			return true, fmt.Sprintf("invalid: event is %d bytes, more than the %d allowed", n, max)
		}
		return false, ""
	}
}

// serializedSize is the length of the event's JSON as go-nostr writes it, or an upper bound
// of it that is at most max: the JSON is only written out when the bound is above max.
func serializedSize(evt *nostr.Event, max int) int {
	if n := serializedBound(evt); n <= max {
		return n
	}
	b, err := evt.MarshalJSON()
	if err != nil {
		return math.MaxInt
	}
	return len(b)
}

// serializedBound is an upper bound of the length of the event's JSON: every string byte
// takes at most 6 bytes escaped (\u00XX), and the keys, numbers and punctuation fewer than 200.
func serializedBound(evt *nostr.Event) int {
	n := 200 + 6*(len(evt.ID)+len(evt.PubKey)+len(evt.Sig)+len(evt.Content))
	for _, tag := range evt.Tags {
		n += 3
		for _, v := range tag {
			n += 3 + 6*len(v)
		}
	}
	return n
}

// RejectTooManyTags refuses events with more than max tags.
func RejectTooManyTags(max int) policy {
	return func(_ context.Context, evt *nostr.Event) (bool, string) {
		if len(evt.Tags) > max {
			return true, fmt.Sprintf("invalid: %d tags, more than the %d allowed", len(evt.Tags), max)
		}
		return false, ""
	}
}

// AllowKinds refuses kinds outside the set.
func AllowKinds(kinds KindSet) policy {
	return func(_ context.Context, evt *nostr.Event) (bool, string) {
		if !kinds.Has(evt.Kind) {
			return true, fmt.Sprintf("blocked: kind %d is not accepted here (accepted: %s)", evt.Kind, kinds)
		}
		return false, ""
	}
}

// RejectOutsideWindow refuses events whose created_at is more than past behind or future
// ahead of the clock.
func RejectOutsideWindow(past, future time.Duration, now func() time.Time) policy {
	return func(_ context.Context, evt *nostr.Event) (bool, string) {
		t := now().Unix()
		switch at := int64(evt.CreatedAt); {
		case at < t-int64(past.Seconds()):
			return true, fmt.Sprintf("invalid: created_at %d is more than %s in the past", at, past)
		case at > t+int64(future.Seconds()):
			return true, fmt.Sprintf("invalid: created_at %d is more than %s in the future", at, future)
		}
		return false, ""
	}
}

// RejectExpired refuses events whose NIP-40 expiration has passed.
func RejectExpired(now func() time.Time) policy {
	return func(_ context.Context, evt *nostr.Event) (bool, string) {
		if exp := nip40.GetExpiration(evt.Tags); exp != -1 && int64(exp) <= now().Unix() {
			return true, fmt.Sprintf("invalid: event expired at %d", exp)
		}
		return false, ""
	}
}

// RequireAuth refuses writes from connections that have not authenticated with NIP-42, events
// whose author is not the pubkey authenticated on the connection (authenticating as one key
// must not let a connection publish as another), and, when allow is not empty, events from
// pubkeys not in it. khatru keeps one authenticated pubkey per connection, the latest AUTH's.
func RequireAuth(allow []string) policy {
	return func(ctx context.Context, evt *nostr.Event) (bool, string) {
		who := khatru.GetAuthed(ctx)
		switch {
		case who == "":
			return true, "auth-required: publishing here requires NIP-42 authentication"
		case len(allow) > 0 && !slices.Contains(allow, evt.PubKey):
			return true, "restricted: " + evt.PubKey + " is not allowed to publish here"
		case evt.PubKey != who:
			// the author may publish, once this connection authenticates as the author
			return true, "auth-required: this connection is authenticated as " + who + ", not as the event's author " + evt.PubKey + "; authenticate as the author to publish its events"
		}
		return false, ""
	}
}

// RequireJobPoW refuses job requests (kinds 5000-5999) whose id has less than min leading
// zero bits (NIP-13).
func RequireJobPoW(min int) policy {
	return func(_ context.Context, evt *nostr.Event) (bool, string) {
		if !nip90.IsRequestKind(evt.Kind) {
			return false, ""
		}
		if len(evt.ID) != 64 { // nip13.Difficulty indexes into it (khatru checks ids first)
			return true, "invalid: the id is not 32 bytes of hex"
		}
		if d := nip13.Difficulty(evt.ID); d < min {
			return true, fmt.Sprintf("pow: job requests need difficulty %d, this one has %d", min, d)
		}
		return false, ""
	}
}

// RejectMalformedJobs refuses NIP-90 requests, results and feedback that nips/nip90 cannot
// parse, with its precise reason, so that workers and customers only ever see well-formed jobs.
func RejectMalformedJobs() policy {
	return func(_ context.Context, evt *nostr.Event) (bool, string) {
		var err error
		switch {
		case nip90.IsRequestKind(evt.Kind):
			_, err = nip90.ParseJobRequest(evt)
		case nip90.IsResultKind(evt.Kind):
			_, err = nip90.ParseJobResult(evt)
		case evt.Kind == nip90.KindFeedback:
			_, err = nip90.ParseJobFeedback(evt)
		}
		if err != nil {
			return true, "invalid: " + err.Error()
		}
		return false, ""
	}
}

// Rate is a token bucket's refill rate (events per second; 0 = no limit) and its burst.
type Rate struct {
	PerSecond float64 `json:"per_second"`
	Burst     int     `json:"burst"`
}

// RateLimits are the publishing limits by class of publisher. An event falls in the first class
// that fits it:
//   - Trusted: from a pubkey in Trusted (--trusted-pubkeys and the operator's --pubkey): not
//     limited, so the market's own services (a wallet service, the operator's workers) are never
//     refused as spam;
//   - NWC: the wallet kinds 23194-23197 (NIP-47 requests, responses and notifications), which a
//     wallet service sends for every payment of every customer: per pubkey and per IP at NWC;
//   - Authed: from the pubkey its connection authenticated as (NIP-42): per pubkey at Authed,
//     without the per-IP limit (a known key is accountable on its own);
//   - everyone else: per IP at IP and per author at Pubkey.
type RateLimits struct {
	IP, Pubkey, Authed, NWC Rate
	Trusted                 []string
}

type rateClass int

const (
	classAnonymous rateClass = iota
	classTrusted
	classNWC
	classAuthed
)

// IsNWCKind reports whether kind is one of NIP-47's wallet kinds that a wallet service publishes
// per payment: requests (23194), responses (23195) and notifications (23196, 23197).
func IsNWCKind(kind int) bool { return kind >= 23194 && kind <= 23197 }

func (l RateLimits) class(ctx context.Context, evt *nostr.Event) rateClass {
	switch {
	case slices.Contains(l.Trusted, evt.PubKey):
		return classTrusted
	case IsNWCKind(evt.Kind):
		return classNWC
	case l.Authed.PerSecond > 0 && khatru.GetAuthed(ctx) == evt.PubKey:
		return classAuthed
	}
	return classAnonymous
}

// RateLimitEvents returns the two policies that enforce l: byIP goes first in the chain, so a
// flood from one address is refused before anything else is checked; byPubkey goes last, so an
// author's bucket is only charged for events that would otherwise be stored.
func RateLimitEvents(l RateLimits, now func() time.Time) (byIP, byPubkey policy) {
	buckets := func(r Rate) *tokenBucket {
		if r.PerSecond <= 0 {
			return nil
		}
		return newTokenBucket(r.PerSecond, r.Burst, now)
	}
	ip, pub, authed := buckets(l.IP), buckets(l.Pubkey), buckets(l.Authed)
	nwcIP, nwcPub := buckets(l.NWC), buckets(l.NWC)
	byIP = func(ctx context.Context, evt *nostr.Event) (bool, string) {
		tb, r := ip, l.IP
		switch l.class(ctx, evt) {
		case classNWC:
			tb, r = nwcIP, l.NWC
		case classTrusted, classAuthed:
			return false, ""
		}
		if tb == nil {
			return false, "" // no limit: the address is not even formatted
		}
		if addr := clientIPOf(ctx); addr != "" && !tb.allow(addr) {
			return true, fmt.Sprintf("rate-limited: more than %g events/s from your address", r.PerSecond)
		}
		return false, ""
	}
	byPubkey = func(ctx context.Context, evt *nostr.Event) (bool, string) {
		tb, r := pub, l.Pubkey
		switch l.class(ctx, evt) {
		case classNWC:
			tb, r = nwcPub, l.NWC
		case classAuthed:
			tb, r = authed, l.Authed
		case classTrusted:
			return false, ""
		}
		if tb != nil && !tb.allow(evt.PubKey) {
			return true, fmt.Sprintf("rate-limited: more than %g events/s from this pubkey", r.PerSecond)
		}
		return false, ""
	}
	return byIP, byPubkey
}
