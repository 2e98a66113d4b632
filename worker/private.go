package worker

import (
	"errors"
	"fmt"

	"github.com/nbd-wtf/go-nostr"
	"github.com/nbd-wtf/go-nostr/nip44"

	"github.com/sparecycles/sparecycles/nips/nip01"
	"github.com/sparecycles/sparecycles/nips/nip90"
)

// Private jobs: NIP-90 encrypted requests. A request with ["encrypted"] and this worker's "p"
// tag has its "i" and "param" tags encrypted to this worker in its content. parseRequest
// decrypts it (at intake and when restore rebuilds a stored job), and the job is served like
// any other: same models, payment schemes, leases and escrow. Everything the worker signs for
// it passes conceal, which encrypts the content (feedback info, partial text, the result, a
// sealed result over its seal) to the customer in the scheme the request used, marks it
// ["encrypted"] and copies no input in the clear. Decrypted inputs, and the reasons a private
// job failed (they may quote an input), are never logged.

// customerCipher encrypts a private job's events to its customer, in the scheme its request
// was encrypted with.
type customerCipher struct {
	*nip90.Cipher
	scheme nip90.Scheme
}

// errNotOurs is an encrypted request this worker cannot read, addressed to several providers:
// it was encrypted to another, so it is left alone.
var errNotOurs = errors.New("worker: encrypted to another provider")

// parseRequest reads a request as this worker serves it. A request in the clear is parsed; an
// encrypted one addressed to this worker is decrypted with its key, and the cipher its answers
// are encrypted with comes along (also with an error, when the content decrypted, so the
// reason goes back encrypted). An encrypted request addressed to other workers is returned
// parsed but unread: the caller ignores it by its "p" tags.
func (w *Worker) parseRequest(evt *nostr.Event) (*nip90.JobRequest, *customerCipher, error) {
	req, err := nip90.ParseJobRequest(evt)
	if err != nil || !req.Encrypted || !addressedTo(evt, w.key.PubKey) {
		return req, nil, err
	}
	c, err := nip90.NewCipher(w.key.Secret(), evt.PubKey)
	if err != nil {
		return nil, nil, fmt.Errorf("invalid: the request's author is not a valid public key: %w", err)
	}
	cc := &customerCipher{Cipher: c, scheme: nip90.SchemeOf(evt.Content)}
	dec, _, err := nip90.DecryptRequest(evt, c)
	switch {
	case errors.Is(err, nip90.ErrUndecryptable) && len(req.Providers) > 1:
		return nil, nil, errNotOurs
	case errors.Is(err, nip90.ErrUndecryptable):
		return nil, nil, fmt.Errorf("the content does not decrypt with this worker's key (NIP-44 v2 or NIP-04 to %s): %w", w.key.PubKey, err)
	case err != nil:
		return nil, cc, err
	}
	return dec, cc, nil
}

// conceal encrypts evt, a feedback or result event for j, to j's customer when j's request
// was encrypted (see nip90.ConcealResponse); an event of a job in the clear is left as it is.
// Every event signed for a job passes it just before it is signed.
func (w *Worker) conceal(j *job, evt *nostr.Event) error {
	if j == nil || j.private == nil {
		return nil
	}
	return nip90.ConcealResponse(evt, j.private.Cipher, j.private.scheme)
}

// signFor conceals evt for j and signs it: the one way events about a job are signed. A
// content too long to encrypt (NIP-44 v2 takes at most 65535 bytes) is a rejection the
// customer reads.
func (w *Worker) signFor(j *job, evt *nostr.Event) error {
	n := len(evt.Content)
	if err := w.conceal(j, evt); err != nil {
		why := nip01.Reject(nip01.PrefixError, fmt.Sprintf("the answer to a private job is %d bytes, more than NIP-44 encrypts (%d)", n, nip44.MaxPlaintextSize))
		return fmt.Errorf("%w: %v", why, err)
	}
	return w.key.Sign(evt)
}

// loggable is what the log may say of a job's failure: for a private job, not the reason,
// which may quote an input.
func loggable(j *job, reason string) string {
	if j != nil && j.private != nil {
		return "(private job: reason not logged)"
	}
	return reason
}
