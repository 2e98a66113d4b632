package worker

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/sparecycles/sparecycles/internal/relayconn"
	"github.com/sparecycles/sparecycles/nips/escrow"
	"github.com/sparecycles/sparecycles/nips/nip47"
)

// walletAPI is what the worker asks of its NWC wallet; *nip47.Client provides it.
type walletAPI interface {
	MakeInvoice(ctx context.Context, p nip47.MakeInvoiceParams) (nip47.Transaction, error)
	LookupInvoice(ctx context.Context, p nip47.LookupInvoiceParams) (nip47.Transaction, error)
	Notifications(ctx context.Context) (<-chan nip47.Notification, error)
	// Info is the wallet's info event (kind 13194): the methods it offers.
	Info(ctx context.Context) (nip47.Info, error)
	// Hold invoices, for escrow.
	MakeHoldInvoice(ctx context.Context, p nip47.MakeHoldInvoiceParams) (nip47.Transaction, error)
	SettleHoldInvoice(ctx context.Context, preimage string) error
	CancelHoldInvoice(ctx context.Context, paymentHash string) error
}

// Payment modes of a model (manifest "payment"), by their old names; see scheme.go for all.
const (
	PayBefore = "before" // prepay: payment-required, then run
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

// payment is the announcement's summary: "free" without a wallet, else "lightning".
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

// watchPayments hands wallet reports on open invoices to their jobs' schemes: settled
// (prepay, after) or held (escrow) moves a quoted job to the paid queue. Reports come from
// wallet notifications, and from polling lookup_invoice in case a notification is missed.
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
			tx := n.Transaction
			if tx.PaymentHash == "" {
				continue
			}
			switch n.Type {
			case nip47.NotificationPaymentReceived:
				tx.State = nip47.StateSettled
			case nip47.NotificationHoldInvoiceAccepted:
				tx.State = nip47.StateAccepted
			default:
				continue
			}
			w.funds(ctx, tx)
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
	hashes = append(hashes, w.partHashes(ctx)...)
	for _, h := range hashes {
		lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		tx, err := w.wallet.LookupInvoice(lctx, nip47.LookupInvoiceParams{PaymentHash: h})
		cancel()
		if err != nil {
			w.log.Debug().Err(err).Str("hash", h).Msg("lookup invoice")
			continue
		}
		tx.PaymentHash = h
		w.funds(ctx, tx)
	}
	escrowScheme{w}.retryUnfinished(ctx)
	w.retryParts(ctx)
}

// funds hands what the wallet says of an invoice to the scheme of the job it is for.
func (w *Worker) funds(ctx context.Context, tx nip47.Transaction) {
	st, err := w.store.byHash(ctx, tx.PaymentHash)
	if err != nil {
		w.partFunds(ctx, tx) // a stream's part, or not one of ours
		return
	}
	w.schemeOf(st).funded(ctx, st, tx)
}

// enqueueFunded queues a job its scheme has just recorded paid: the job waiting on the quote,
// or, after a restart, one rebuilt from the store. prep (may be nil) adjusts it first.
func (w *Worker) enqueueFunded(ctx context.Context, st storedJob, prep func(*job)) {
	j := w.awaiting.take(st.PaymentHash)
	if j == nil {
		var err error
		if j, err = w.restore(st); err != nil {
			w.log.Error().Err(err).Str("job", st.ID).Msg("paid job cannot be restored")
			return
		}
	}
	if prep != nil {
		prep(j)
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
	req, private, err := w.parseRequest(st.Request)
	if err != nil {
		return nil, err
	}
	m, err := w.route(req)
	if err != nil {
		return nil, err
	}
	_, j := w.seen.add(st.ID, nil)
	j.req, j.event, j.model, j.private = req, st.Request, m, private
	j.setScheme(w.schemeOf(st))
	for _, u := range st.Relays {
		for _, l := range w.links {
			if sameRelay(l.url, u) {
				j.addRelay(l)
			}
		}
	}
	return j, nil
}

// resume hands each job a restart interrupted to its scheme: quotes still open wait again,
// paid jobs not delivered run, escrow jobs delivered but not settled settle, and escrow
// refunds whose cancel the wallet never answered are cancelled again.
func (w *Worker) resume(ctx context.Context) error {
	jobs, err := w.store.inState(ctx, StatePaid, StateRunning, StateQuoted, StateDelivered, StateRefunding)
	if err != nil {
		return err
	}
	for _, st := range jobs {
		if (st.State == StateDelivered || st.State == StateRefunding) && st.Scheme != escrow.SchemeEscrow {
			continue // delivered is where prepay ends
		}
		j, err := w.restore(st)
		if err != nil {
			w.log.Error().Err(err).Str("job", st.ID).Msg("stored job cannot be restored")
			continue
		}
		w.schemeOf(st).resume(ctx, st, j)
	}
	return w.resumeStreams(ctx)
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
