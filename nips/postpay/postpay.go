// Package postpay implements the post-pay offer extension to NIP-90 (spec: nips/postpay.md).
// A worker that is paid after it runs first states its price: kind 7000 "payment-required"
// feedback with ["amount", "<msat>"], no bolt11, and the marker ["payment", "after"]. It runs
// only once chosen: when the request names it (a single "p" tag), or when the customer accepts
// the offer with a customer-signed kind 7000 event that names the job ("e"), the worker ("p"),
// the accepted amount and the same marker. The result then carries an invoice for exactly the
// offered amount.
//
// The package holds the wire format only.
package postpay

import (
	"errors"
	"fmt"

	"github.com/nbd-wtf/go-nostr"

	"github.com/sparecycles/sparecycles/nips/nip90"
)

// The marker tag of offers and acceptances: ["payment", "after"].
const (
	TagName = "payment"
	After   = "after"
)

// AcceptInfo is the status info of an acceptance: ["status", "success", "offer accepted"].
const AcceptInfo = "offer accepted"

// Errors of ParseAcceptance; the others wrap nip90's.
var (
	ErrNotAcceptance = errors.New("postpay: not an offer acceptance")
	ErrBadAcceptance = errors.New("postpay: malformed acceptance")
)

// Marker is the ["payment", "after"] tag.
func Marker() nostr.Tag { return nostr.Tag{TagName, After} }

// marked reports whether tags hold the marker.
func marked(tags nostr.Tags) bool {
	for _, t := range tags {
		if len(t) >= 2 && t[0] == TagName && t[1] == After {
			return true
		}
	}
	return false
}

// Offer builds a worker's post-pay offer for a job: payment-required with the price and no
// invoice.
func Offer(jobID, customer string, msat int64) nip90.JobFeedback {
	return nip90.JobFeedback{
		CreatedAt: nostr.Now(), JobID: jobID, Customer: customer, Status: nip90.StatusPaymentRequired,
		Amount: &nip90.Amount{Msat: msat}, Extra: nostr.Tags{Marker()},
	}
}

// OfferAmount returns the price of fb when it is a post-pay offer (payment-required, an
// amount above zero, no bolt11, the marker); ok is false otherwise.
func OfferAmount(fb *nip90.JobFeedback) (msat int64, ok bool) {
	if fb == nil || fb.Status != nip90.StatusPaymentRequired || fb.Amount == nil || fb.Amount.Bolt11 != "" || fb.Amount.Msat <= 0 {
		return 0, false
	}
	return fb.Amount.Msat, marked(fb.Extra)
}

// Acceptance is a customer's acceptance of one worker's offer.
type Acceptance struct {
	Customer string // the signer
	JobID    string
	Worker   string
	Msat     int64 // the offered amount accepted
}

// Event returns a as an unsigned kind 7000 event, for the customer to sign. It is plain
// NIP-90 feedback in form ("success", with the worker in the "p" tag), so relays that check
// NIP-90 events store it, and the customer's own feedback subscription (#p = customer) does
// not see it.
func (a Acceptance) Event() nostr.Event {
	fb := nip90.JobFeedback{
		CreatedAt: nostr.Now(), JobID: a.JobID, Customer: a.Worker, Status: nip90.StatusSuccess, Info: AcceptInfo,
		Amount: &nip90.Amount{Msat: a.Msat}, Extra: nostr.Tags{Marker()},
	}
	return fb.Event()
}

// ParseAcceptance reads evt as an acceptance. It returns ErrNotAcceptance for kind 7000
// events that are something else (a worker's feedback), ErrBadAcceptance (wrapped) for one
// that is marked but incomplete, and nip90's errors for feedback that does not parse.
func ParseAcceptance(evt *nostr.Event) (Acceptance, error) {
	fb, err := nip90.ParseJobFeedback(evt)
	if err != nil {
		return Acceptance{}, err
	}
	if fb.Status != nip90.StatusSuccess || fb.Info != AcceptInfo || !marked(fb.Extra) {
		return Acceptance{}, ErrNotAcceptance
	}
	switch {
	case fb.Customer == "":
		return Acceptance{}, fmt.Errorf("%w: no p tag naming the worker", ErrBadAcceptance)
	case fb.Amount == nil || fb.Amount.Msat <= 0 || fb.Amount.Bolt11 != "":
		return Acceptance{}, fmt.Errorf("%w: it needs [\"amount\", \"<msat>\"] with the offered amount and no invoice", ErrBadAcceptance)
	}
	return Acceptance{Customer: evt.PubKey, JobID: fb.JobID, Worker: fb.Customer, Msat: fb.Amount.Msat}, nil
}
