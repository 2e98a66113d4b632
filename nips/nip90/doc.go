// Package nip90 reads and writes the events of NIP-90, "Data Vending Machine": job requests
// (kinds 5000-5999), job results (6000-6999, always the request kind plus 1000) and job
// feedback (7000). Each kind of event has a struct, a Parse function that validates an event
// into it, and Tags and Event methods that turn it back into an unsigned event. A parsed value
// rebuilt with Event and parsed again comes out the same; the fuzz tests hold us to that.
//
// The package is pure: no I/O, no clocks, no signature checks (the caller verifies the event
// before parsing it). Encrypted requests ("Encrypted Params") are read and written by the
// functions of private.go: EncryptRequest, DecryptRequest, ConcealResponse, RevealFeedback and
// RevealResult, which take a Cipher (NIP-44 v2 sent, NIP-04 accepted).
//
// # Revision
//
// We follow 90.md as of nostr-protocol/nips commit 68e5d0ada427a5d4783b8727cd2334a6b3a5e89f,
// plus NIP-40 for the "expiration" tag of a request.
//
// # Deviations
//
// The spec leaves most formats open ("all tags are optional"). Where it names what a value is,
// we check it, and we reject what it leaves ambiguous:
//
//   - An "i" tag in a request needs a value and one of the four input types. A url input must be
//     an absolute http or https URL, or a data: URL for customers that cannot host a file; event
//     and job inputs must be 64-char lowercase hex ids. In a result, whose spec example copies
//     inputs as ["i", "<input-data>"], the type may be omitted, but if present it is checked the
//     same way.
//   - Relay URLs ("relays" values, relay hints in "i" and "e" tags) must be ws:// or wss:// URLs
//     with a host. An empty relay hint counts as absent.
//   - "p" and "e" values must be 64-char lowercase hex. "bid" and "amount" must be non-negative
//     decimal integers of millisats that fit an int64; "expiration" likewise in seconds.
//   - "output" must parse as a MIME type. A "param" needs a name and at least one value, since
//     the spec defines it as key/value. A "t" needs a non-empty value.
//   - Feedback must carry exactly one "status" tag with one of the five statuses (the spec only
//     says providers SHOULD include it), and an "e" tag. Results must carry an "e" tag.
//   - Tags that say one thing may appear once: "output", "bid" and "expiration" in requests;
//     "status", "amount", "e" and "p" in feedback; "request", "amount", "e" and "p" in results.
//   - An ["encrypted"] request must have at least one "p" tag: the spec encrypts to the
//     provider's key, so without one nobody can read it. Its content may be NIP-04 or NIP-44.
//     Only "i" and "param" tags are encrypted; the rest stays in the clear (see private.go).
//   - A result's "request" tag must decode as an event whose kind is the result kind minus 1000
//     and whose id, when set, is the "e" tag's id.
//   - A bid or expiration of 0 reads the same as an absent tag, so Tags omits them.
//
// Unknown tags are allowed. ParseJobRequest drops them; feedback and results keep them, in
// order, in Extra (this is where extension tags such as "lease", or a result's ["encrypted"]
// marker, live). Tags renders the known tags in a fixed order, then Extra.
package nip90
