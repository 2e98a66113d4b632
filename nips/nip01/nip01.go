// Package nip01 holds the NIP-01 pieces our components share beyond go-nostr: the machine-readable
// prefixes of OK and CLOSED messages, and an error type whose text may be sent to a client.
package nip01

import "errors"

// Prefixes of OK/CLOSED reasons defined by NIP-01.
const (
	PrefixDuplicate    = "duplicate"
	PrefixPoW          = "pow"
	PrefixBlocked      = "blocked"
	PrefixRateLimited  = "rate-limited"
	PrefixInvalid      = "invalid"
	PrefixRestricted   = "restricted"
	PrefixAuthRequired = "auth-required"
	PrefixMute         = "mute"
	PrefixError        = "error"
)

// Rejection is an error whose text may be sent verbatim in an OK or CLOSED message.
type Rejection struct{ Prefix, Reason string }

// Error returns "prefix: reason".
func (r *Rejection) Error() string { return r.Prefix + ": " + r.Reason }

// Reject builds a Rejection.
func Reject(prefix, reason string) *Rejection { return &Rejection{Prefix: prefix, Reason: reason} }

// Reason turns any error into client-safe OK/CLOSED text: a Rejection's own text, or
// "error: internal" for anything else, which the caller logs in full.
func Reason(err error) string {
	var r *Rejection
	if errors.As(err, &r) {
		return r.Error()
	}
	return "error: internal"
}
