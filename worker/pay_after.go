package worker

import (
	"context"
	"fmt"
	"time"

	"github.com/rs/zerolog"

	"github.com/sparecycles/sparecycles/internal/invoice"
	"github.com/sparecycles/sparecycles/nips/escrow"
	"github.com/sparecycles/sparecycles/nips/nip47"
	"github.com/sparecycles/sparecycles/nips/nip90"
	"github.com/sparecycles/sparecycles/nips/postpay"
)

// afterScheme is post-pay (nips/postpay.md): the worker offers its price, runs once the
// customer accepts (or at once when the request names it alone), and the result carries the
// invoice. Each customer may owe at most MaxUnpaidMsat for delivered jobs.
type afterScheme struct{ w *Worker }

func (afterScheme) name() string { return escrow.SchemeAfter }

// quote publishes the price of a post-pay job before running it. A job whose request names
// this worker alone runs at once; any other waits (outside the run queue, without a lease
// claim, which would block the worker the customer does choose) until its customer accepts
// the offer, for at most OfferWait (see accepted).
func (s afterScheme) quote(ctx context.Context, j *job, log zerolog.Logger, q quote) error {
	w := s.w
	if err := w.postPayAllowed(ctx, j.event.PubKey, q.price); err != nil {
		return err
	}
	price := q.price
	if w.chosen(j) {
		j.mu.Lock()
		j.postPrice = &price
		j.mu.Unlock()
		w.publishFeedback(ctx, j, postpay.Offer(j.event.ID, j.event.PubKey, price))
		w.claimRunDeliver(ctx, j, log, q.run, q.t0, true, nil)
		return nil
	}
	if !w.offers.add(j, price, w.cfg.OfferWait) {
		w.busy.Add(1)
		return reject("busy: too many open offers, try again shortly")
	}
	w.publishFeedback(ctx, j, postpay.Offer(j.event.ID, j.event.PubKey, price))
	log.Info().Int64("msat", price).Msg("offered, pay after")
	return nil
}

// funded records that a delivered job's invoice settled.
func (s afterScheme) funded(ctx context.Context, st storedJob, tx nip47.Transaction) {
	if !settledTx(tx) || st.State != StateUnpaid {
		return
	}
	if ok, _ := s.w.store.advance(ctx, st.ID, StateUnpaid, StateSettled); ok {
		s.w.log.Info().Str("job", st.ID).Int64("msat", st.AmountMsat).Msg("post-paid job settled")
	}
}

// seal puts the invoice on the result. It checks first that some relay can take the result,
// so a result that cannot be delivered leaves no debt behind.
func (s afterScheme) seal(ctx context.Context, j *job, log zerolog.Logger, home *link, res *nip90.JobResult) bool {
	w := s.w
	j.mu.Lock()
	postPrice := j.postPrice
	j.mu.Unlock()
	if postPrice == nil {
		return true
	}
	if missed := w.fitsNowhere(j, home, *res); missed != nil {
		w.undeliverable(ctx, j, log, missed)
		return false
	}
	tx, err := w.wallet.MakeInvoice(ctx, nip47.MakeInvoiceParams{
		Amount: *postPrice, Description: invoice.Description(j.event.ID), Expiry: int64(w.cfg.InvoiceExpiry / time.Second),
	})
	if err != nil {
		w.fail(ctx, j, log, fmt.Errorf("make invoice: %w", err))
		return false
	}
	if err := w.store.put(ctx, storedJob{ID: j.event.ID, State: StateUnpaid, Customer: j.event.PubKey, AmountMsat: *postPrice,
		Scheme: escrow.SchemeAfter, Bolt11: tx.Invoice, PaymentHash: tx.PaymentHash, Request: j.event, Relays: urls(j.relays())}); err != nil {
		w.fail(ctx, j, log, err)
		return false
	}
	res.Amount = &nip90.Amount{Msat: *postPrice, Bolt11: tx.Invoice}
	return true
}

func (afterScheme) settle(context.Context, *job, zerolog.Logger, *link, delivery) bool { return true }

// refund: nothing was paid before delivery (owe changes nothing for a post-paid job).
func (s afterScheme) refund(ctx context.Context, j *job, log zerolog.Logger, reason string) bool {
	return s.w.owe(ctx, j, log, reason)
}

// resume: an unpaid result waits for its invoice (polled); nothing runs again.
func (afterScheme) resume(context.Context, storedJob, *job) {}
