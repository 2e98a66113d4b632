package client

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/nbd-wtf/go-nostr"

	"github.com/sparecycles/sparecycles/nips/review"
)

// Errors of Review.
var (
	ErrBadReview     = errors.New("client: review")
	ErrNoPaidPayment = errors.New("client: no settled payment for this job in the payment store")
	ErrNotYourJob    = errors.New("client: the job was posted by another key")
	ErrReviewRefused = errors.New("client: no relay took the review")
)

// RelayAnswer is one relay's answer to a published event.
type RelayAnswer struct {
	Relay    string `json:"relay"`
	Accepted bool   `json:"accepted"`
	Reason   string `json:"reason,omitempty"` // the OK message (with its NIP-01 prefix), or why none came
}

// Reviewed is a review Review published.
type Reviewed struct {
	Review  review.Review `json:"-"`
	Event   nostr.Event   `json:"event"`
	Answers []RelayAnswer `json:"relays"`
}

// Review publishes a paid review of the worker the customer paid for job (nips/review.md):
// rating 1 to 5 and text, with the proof of payment taken from the payment store, the
// settled payment's bolt11 and preimage (any settled part, for a stream). It signs with the
// customer's key and publishes to every relay, reporting each relay's answer.
//
// Errors: ErrBadReview (rating or text out of bounds), ErrNoPaidPayment (nothing settled for
// the job here: a review needs the payment's proof), ErrUnknownJob (no relay has the request:
// none could check the review), ErrNotYourJob (another key posted it), ErrReviewRefused (no
// relay accepted the review; the Reviewed holds their answers).
func (c *Client) Review(ctx context.Context, jobID string, rating int, text string) (Reviewed, error) {
	if rating < review.MinRating || rating > review.MaxRating {
		return Reviewed{}, fmt.Errorf("%w: rating %d, want %d to %d", ErrBadReview, rating, review.MinRating, review.MaxRating)
	}
	if n := utf8.RuneCountInString(text); n > review.MaxText || !utf8.ValidString(text) {
		return Reviewed{}, fmt.Errorf("%w: the text must be UTF-8 of at most %d characters (it has %d)", ErrBadReview, review.MaxText, n)
	}
	ps, err := c.Payments(ctx, jobID)
	if err != nil {
		return Reviewed{}, fmt.Errorf("review job %s: %w", jobID, err)
	}
	var paid *Payment
	for i, p := range ps {
		if p.State == PayPaid && preimageMatches(p.Preimage, p.PaymentHash) {
			paid = &ps[i]
			break
		}
	}
	if paid == nil {
		return Reviewed{}, fmt.Errorf("review job %s: %w (payments recorded for it: %d)", jobID, ErrNoPaidPayment, len(ps))
	}
	evs, err := Query(ctx, c.cfg.Relays, c.log, nostr.Filter{IDs: []string{jobID}, Limit: 1})
	if err != nil {
		return Reviewed{}, fmt.Errorf("review job %s: find the request: %w", jobID, err)
	}
	if len(evs) == 0 {
		return Reviewed{}, fmt.Errorf("review job %s: %w: a relay checks a review against the request", jobID, ErrUnknownJob)
	}
	job := evs[0]
	if job.PubKey != c.pubkey {
		return Reviewed{}, fmt.Errorf("review job %s: %w (%s)", jobID, ErrNotYourJob, short(job.PubKey))
	}
	rv := review.Review{Job: jobID, Worker: paid.Worker, JobKind: job.Kind, Rating: rating, Text: text, Bolt11: paid.Bolt11, Preimage: paid.Preimage}
	evt := rv.Event()
	if err := evt.Sign(c.cfg.SecretKey); err != nil {
		return Reviewed{}, fmt.Errorf("review job %s: sign: %w", jobID, err)
	}
	rv.ID, rv.PubKey = evt.ID, evt.PubKey
	out := Reviewed{Review: rv, Event: evt}
	accepted := false
	var refusals []string
	for _, p := range c.pool.PublishEach(ctx, evt) {
		a := RelayAnswer{Relay: p.URL, Accepted: p.Err == nil && p.OK.Accepted, Reason: p.OK.Reason}
		if p.Err != nil {
			a.Reason = p.Err.Error()
		}
		if a.Accepted {
			accepted = true
		} else {
			refusals = append(refusals, p.URL+": "+a.Reason)
		}
		out.Answers = append(out.Answers, a)
	}
	if !accepted {
		return out, fmt.Errorf("review job %s: %w: %s", jobID, ErrReviewRefused, strings.Join(refusals, "; "))
	}
	return out, nil
}
