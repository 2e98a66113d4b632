package worker

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/nbd-wtf/go-nostr"
	"github.com/rs/zerolog"

	"github.com/sparecycles/sparecycles/internal/invoice"
	"github.com/sparecycles/sparecycles/internal/relayconn"
	"github.com/sparecycles/sparecycles/nips/nip47"
	"github.com/sparecycles/sparecycles/nips/nip90"
)

// walletAPI is what the worker asks of its NWC wallet; *nip47.Client provides it.
type walletAPI interface {
	MakeInvoice(ctx context.Context, p nip47.MakeInvoiceParams) (nip47.Transaction, error)
	LookupInvoice(ctx context.Context, p nip47.LookupInvoiceParams) (nip47.Transaction, error)
	Notifications(ctx context.Context) (<-chan nip47.Notification, error)
}

// Payment modes of a model (manifest "payment").
const (
	PayBefore = "before" // default: payment-required, then run
	PayAfter  = "after"  // run, then a result carrying the invoice
)

// connectWallet opens the NWC connection to the worker's wallet.
func (w *Worker) connectWallet(raw string) error {
	uri, err := nip47.ParseURI(raw)
	if err != nil {
		return fmt.Errorf("nwc: %w", err)
	}
	pool := relayconn.NewPool(uri.Relays)
	w.wallet = nip47.NewClient(uri, pool)
	w.closeNWC = pool.Close
	w.log.Info().Str("wallet", uri.String()).Msg("payments through NWC")
	return nil
}

func (w *Worker) payment() string {
	if w.wallet == nil {
		return "free"
	}
	return "lightning"
}

// price is what a job with units of input costs on model m, in msats.
func (m *model) price(units float64) int64 {
	p := m.manifest.Price
	return p.BaseMsat + int64(math.Ceil(float64(p.PerUnitMsat)*units))
}

// awaiting holds quoted jobs until their invoices settle, by payment hash.
type awaiting struct {
	mu   sync.Mutex
	jobs map[string]*job
}

func (a *awaiting) add(hash string, j *job) {
	a.mu.Lock()
	a.jobs[hash] = j
	a.mu.Unlock()
}

func (a *awaiting) take(hash string) *job {
	a.mu.Lock()
	defer a.mu.Unlock()
	j := a.jobs[hash]
	delete(a.jobs, hash)
	return j
}

func (a *awaiting) hashes() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]string, 0, len(a.jobs))
	for h := range a.jobs {
		out = append(out, h)
	}
	return out
}

// quote sends payment-required feedback with an invoice for price, recording the quote
// before it goes out. The job waits outside the run queue until paid.
func (w *Worker) quote(ctx context.Context, j *job, price int64, log zerolog.Logger) error {
	tx, err := w.wallet.MakeInvoice(ctx, nip47.MakeInvoiceParams{
		Amount: price, Description: invoice.Description(j.event.ID), Expiry: int64(w.cfg.InvoiceExpiry / time.Second),
	})
	if err != nil {
		return fmt.Errorf("make invoice: %w", err)
	}
	if err := w.store.put(ctx, storedJob{
		ID: j.event.ID, State: StateQuoted, Customer: j.event.PubKey, AmountMsat: price,
		Bolt11: tx.Invoice, PaymentHash: tx.PaymentHash, Request: j.event, Relays: urls(j.relays()),
	}); err != nil {
		return err
	}
	w.awaiting.add(tx.PaymentHash, j)
	fb := nip90.JobFeedback{
		CreatedAt: nostr.Now(), JobID: j.event.ID, Customer: j.event.PubKey, Status: nip90.StatusPaymentRequired,
		Amount: &nip90.Amount{Msat: price, Bolt11: tx.Invoice},
	}
	w.publishFeedback(ctx, j, fb)
	log.Info().Int64("msat", price).Str("hash", tx.PaymentHash).Msg("quoted")
	return nil
}

// watchPayments moves quoted jobs to the paid queue when their invoices settle: from wallet
// notifications, and by polling lookup_invoice in case a notification is missed.
func (w *Worker) watchPayments(ctx context.Context) {
	notes := make(<-chan nip47.Notification)
	if ch, err := w.wallet.Notifications(ctx); err == nil {
		notes = ch
	} else {
		w.log.Warn().Err(err).Msg("no wallet notifications; polling lookup_invoice")
	}
	poll := time.NewTicker(w.cfg.PaymentPoll)
	defer poll.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case n, ok := <-notes:
			if !ok {
				notes = nil
				continue
			}
			if n.Type == nip47.NotificationPaymentReceived && n.Transaction.PaymentHash != "" {
				w.settled(ctx, n.Transaction.PaymentHash)
			}
		case <-poll.C:
			w.pollPayments(ctx)
		}
	}
}

