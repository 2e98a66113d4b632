package worker

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/sparecycles/sparecycles/nips/escrow"
	"github.com/sparecycles/sparecycles/nips/nip47"
	"github.com/sparecycles/sparecycles/nips/nip90"
)

// scheme is one way a job is paid: free, prepay, after or escrow, each in its own file
// (pay_*.go). The job loop is the same for every scheme and calls these steps in order:
//
//	quote   handle, for a new job at its price: ask for the money and wait (prepay, escrow),
//	        offer or run it at once (after), or run it at once (free)
//	funded  the wallet reports the job's invoice paid (settled) or held (accepted): record it
//	        and queue the job, which runPaid then claims and runs
//	seal    the run's content becomes the result: plain (free, prepay), carrying an invoice
//	        (after), or sealed under the preimage (escrow); false ends the job (already answered)
//	settle  the result is stored: record the delivery, and take the held money (escrow);
//	        false when it was not stored where it counts (escrow: the home relay) and refunded
//	refund  a job that took money will not be delivered: return it (escrow) or record the
//	        debt (prepay); false when nothing was taken, so the caller answers plain failure
//
// resume puts a stored job back on its way after a restart.
type scheme interface {
	name() string
	quote(ctx context.Context, j *job, log zerolog.Logger, q quote) error
	funded(ctx context.Context, st storedJob, tx nip47.Transaction)
	seal(ctx context.Context, j *job, log zerolog.Logger, home *link, res *nip90.JobResult) bool
	settle(ctx context.Context, j *job, log zerolog.Logger, home *link, d delivery) bool
	refund(ctx context.Context, j *job, log zerolog.Logger, reason string) bool
	resume(ctx context.Context, st storedJob, j *job)
}

// quote is what handle knows of a new job when it hands it to its scheme.
type quote struct {
	price int64
	run   func(context.Context) (string, error)
	t0    time.Time   // when the job was taken from the queue
	claim *claimAhead // a free job's claim, sent as it was taken (nil: claim when running)
}

// schemes are a worker's payment schemes, by name.
type schemes map[string]scheme

func newSchemes(w *Worker) schemes {
	return schemes{
		schemeFree:          freeScheme{w},
		escrow.SchemePrepay: prepayScheme{w},
		escrow.SchemeAfter:  afterScheme{w},
		escrow.SchemeEscrow: escrowScheme{w},
	}
}

// schemeFree names the scheme of jobs that cost nothing (no wallet, or a price of 0).
const schemeFree = "free"

// schemeOf is the scheme of a stored job; rows stored before schemes were read by state.
func (w *Worker) schemeOf(st storedJob) scheme {
	if s, ok := w.schemes[st.Scheme]; ok {
		return s
	}
	if st.State == StateUnpaid || st.State == StateSettled {
		return w.schemes[escrow.SchemeAfter]
	}
	return w.schemes[escrow.SchemePrepay]
}

// jobScheme is the scheme j is paid by (free until handle or restore picks one).
func (w *Worker) jobScheme(j *job) scheme {
	j.mu.Lock()
	s := j.scheme
	j.mu.Unlock()
	if s == nil {
		return w.schemes[schemeFree]
	}
	return s
}

func (j *job) setScheme(s scheme) {
	j.mu.Lock()
	j.scheme = s
	j.mu.Unlock()
}

// parseSchemes reads a comma-separated list of payment schemes ("before" is prepay's old name).
func parseSchemes(s string) ([]string, error) {
	var out []string
	for _, name := range strings.Split(s, ",") {
		name = strings.TrimSpace(name)
		if name == PayBefore {
			name = escrow.SchemePrepay
		}
		switch name {
		case "":
			continue
		case escrow.SchemeEscrow, escrow.SchemePrepay, escrow.SchemeAfter:
		default:
			return nil, fmt.Errorf("payment scheme %q is not %s, %s or %s", name, escrow.SchemeEscrow, escrow.SchemePrepay, escrow.SchemeAfter)
		}
		if !slices.Contains(out, name) {
			out = append(out, name)
		}
	}
	return out, nil
}

// chooseSchemes decides what the worker offers by default: the configured list, else escrow and
// prepay when the wallet offers hold invoices, else prepay. A configured escrow that the wallet
// cannot do is an error.
func (w *Worker) chooseSchemes(ctx context.Context) ([]string, error) {
	if w.wallet == nil {
		return nil, nil
	}
	holds := false
	ictx, cancel := context.WithTimeout(ctx, 15*time.Second)
	info, err := w.wallet.Info(ictx)
	cancel()
	if err == nil {
		holds = info.SupportsHoldInvoices()
	}
	wants := slices.Contains(w.cfg.Payment, escrow.SchemeEscrow)
	for _, m := range w.models {
		wants = wants || slices.Contains(m.manifest.schemes, escrow.SchemeEscrow)
	}
	switch {
	case wants && !holds && err != nil:
		return nil, fmt.Errorf("payment escrow: the wallet's info event: %w", err)
	case wants && !holds:
		return nil, fmt.Errorf("payment escrow: the wallet does not offer %s (it offers %s)", strings.Join(nip47.HoldInvoiceMethods, ", "), strings.Join(info.Methods, " "))
	case len(w.cfg.Payment) > 0:
		return w.cfg.Payment, nil
	case holds:
		return []string{escrow.SchemeEscrow, escrow.SchemePrepay}, nil
	}
	if err != nil {
		w.log.Warn().Err(err).Msg("wallet info not read: offering prepay only")
	}
	return []string{escrow.SchemePrepay}, nil
}

// offered is what model m is paid by: its manifest's "payment", else the worker's schemes.
func (w *Worker) offered(m *model) []string {
	if len(m.manifest.schemes) > 0 {
		return m.manifest.schemes
	}
	return w.payments
}

// pick chooses how a priced job is paid: the first scheme of the customer's request (its
// "payment" tag, in its order of preference) that the model offers. A request without the
// tag comes from a plain NIP-90 client, which can pay before (prepay) or after (a result
// with an invoice), not open a sealed result.
func (w *Worker) pick(j *job) (scheme, error) {
	accepts := []string{escrow.SchemePrepay, escrow.SchemeAfter}
	if j.event.Tags.Find(escrow.PaymentTag) != nil {
		accepts = escrow.PaymentSchemes(j.event.Tags)
	}
	offers := w.offered(j.model)
	for _, s := range accepts {
		if slices.Contains(offers, s) {
			return w.schemes[s], nil
		}
	}
	return nil, reject("payment: this worker is paid by %s for this job; the request accepts %s",
		strings.Join(offers, ", "), strings.Join(accepts, ", "))
}
