package worker

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/nbd-wtf/go-nostr"
	"github.com/rs/zerolog"

	"github.com/sparecycles/sparecycles/internal/invoice"
	"github.com/sparecycles/sparecycles/nips/escrow"
	"github.com/sparecycles/sparecycles/nips/nip47"
	"github.com/sparecycles/sparecycles/nips/nip90"
)

// escrowScheme is payment through a hold invoice (nips/escrow.md). The worker picks a random
// preimage P per job and quotes a hold invoice for sha256(P); the customer's payment is held,
// not spent. The job then runs, its result goes out sealed under a key derived from P, and only
// once the home relay has stored it does the worker settle the invoice with P, which hands P to
// the payer: paid if and only if the result can be opened. Anything else cancels the invoice,
// which returns the payment at once. Run and delivery must end within the settle window quoted,
// counted from the payment's arrival.
//
// States: quoted → paid (held; accepted_at recorded) → running → delivered → settled, or
// refunding → refunded from paid or running (and failed from quoted when the quote expires
// unpaid). Each is written before the side effect that follows it: delivered before
// settle_hold_invoice, refunding before cancel_hold_invoice, so a job is never both settled
// and refunded; refunded once the wallet has answered the cancel.
type escrowScheme struct{ w *Worker }

func (escrowScheme) name() string { return escrow.SchemeEscrow }

// quote records the job with a fresh preimage, then asks the wallet for the hold invoice and
// sends payment-required feedback with the amount, the invoice and the escrow tag.
func (s escrowScheme) quote(ctx context.Context, j *job, log zerolog.Logger, q quote) error {
	w := s.w
	p, err := escrow.NewPreimage()
	if err != nil {
		return err
	}
	st := storedJob{
		ID: j.event.ID, State: StateQuoted, Customer: j.event.PubKey, AmountMsat: q.price, Scheme: escrow.SchemeEscrow,
		PaymentHash: p.Hash(), Request: j.event, Relays: urls(j.relays()), Preimage: p.Hex(), SettleWindow: w.cfg.SettleWindow,
	}
	if err := w.store.put(ctx, st); err != nil { // before the invoice exists: a restart knows P
		return err
	}
	tx, err := w.wallet.MakeHoldInvoice(ctx, nip47.MakeHoldInvoiceParams{
		Amount: q.price, Description: invoice.Description(j.event.ID), Expiry: int64(w.cfg.InvoiceExpiry / time.Second),
		PaymentHash: st.PaymentHash,
	})
	if err != nil {
		w.store.advance(context.WithoutCancel(ctx), st.ID, StateQuoted, StateFailed)
		return fmt.Errorf("make hold invoice: %w", err)
	}
	st.Bolt11 = tx.Invoice
	if err := w.store.put(ctx, st); err != nil {
		s.cancel(ctx, log, st.PaymentHash)
		w.store.advance(context.WithoutCancel(ctx), st.ID, StateQuoted, StateFailed)
		return err
	}
	w.awaiting.add(st.PaymentHash, j)
	fb := nip90.JobFeedback{
		CreatedAt: nostr.Now(), JobID: j.event.ID, Customer: j.event.PubKey, Status: nip90.StatusPaymentRequired,
		Amount: &nip90.Amount{Msat: q.price, Bolt11: tx.Invoice},
		Extra:  nostr.Tags{escrow.Quote{PaymentHash: st.PaymentHash, SettleWindow: w.cfg.SettleWindow}.Tag()},
	}
	w.publishFeedback(ctx, j, fb)
	log.Info().Int64("msat", q.price).Str("hash", st.PaymentHash).Str("window", w.cfg.SettleWindow.String()).Msg("quoted with a hold invoice")
	return nil
}

