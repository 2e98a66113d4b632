package worker

import (
	"context"
	"fmt"
	"time"

	"github.com/nbd-wtf/go-nostr"
	"github.com/rs/zerolog"

	"github.com/sparecycles/sparecycles/internal/invoice"
	"github.com/sparecycles/sparecycles/nips/escrow"
	"github.com/sparecycles/sparecycles/nips/nip47"
	"github.com/sparecycles/sparecycles/nips/nip90"
)

// prepayScheme is plain NIP-90: payment-required feedback with an invoice; once it settles
// the job is recorded paid and runs. A paid job that cannot be delivered is a debt (owe).
type prepayScheme struct{ w *Worker }

func (prepayScheme) name() string { return escrow.SchemePrepay }

// quote sends payment-required feedback with an invoice for the price, recording the quote
// before it goes out. The job waits outside the run queue until paid.
func (s prepayScheme) quote(ctx context.Context, j *job, log zerolog.Logger, q quote) error {
	w := s.w
	tx, err := w.wallet.MakeInvoice(ctx, nip47.MakeInvoiceParams{
		Amount: q.price, Description: invoice.Description(j.event.ID), Expiry: int64(w.cfg.InvoiceExpiry / time.Second),
	})
	if err != nil {
		return fmt.Errorf("make invoice: %w", err)
	}
	if err := w.store.put(ctx, storedJob{
		ID: j.event.ID, State: StateQuoted, Customer: j.event.PubKey, AmountMsat: q.price, Scheme: escrow.SchemePrepay,
		Bolt11: tx.Invoice, PaymentHash: tx.PaymentHash, Request: j.event, Relays: urls(j.relays()),
	}); err != nil {
		return err
	}
	w.awaiting.add(tx.PaymentHash, j)
	fb := nip90.JobFeedback{
		CreatedAt: nostr.Now(), JobID: j.event.ID, Customer: j.event.PubKey, Status: nip90.StatusPaymentRequired,
		Amount: &nip90.Amount{Msat: q.price, Bolt11: tx.Invoice},
	}
	w.publishFeedback(ctx, j, fb)
	log.Info().Int64("msat", q.price).Str("hash", tx.PaymentHash).Msg("quoted")
	return nil
}

// funded records a settled invoice and queues the job; a quote that expired unpaid fails. It
// is idempotent: a second notice of the same payment changes nothing.
func (s prepayScheme) funded(ctx context.Context, st storedJob, tx nip47.Transaction) {
	w := s.w
	switch {
	case settledTx(tx) && st.State == StateQuoted:
		if ok, err := w.store.advance(ctx, st.ID, StateQuoted, StatePaid); err != nil || !ok {
			return
		}
		w.log.Info().Str("job", st.ID).Int64("msat", st.AmountMsat).Msg("paid")
		w.enqueueFunded(ctx, st, nil)
	case expiredTx(tx) && st.State == StateQuoted:
		if j := w.awaiting.take(st.PaymentHash); j != nil {
			w.store.advance(ctx, st.ID, StateQuoted, StateFailed)
			w.log.Info().Str("job", st.ID).Msg("quote expired unpaid")
		}
	}
}

func (prepayScheme) seal(context.Context, *job, zerolog.Logger, *link, *nip90.JobResult) bool {
	return true
}

func (s prepayScheme) settle(ctx context.Context, j *job, log zerolog.Logger, _ *link, _ delivery) bool {
	if _, err := s.w.store.advance(ctx, j.event.ID, StateRunning, StateDelivered); err != nil {
		log.Error().Err(err).Msg("record delivery")
	}
	return true
}

// refund records the debt of a paid job that will not be delivered (see owe).
func (s prepayScheme) refund(ctx context.Context, j *job, log zerolog.Logger, reason string) bool {
	return s.w.owe(ctx, j, log, reason)
}

// resume waits again on an open quote, or queues a paid job to run.
func (s prepayScheme) resume(ctx context.Context, st storedJob, j *job) {
	if st.State == StateQuoted {
		s.w.awaiting.add(st.PaymentHash, j)
		return
	}
	if st.State == StatePaid || st.State == StateRunning {
		s.w.log.Info().Str("job", st.ID).Str("state", st.State).Msg("resuming paid job")
		s.w.enqueuePaid(ctx, j)
	}
}

// settledTx and expiredTx read what the wallet says of an invoice.
func settledTx(tx nip47.Transaction) bool { return tx.State == nip47.StateSettled || tx.SettledAt > 0 }

func expiredTx(tx nip47.Transaction) bool {
	return tx.State == nip47.StateExpired || (tx.State != nip47.StateAccepted && !settledTx(tx) && tx.ExpiresAt > 0 && tx.ExpiresAt < time.Now().Unix())
}
