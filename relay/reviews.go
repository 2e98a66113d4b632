package relay

import (
	"context"
	"errors"
	"fmt"
	"math"

	"github.com/nbd-wtf/go-nostr"

	"github.com/sparecycles/sparecycles/internal/invoice"
	"github.com/sparecycles/sparecycles/nips/nip90"
	"github.com/sparecycles/sparecycles/nips/review"
	"github.com/sparecycles/sparecycles/relay/internal/store"
)

// lookupFunc calls each with the stored events matching f, newest first, at most limit of
// them, until each returns false. It reads the store itself, expired events included.
type lookupFunc func(ctx context.Context, f nostr.Filter, limit int, each func(*nostr.Event) bool) error

// Bounds of what checking one review reads: the worker's events about the job (a stream of
// stream.MaxParts parts has a quote and a part each, plus its lease renewals), and the index
// entries visited for them.
const (
	maxIssuingLooked = 5000
	maxIssuingScan   = 4 * maxIssuingLooked
)

// errLookup is a store failure while checking a review: the reviewer may try again.
var errLookup = errors.New("relay: look up a review's proof")

// RejectUnprovenReviews refuses paid reviews (kind 1985 in namespace dvm.review,
// nips/review.md) whose proof of payment does not hold, with "invalid:" and the reason, and
// other kind 1985 labels with "blocked:": a market relay keeps paid reviews, not labels at
// large. lookup reads the relay's store: the job request and the worker's events of the job.
func RejectUnprovenReviews(lookup lookupFunc) policy {
	return func(ctx context.Context, evt *nostr.Event) (bool, string) {
		if evt.Kind != review.Kind {
			return false, ""
		}
		if !review.IsReview(evt) {
			return true, "blocked: kind 1985 is accepted here only as a paid review (namespace " + review.Namespace + ", nips/review.md)"
		}
		err := verifyReview(ctx, evt, lookup)
		switch {
		case err == nil:
			return false, ""
		case errors.Is(err, errLookup):
			return true, "error: could not check the review's proof, try again"
		}
		return true, "invalid: " + err.Error()
	}
}

// verifyReview parses evt, decodes its bolt11 and looks up the job request and the worker's
// event that issued the invoice, then checks the proof (review.Verify). Errors: those of
// review.Parse and review.Verify, review.ErrBolt11, and errLookup (wrapping the store's).
func verifyReview(ctx context.Context, evt *nostr.Event, lookup lookupFunc) error {
	rv, err := review.Parse(evt)
	if err != nil {
		return err
	}
	inv, err := invoice.Decode(rv.Bolt11)
	if err != nil {
		return review.ErrBolt11
	}
	proof := review.Proof{Invoice: review.Invoice{PaymentHash: inv.PaymentHash, Description: inv.Description, DescriptionHash: inv.DescriptionHash}}
	err = lookup(ctx, nostr.Filter{IDs: []string{rv.Job}}, 1, func(e *nostr.Event) bool {
		proof.Job = e
		return false
	})
	if err != nil {
		return fmt.Errorf("%w: job %s: %w", errLookup, rv.Job, err)
	}
	// everything but the worker's event first: a review that fails there costs no scan
	if err := review.Verify(rv, proof); !errors.Is(err, review.ErrNotIssued) {
		return err
	}
	f := nostr.Filter{Kinds: []int{nip90.KindFeedback, nip90.ResultKind(rv.JobKind)}, Authors: []string{rv.Worker}, Tags: nostr.TagMap{"e": {rv.Job}}}
	err = lookup(ctx, f, maxIssuingLooked, func(e *nostr.Event) bool {
		if review.Issues(e, rv) {
			proof.Issued = e
			return false
		}
		return true
	})
	if err != nil && !errors.Is(err, store.ErrScanBudget) {
		return fmt.Errorf("%w: events of job %s: %w", errLookup, rv.Job, err)
	}
	return review.Verify(rv, proof)
}

// errEnough stops a lookup once its caller has what it wanted.
var errEnough = errors.New("relay: enough")

// lookup is the relay's lookupFunc: it waits for the commits queued so far (an event the
// reviewer saw broadcast may not be on disk yet), then reads with a read slot of the clients'
// (a review comes from a client).
func (r *Relay) lookup(ctx context.Context, f nostr.Filter, limit int, each func(*nostr.Event) bool) error {
	if !r.gate.enter() {
		return errShuttingDown
	}
	defer r.gate.leave()
	if err := r.db.Flush(ctx); err != nil {
		return err
	}
	err := r.db.Query(ctx, f, store.Limits{Limit: limit, Scan: maxIssuingScan, Gate: r.reads}, func(evs []*nostr.Event) error {
		for _, e := range evs {
			if !each(e) {
				return errEnough
			}
		}
		return nil
	})
	if errors.Is(err, errEnough) {
		return nil
	}
	return err
}

// maxReviewsLooked bounds the reviews /api/workers reads for one answer, newest first.
const maxReviewsLooked = 5000

// reviewStats is a worker's paid reviews as /api/workers shows them.
type reviewStats struct {
	count int
	sum   int
}

// rating is the mean rating rounded to one decimal; 0 without reviews.
func (s reviewStats) rating() float64 {
	if s.count == 0 {
		return 0
	}
	return math.Round(float64(s.sum)/float64(s.count)*10) / 10
}

// reviews aggregates the newest maxReviewsLooked stored reviews per worker: the newest per
// (reviewer, job, worker) counts, the earlier ones it replaced do not. Only reviews whose proof
// held were stored (RejectUnprovenReviews), so every one counted is paid.
func (r *Relay) reviews(ctx context.Context) map[string]reviewStats {
	type key struct{ reviewer, job, worker string }
	seen := map[key]bool{}
	out := map[string]reviewStats{}
	f := nostr.Filter{Kinds: []int{review.Kind}, Tags: nostr.TagMap{"L": {review.Namespace}}}
	err := r.lookupAll(ctx, f, maxReviewsLooked, func(evt *nostr.Event) {
		rv, err := review.Parse(evt)
		if err != nil {
			return
		}
		k := key{rv.PubKey, rv.Job, rv.Worker}
		if seen[k] {
			return // newest first: an earlier review of the same job, replaced
		}
		seen[k] = true
		s := out[rv.Worker]
		s.count++
		s.sum += rv.Rating
		out[rv.Worker] = s
	})
	if err != nil && ctx.Err() == nil {
		r.log.Debug().Err(err).Msg("reviews cut short")
	}
	return out
}

// lookupAll reads up to limit stored events matching f, newest first, for /api/workers.
func (r *Relay) lookupAll(ctx context.Context, f nostr.Filter, limit int, each func(*nostr.Event)) error {
	if !r.gate.enter() {
		return errShuttingDown
	}
	defer r.gate.leave()
	return r.db.Query(ctx, f, store.Limits{Limit: limit, Scan: 4 * limit, Gate: r.reads}, func(evs []*nostr.Event) error {
		for _, e := range evs {
			each(e)
		}
		return nil
	})
}