// funded records a held payment (the settle window starts now) and queues the job; a quote
// that expired unpaid fails and its hold invoice is cancelled.
func (s escrowScheme) funded(ctx context.Context, st storedJob, tx nip47.Transaction) {
	w := s.w
	switch {
	case tx.State == nip47.StateAccepted && st.State == StateQuoted:
		at := time.Now()
		if ok, err := w.store.accept(ctx, st.ID, at); err != nil || !ok {
			if err != nil {
				w.log.Error().Err(err).Str("job", st.ID).Msg("record held payment")
			}
			return
		}
		st.AcceptedAt, st.State = at, StatePaid
		w.log.Info().Str("job", st.ID).Int64("msat", st.AmountMsat).Msg("payment held")
		w.enqueueFunded(ctx, st, func(j *job) { j.deadline = runDeadline(st) })
	case expiredTx(tx) && st.State == StateQuoted:
		w.awaiting.take(st.PaymentHash)
		if ok, _ := w.store.advance(ctx, st.ID, StateQuoted, StateFailed); ok {
			w.log.Info().Str("job", st.ID).Msg("quote expired unpaid")
			s.cancel(ctx, w.log, st.PaymentHash)
		}
	}
}

// settleMargin is what the run leaves of the settle window for delivery and settling.
func settleMargin(window time.Duration) time.Duration { return min(window/4, 90*time.Second) }

// runDeadline is when a held job's run must end: the window from the payment's arrival, less
// the margin for delivery and settling.
func runDeadline(st storedJob) time.Time {
	return st.AcceptedAt.Add(st.SettleWindow - settleMargin(st.SettleWindow))
}

// seal replaces the content with its sealed form and marks the result with the payment hash.
func (s escrowScheme) seal(ctx context.Context, j *job, log zerolog.Logger, _ *link, res *nip90.JobResult) bool {
	st, err := s.w.store.get(ctx, j.event.ID)
	if err == nil && st.Preimage == "" {
		err = errors.New("no preimage stored")
	}
	var p escrow.Preimage
	if err == nil {
		p, err = escrow.ParsePreimage(st.Preimage)
	}
	if err == nil {
		res.Content, err = escrow.SealContent(p, j.event.ID, []byte(res.Content))
	}
	if err != nil {
		log.Error().Err(err).Msg("seal result")
		s.w.fail(ctx, j, log, fmt.Errorf("seal result: %w", err))
		return false
	}
	res.Extra = append(res.Extra, escrow.ResultTag(st.PaymentHash))
	return true
}

// settle takes the held payment once the result is stored where it counts: on the home
// relay, or anywhere when no relay coordinates leases. The delivery is recorded first, so
// a restart settles it rather than running it again; settled is recorded after.
func (s escrowScheme) settle(ctx context.Context, j *job, log zerolog.Logger, home *link, d delivery) bool {
	w := s.w
	if home != nil && !slices.Contains(d.accepted, home) {
		s.refund(ctx, j, log, fmt.Sprintf("the home relay %s did not store the result", home.url))
		return false
	}
	ok, err := w.store.advance(context.WithoutCancel(ctx), j.event.ID, StateRunning, StateDelivered)
	if err != nil || !ok {
		log.Error().Err(err).Msg("record delivery: not settling")
		return false
	}
	st, err := w.store.get(context.WithoutCancel(ctx), j.event.ID)
	if err != nil {
		log.Error().Err(err).Msg("read job to settle: settles on restart")
		return true
	}
	s.settleStored(ctx, st, log)
	return true
}

// settleStored settles a delivered job's hold invoice and records it settled, retrying a
// few times; a job the wallet did not answer for is settled again by the payment poll (and
// at the next start), one the wallet refused at the next start only. It does nothing while
// another settle of the job is in flight.
func (s escrowScheme) settleStored(ctx context.Context, st storedJob, log zerolog.Logger) {
	if st.State != StateDelivered || !s.w.holds.begin(st.ID) {
		return
	}
	s.w.holds.end(st.ID, s.settleOnce(ctx, st, log))
}

