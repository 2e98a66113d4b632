package nip47

import (
	"context"

	"github.com/nbd-wtf/go-nostr"
)

// Transport is the relay I/O a Client or Service needs; the caller adapts its relay
// connection(s) to it, one relay or several.
type Transport interface {
	// Publish sends evt and returns once a relay has accepted it (OK true), an error otherwise:
	// a refusal (such as a relay's "mute: no one was listening" for an ephemeral event), a
	// dropped connection or ctx ending first.
	Publish(ctx context.Context, evt nostr.Event) error
	// Subscribe delivers the events matching f, the stored ones and then live ones, until ctx
	// ends; then the channel closes. It returns once the subscription is live (after the
	// relays' EOSE), so that nothing published right after it returns is missed. Events may
	// repeat (several relays) and need not be verified: the Client and Service check ids and
	// signatures. It must not block forever on a reader that stops reading once ctx ends.
	Subscribe(ctx context.Context, f nostr.Filter) (<-chan *nostr.Event, error)
}
