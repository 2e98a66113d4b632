package worker

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/nbd-wtf/go-nostr"

	"github.com/sparecycles/sparecycles/nips/postpay"
)

// maxOffers bounds the post-pay offers waiting for an acceptance at once; a job beyond it is
// answered busy. Each holds the request, not its input.
const maxOffers = 4096

// offer is a post-pay job offered at a price, waiting for its customer to accept.
type offer struct {
	j     *job
	price int64
	timer *time.Timer
}

// offers are the open post-pay offers, by job id; each is forgotten after OfferWait.
type offers struct {
	mu   sync.Mutex
	jobs map[string]*offer
}

// add records an offer; false when too many are open.
func (o *offers) add(j *job, price int64, wait time.Duration) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.jobs == nil {
		o.jobs = map[string]*offer{}
	}
	if len(o.jobs) >= maxOffers {
		return false
	}
	id := j.event.ID
	of := &offer{j: j, price: price}
	of.timer = time.AfterFunc(wait, func() {
		o.mu.Lock()
		if o.jobs[id] == of {
			delete(o.jobs, id)
		}
		o.mu.Unlock()
	})
	o.jobs[id] = of
	return true
}

// take removes and returns the offer for a job, nil when there is none (never made, taken,
// or forgotten).
func (o *offers) take(id string) *offer {
	o.mu.Lock()
	defer o.mu.Unlock()
	of := o.jobs[id]
	if of != nil {
		of.timer.Stop()
		delete(o.jobs, id)
	}
	return of
}

// chosen reports whether a request names this worker alone: the customer chose it, so a
// post-pay job runs at once.
func (w *Worker) chosen(j *job) bool {
	return len(j.req.Providers) == 1 && j.req.Providers[0] == w.key.PubKey
}

// accepted takes an event addressed to this worker that may accept one of its offers. Anything
// else is dropped without an answer: only the job's customer, naming this worker and the
// offered amount, starts the job.
func (w *Worker) accepted(ctx context.Context, evt *nostr.Event) {
	a, err := postpay.ParseAcceptance(evt)
	if err != nil {
		if !errors.Is(err, postpay.ErrNotAcceptance) {
			w.log.Debug().Err(err).Str("event", evt.ID).Msg("malformed acceptance")
		}
		return
	}
	if a.Worker != w.key.PubKey {
		return
	}
	w.offers.mu.Lock()
	of := w.offers.jobs[a.JobID]
	w.offers.mu.Unlock()
	if of == nil || of.j.event.PubKey != a.Customer || of.price != a.Msat {
		return // not ours, not the customer, or another price: ignored
	}
	if of = w.offers.take(a.JobID); of == nil {
		return // accepted twice, on two relays: the first one runs it
	}
	j, price := of.j, of.price
	log := w.log.With().Str("job", j.event.ID).Int("kind", j.event.Kind).Str("model", j.model.manifest.Name).Logger()
	log.Info().Int64("msat", price).Msg("offer accepted")
	w.async.Add(1)
	go func() { // off the link's goroutine: the store and the paid queue may make it wait
		defer w.async.Done()
		if err := w.postPayAllowed(ctx, j.event.PubKey, price); err != nil {
			w.fail(ctx, j, log, err)
			return
		}
		j.mu.Lock()
		j.postPrice = &price
		j.mu.Unlock()
		w.enqueuePaid(ctx, j) // chosen work is served before the queue, as paid work is
	}()
}