// settleOnce is settleStored's work, for a job whose settle is marked in flight; it reports
// whether the wallet refused the settle.
func (s escrowScheme) settleOnce(ctx context.Context, st storedJob, log zerolog.Logger) (refused bool) {
	w := s.w
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 60*time.Second)
	defer cancel()
	var err error
	for wait := time.Second; ; wait *= 2 {
		if err = w.wallet.SettleHoldInvoice(sctx, st.Preimage); err == nil {
			break
		}
		var werr *nip47.Error
		if errors.As(err, &werr) {
			return s.settleRefused(sctx, st, log, err)
		}
		if wait > 8*time.Second {
			log.Error().Err(err).Str("hash", st.PaymentHash).Msg("settle hold invoice: no answer; the payment poll tries again")
			return false
		}
		select {
		case <-sctx.Done():
			return false
		case <-time.After(wait):
		}
	}
	if _, err := w.store.advance(sctx, st.ID, StateDelivered, StateSettled); err != nil {
		log.Error().Err(err).Msg("record settled")
	}
	log.Info().Int64("msat", st.AmountMsat).Msg("settled")
	return false
}

// settleRefused asks the wallet what became of a hold invoice whose settle it refused, so a
// settle whose answer was lost (or that a wallet no longer remembers after its restart, as
// lnd's backend does) is recorded once and never repeated. It reports whether the refusal
// stands: the invoice is still held, or the wallet cannot tell.
func (s escrowScheme) settleRefused(ctx context.Context, st storedJob, log zerolog.Logger, err error) (refused bool) {
	w := s.w
	tx, lerr := w.wallet.LookupInvoice(ctx, nip47.LookupInvoiceParams{PaymentHash: st.PaymentHash})
	switch {
	case lerr == nil && (tx.State == nip47.StateSettled || tx.SettledAt > 0):
		if ok, _ := w.store.advance(ctx, st.ID, StateDelivered, StateSettled); ok {
			log.Info().Int64("msat", st.AmountMsat).Msg("settled (the wallet had settled it before)")
		}
		return false
	case lerr == nil && (tx.State == nip47.StateFailed || expiredTx(tx)):
		if ok, _ := w.store.advance(ctx, st.ID, StateDelivered, StateRefunded); ok {
			log.Error().Err(err).Str("hash", st.PaymentHash).Str("state", tx.State).
				Msg("the hold ended before it was settled: the result was delivered unpaid")
		}
		return false
	}
	log.Error().Err(err).AnErr("lookup", lerr).Str("hash", st.PaymentHash).Str("state", tx.State).
		Msg("settle hold invoice refused: tried again at the next start if the window allows")
	return true
}

// unfinishedBatch bounds the escrow jobs of each state one payment poll reads: far more than
// a wallet outage leaves unsettled, and refused settles (rare: the hold timed out) count too.
const unfinishedBatch = 500

// retryUnfinished settles the delivered escrow jobs and cancels the refunding ones whose
// wallet call got no answer (the wallet or its relay was down), each in the background and
// one call per job at a time, so the money does not wait for the worker's next start. The
// payment poll calls it.
func (s escrowScheme) retryUnfinished(ctx context.Context) {
	w := s.w
	jobs, err := w.store.unfinished(ctx, escrow.SchemeEscrow, unfinishedBatch, StateDelivered, StateRefunding)
	if err != nil {
		w.log.Debug().Err(err).Msg("read unfinished escrow jobs")
		return
	}
	for _, st := range jobs {
		if !w.holds.begin(st.ID) {
			continue
		}
		log := w.log.With().Str("job", st.ID).Logger()
		w.async.Add(1)
		go func() {
			defer w.async.Done()
			refused := false
			// the job's own settle may have finished between the read and begin
			if now, err := w.store.get(ctx, st.ID); err != nil || now.State != st.State {
				w.holds.end(st.ID, false)
				return
			}
			switch st.State {
			case StateDelivered:
				log.Info().Msg("settling a delivered job again")
				refused = s.settleOnce(ctx, st, log)
			case StateRefunding:
				if s.cancel(ctx, log, st.PaymentHash) {
					w.store.advance(context.WithoutCancel(ctx), st.ID, StateRefunding, StateRefunded)
				}
			}
			w.holds.end(st.ID, refused)
		}()
	}
}