func (w *Worker) pollPayments(ctx context.Context) {
	hashes := w.awaiting.hashes()
	if unpaid, err := w.store.inState(ctx, StateUnpaid); err == nil {
		for _, j := range unpaid {
			hashes = append(hashes, j.PaymentHash)
		}
	}
	for _, h := range hashes {
		lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		tx, err := w.wallet.LookupInvoice(lctx, nip47.LookupInvoiceParams{PaymentHash: h})
		cancel()
		switch {
		case err != nil:
			w.log.Debug().Err(err).Str("hash", h).Msg("lookup invoice")
		case tx.State == nip47.StateSettled || tx.SettledAt > 0:
			w.settled(ctx, h)
		case tx.State == nip47.StateExpired || (tx.ExpiresAt > 0 && tx.ExpiresAt < time.Now().Unix()):
			if j := w.awaiting.take(h); j != nil {
				w.store.advance(ctx, j.event.ID, StateQuoted, StateFailed)
				w.log.Info().Str("job", j.event.ID).Msg("quote expired unpaid")
			}
		}
	}
}

// settled records a payment and queues the job. It is idempotent: a second notice of the
// same payment changes nothing.
func (w *Worker) settled(ctx context.Context, hash string) {
	st, err := w.store.byHash(ctx, hash)
	if err != nil {
		return // not one of ours
	}
	switch st.State {
	case StateUnpaid:
		if ok, _ := w.store.advance(ctx, st.ID, StateUnpaid, StateSettled); ok {
			w.log.Info().Str("job", st.ID).Int64("msat", st.AmountMsat).Msg("post-paid job settled")
		}
		return
	case StateQuoted:
	default:
		return
	}
	ok, err := w.store.advance(ctx, st.ID, StateQuoted, StatePaid)
	if err != nil || !ok {
		return
	}
	w.log.Info().Str("job", st.ID).Int64("msat", st.AmountMsat).Msg("paid")
	j := w.awaiting.take(hash)
	if j == nil {
		if j, err = w.restore(st); err != nil {
			w.log.Error().Err(err).Str("job", st.ID).Msg("paid job cannot be restored")
			return
		}
	}
	w.enqueuePaid(ctx, j)
}

// enqueuePaid queues a paid job; paid work is never refused as busy.
func (w *Worker) enqueuePaid(ctx context.Context, j *job) {
	select {
	case w.paid[j.model] <- j:
	case <-ctx.Done():
	}
}

// restore rebuilds a job from the store after a restart.
func (w *Worker) restore(st storedJob) (*job, error) {
	req, err := nip90.ParseJobRequest(st.Request)
	if err != nil {
		return nil, err
	}
	m, err := w.route(req)
	if err != nil {
		return nil, err
	}
	_, j := w.seen.add(st.ID, nil)
	j.req, j.event, j.model = req, st.Request, m
	for _, u := range st.Relays {
		for _, l := range w.links {
			if sameRelay(l.url, u) {
				j.addRelay(l)
			}
		}
	}
	return j, nil
}

// resume re-queues what was paid but not delivered before a restart, and waits again on
// quotes still open.
func (w *Worker) resume(ctx context.Context) error {
	jobs, err := w.store.inState(ctx, StatePaid, StateRunning, StateQuoted)
	if err != nil {
		return err
	}
	for _, st := range jobs {
		j, err := w.restore(st)
		if err != nil {
			w.log.Error().Err(err).Str("job", st.ID).Msg("stored job cannot be restored")
			continue
		}
		if st.State == StateQuoted {
			w.awaiting.add(st.PaymentHash, j)
			continue
		}
		w.log.Info().Str("job", st.ID).Str("state", st.State).Msg("resuming paid job")
		w.enqueuePaid(ctx, j)
	}
	return nil
}

// postPayAllowed checks the customer's unpaid balance against the limit.
func (w *Worker) postPayAllowed(ctx context.Context, customer string, price int64) error {
	owed, err := w.store.unpaid(ctx, customer)
	if err != nil {
		return err
	}
	if owed+price > w.cfg.MaxUnpaidMsat {
		return reject("you owe %d msat for delivered jobs; pay those first (limit %d msat)", owed, w.cfg.MaxUnpaidMsat)
	}
	return nil
}

func urls(ls []*link) []string {
	out := make([]string, 0, len(ls))
	for _, l := range ls {
		if l != nil {
			out = append(out, l.url)
		}
	}
	return out
}

var errLeaseLost = errors.New("worker: lease held by another worker")