// holdCalls are the escrow jobs whose settle or cancel is in flight, and those whose settle
// the wallet refused (final until the next start): the payment poll retries only the others.
type holdCalls struct {
	mu      sync.Mutex
	flying  map[string]bool
	refused map[string]bool
}

// begin marks a call for job in flight; false when one is already, or the wallet refused.
func (h *holdCalls) begin(job string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.flying[job] || h.refused[job] {
		return false
	}
	if h.flying == nil {
		h.flying, h.refused = map[string]bool{}, map[string]bool{}
	}
	h.flying[job] = true
	return true
}

// end marks job's call over, and refused when the wallet refused it.
func (h *holdCalls) end(job string, refused bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.flying, job)
	if refused {
		h.refused[job] = true
	}
}

// refund returns a held payment: the job is recorded refunded (so nothing settles it after),
// its hold invoice cancelled, and the customer told. False for a job whose payment is not
// held (not yet paid, delivered, or already settled or refunded).
func (s escrowScheme) refund(ctx context.Context, j *job, log zerolog.Logger, reason string) bool {
	w := s.w
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	st, err := w.store.get(fctx, j.event.ID)
	if err != nil || (st.State != StatePaid && st.State != StateRunning) {
		return false
	}
	if ok, err := w.store.advance(fctx, st.ID, st.State, StateRefunding); err != nil || !ok {
		return false
	}
	note := "; your payment was refunded"
	if w.holds.begin(st.ID) {
		defer w.holds.end(st.ID, false)
	}
	if s.cancel(fctx, log, st.PaymentHash) {
		w.store.advance(fctx, st.ID, StateRefunding, StateRefunded)
	} else {
		note = "; your payment will be refunded (the worker's wallet did not answer; the worker keeps trying, and the hold times out otherwise)"
	}
	log.Info().Str("reason", loggable(j, reason)).Int64("msat", st.AmountMsat).Msg("escrow job refunded")
	w.feedback(fctx, j, nip90.StatusError, clip(reason, 500)+note)
	return true
}

// cancel cancels a hold invoice, retrying a few times while the wallet does not answer. It
// reports whether the wallet answered (a refusal is logged: it is final); a hold the wallet
// never hears about ends anyway when it times out.
func (s escrowScheme) cancel(ctx context.Context, log zerolog.Logger, hash string) bool {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	for wait := time.Second; ; wait *= 2 {
		err := s.w.wallet.CancelHoldInvoice(cctx, hash)
		if err == nil {
			return true
		}
		var werr *nip47.Error
		if errors.As(err, &werr) {
			log.Error().Err(err).Str("hash", hash).Msg("cancel hold invoice refused")
			return true
		}
		if wait > 4*time.Second {
			log.Error().Err(err).Str("hash", hash).Msg("cancel hold invoice: no answer; cancelled again at the next start")
			return false
		}
		select {
		case <-cctx.Done():
			return false
		case <-time.After(wait):
		}
	}
}

// resume puts a stored escrow job back on its way: a quote waits again; a held job runs if
// its window leaves time, else is refunded; a delivered one is settled.
func (s escrowScheme) resume(ctx context.Context, st storedJob, j *job) {
	w := s.w
	log := w.log.With().Str("job", st.ID).Logger()
	switch st.State {
	case StateQuoted:
		w.awaiting.add(st.PaymentHash, j)
	case StatePaid, StateRunning:
		if st.AcceptedAt.IsZero() || time.Now().After(runDeadline(st)) {
			s.refund(ctx, j, log, "the settle window closed while the worker was down")
			return
		}
		log.Info().Str("state", st.State).Msg("resuming held job")
		j.deadline = runDeadline(st)
		w.enqueuePaid(ctx, j)
	case StateDelivered:
		log.Info().Msg("settling a delivered job")
		s.settleStored(ctx, st, log)
	case StateRefunding:
		if !w.holds.begin(st.ID) {
			return
		}
		defer w.holds.end(st.ID, false)
		if s.cancel(ctx, log, st.PaymentHash) {
			w.store.advance(ctx, st.ID, StateRefunding, StateRefunded)
		}
	}
}
