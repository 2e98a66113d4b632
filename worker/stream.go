package worker

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nbd-wtf/go-nostr"
	"github.com/rs/zerolog"

	"github.com/sparecycles/sparecycles/nips/escrow"
	"github.com/sparecycles/sparecycles/nips/nip01"
	"github.com/sparecycles/sparecycles/nips/nip47"
	"github.com/sparecycles/sparecycles/nips/nip90"
	"github.com/sparecycles/sparecycles/nips/stream"
)

// Streams (nips/stream.md): an OCR request with two or more inputs is served part by part,
// one input a part. Each part is priced and quoted on its own (a hold invoice with escrow, a
// plain invoice with prepay), at most cfg.StreamWindow parts quoted and not finished; a part
// runs once its payment is held or settled, strictly in order, and goes out as "partial"
// feedback (sealed under its own preimage with escrow, settled once the home relay stored
// it). The final result joins the parts. The customer stops a stream by deleting its request.
//
// One goroutine drives each stream (streamRun.drive); the store is its memory, so a restart
// picks the stream up where it was (resumeStreams). Payments reach it through partFunds,
// called by the worker's payment watcher.

// streamSet is the streams being served, by job id.
type streamSet struct {
	mu     sync.Mutex
	active map[string]*streamRun
	slots  map[*model]chan struct{} // parts running per model, at most --parallel
}

// slot is model m's run semaphore for parts: parts of all streams run at most parallel at
// once per model, as whole jobs do.
func (s *streamSet) slot(m *model, parallel int) chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.slots == nil {
		s.slots = map[*model]chan struct{}{}
	}
	if s.slots[m] == nil {
		s.slots[m] = make(chan struct{}, parallel)
	}
	return s.slots[m]
}

// add registers r; false when one is registered for the job already, or (unless force) when
// max are.
func (s *streamSet) add(r *streamRun, max int, force bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.active == nil {
		s.active = map[string]*streamRun{}
	}
	if _, ok := s.active[r.id]; ok || (!force && len(s.active) >= max) {
		return false
	}
	s.active[r.id] = r
	return true
}

func (s *streamSet) remove(id string) {
	s.mu.Lock()
	delete(s.active, id)
	s.mu.Unlock()
}

// nudgeAll wakes every stream's driver (the owner's pause ended, or its grace did).
func (s *streamSet) nudgeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range s.active {
		r.nudge()
	}
}

func (s *streamSet) get(id string) *streamRun {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.active[id]
}

// streamRun is one stream being served.
type streamRun struct {
	w   *Worker
	j   *job
	id  string
	row streamRow
	log zerolog.Logger

	kick    chan struct{} // a part's payment changed, or the customer stopped the stream
	stopped atomic.Bool   // the customer deleted the request

	mu        sync.Mutex
	cancelRun context.CancelFunc // the running part's, while one runs
	limit     int                // the last part served: n, or less when the bid does not cover the next
	over      string             // why the stream ends at limit when limit < n
	quoting   bool               // quotes are being made (requestQuotes)
	requote   bool               // and asked to look at the window again
	settling  map[int]bool       // delivered parts being settled
	failure   string             // why a quote or a settle ended the stream

	// The driver runs parts in order; a part's quote and a delivered part's settle run beside
	// it (tasks), so the market's round trips overlap the next part's inference.
	tasks sync.WaitGroup

	home    *link // the home relay, once claimed
	claimed bool  // the job was claimed (this run of the worker)
	resumed bool  // the stream was picked up after a restart (resumeStreams)
}

func (w *Worker) newStreamRun(j *job, row streamRow) *streamRun {
	return &streamRun{
		w: w, j: j, id: j.event.ID, row: row, limit: row.N, kick: make(chan struct{}, 1), settling: map[int]bool{},
		log: w.log.With().Str("job", j.event.ID).Str("stream", row.Scheme).Int("parts", row.N).Logger(),
	}
}

// nudge wakes the stream's driver.
func (r *streamRun) nudge() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// stop is the customer's deletion: nothing more is quoted, the running part is cancelled.
func (r *streamRun) stop() {
	if r.stopped.Swap(true) {
		return
	}
	r.log.Info().Msg("the customer deleted the request: stopping the stream")
	r.mu.Lock()
	if r.cancelRun != nil {
		r.cancelRun()
	}
	r.mu.Unlock()
	r.nudge()
}

// streamed serves a request with several inputs to an OCR model as a stream, and reports
// true; for any other request it reports false and handle serves it as one job.
func (w *Worker) streamed(ctx context.Context, j *job, log zerolog.Logger) bool {
	if j.model.manifest.Task != TaskOCR || len(j.req.Inputs) < 2 {
		return false
	}
	n := len(j.req.Inputs)
	if n > w.cfg.MaxParts {
		w.fail(ctx, j, log, reject("a request of %d inputs is a stream of %d parts; this worker serves at most %d parts (--max-parts)", n, n, w.cfg.MaxParts))
		return true
	}
	scheme, err := w.streamScheme(j)
	if err != nil {
		w.fail(ctx, j, log, err)
		return true
	}
	r := w.newStreamRun(j, streamRow{JobID: j.event.ID, N: n, Window: w.cfg.StreamWindow, Scheme: scheme})
	if !w.streams.add(r, w.cfg.MaxStreams, false) {
		w.busy.Add(1)
		w.feedback(ctx, j, nip90.StatusError, "busy: too many streams in progress, try again shortly")
		return true
	}
	if scheme != schemeFree {
		st := storedJob{ID: j.event.ID, Customer: j.event.PubKey, Request: j.event, Relays: urls(j.relays())}
		if err := w.store.putStream(ctx, st, r.row); err != nil {
			w.streams.remove(r.id)
			w.fail(ctx, j, log, err)
			return true
		}
	}
	log.Info().Int("parts", n).Str("payment", scheme).Int("window", r.row.Window).Msg("stream started")
	w.startStream(ctx, r)
	return true
}

// startStream runs r's driver in the background.
func (w *Worker) startStream(ctx context.Context, r *streamRun) {
	w.async.Add(1)
	go func() {
		defer w.async.Done()
		defer w.streams.remove(r.id)
		r.drive(ctx)
	}()
}

// streamScheme is how a stream's parts are paid: free (no wallet, or a model that costs
// nothing), else escrow or prepay, the first of the request's "payment" tag that the model
// offers. Post-pay does not stream: a part is paid before it is read.
func (w *Worker) streamScheme(j *job) (string, error) {
	p := j.model.manifest.Price
	if w.wallet == nil || (p.BaseMsat == 0 && p.PerUnitMsat == 0) {
		return schemeFree, nil
	}
	accepts := []string{escrow.SchemePrepay}
	if j.event.Tags.Find(escrow.PaymentTag) != nil {
		accepts = escrow.PaymentSchemes(j.event.Tags)
	}
	offers := w.offered(j.model)
	for _, s := range accepts {
		if (s == escrow.SchemeEscrow || s == escrow.SchemePrepay) && slices.Contains(offers, s) {
			return s, nil
		}
	}
	if !slices.Contains(offers, escrow.SchemeEscrow) && !slices.Contains(offers, escrow.SchemePrepay) {
		return "", reject("this worker is paid after delivery for this model, and a streamed job (several inputs) is paid part by part, by escrow or prepay: post one input per job")
	}
	return "", reject("payment: this worker is paid by %s for streamed jobs; the request accepts %s",
		strings.Join(slices.DeleteFunc(slices.Clone(offers), func(s string) bool { return s == escrow.SchemeAfter }), ", "), strings.Join(accepts, ", "))
}

// subRequest is part k's request: the stream's request with its k-th input alone.
func (r *streamRun) subRequest(k int) *nip90.JobRequest {
	sub := *r.j.req
	sub.Inputs = []nip90.Input{r.j.req.Inputs[k-1]}
	return &sub
}

func (r *streamRun) escrow() bool { return r.row.Scheme == escrow.SchemeEscrow }

// finished reports whether part p no longer counts against the window: delivered, and with
// escrow settled.
func (r *streamRun) finished(p storedPart) bool {
	if r.escrow() {
		return p.State == StateSettled
	}
	return p.State == StateDelivered
}

// drive serves the stream until it ends or ctx does (then the store keeps it for a restart).
// It runs the paid parts in order; quotes and settles run beside it (see startQuote and
// startSettle) and nudge it when they are done.
func (r *streamRun) drive(ctx context.Context) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer r.tasks.Wait() // nothing of the stream runs after its driver
	r.watchDeletion(ctx)
	if r.row.Scheme == schemeFree {
		r.driveFree(ctx)
		return
	}
	if r.resumed {
		r.resendQuotes(ctx)
	}
	for ctx.Err() == nil {
		if r.stopped.Load() {
			r.tasks.Wait()
			r.end(ctx, fmt.Sprintf("stopped by the customer after %d of %d parts", r.delivered(ctx), r.row.N))
			return
		}
		parts, err := r.w.store.parts(ctx, r.id)
		if err != nil {
			r.log.Error().Err(err).Msg("read parts")
			r.tasks.Wait()
			r.end(ctx, "stream ended: internal error")
			return
		}
		r.mu.Lock()
		limit, over, quoting, failure := r.limit, r.over, r.quoting, r.failure
		r.mu.Unlock()
		if failure != "" {
			r.tasks.Wait()
			r.end(ctx, failure)
			return
		}
		// finished: the first part not finished (the window counts from it); next: the first
		// part not delivered (the one to run)
		finished, next := r.finishedPrefix(parts), 1
		for _, p := range parts {
			if p.State != StateDelivered && p.State != StateSettled {
				break
			}
			next = p.K + 1
		}
		if finished > r.row.N {
			r.tasks.Wait()
			r.finish(ctx, parts)
			return
		}
		if finished > limit && !quoting {
			r.tasks.Wait()
			r.end(ctx, over)
			return
		}
		for _, p := range parts {
			switch p.State {
			case StateFailed:
				r.tasks.Wait()
				r.endStream(ctx, fmt.Sprintf("stream ended: part %d was not paid", p.K), true)
				return
			case StateRefunding, StateRefunded, StateOwed:
				r.tasks.Wait()
				r.end(ctx, fmt.Sprintf("stream ended: part %d was given up", p.K))
				return
			case StateDelivered:
				if r.escrow() {
					r.startSettle(ctx, p)
				}
			}
		}
		// while the owner needs the machine nothing new is quoted: paid parts run on (they are
		// the customer's), and once the pause's grace is over a stream with no paid part left
		// to run ends, its delivered parts settled, so the customer can take the rest elsewhere
		if paused, preempted := r.w.spare.holding(); paused {
			if preempted && next > len(parts) && !quoting {
				r.tasks.Wait()
				r.end(ctx, fmt.Sprintf("paused by owner after %d of %d parts", r.delivered(ctx), r.row.N))
				return
			}
		} else if q := len(parts) + 1; q <= min(finished-1+r.row.Window, limit) {
			r.requestQuotes(ctx)
		}
		if next > len(parts) || next > limit {
			r.wait(ctx) // for its quote, or for the settles that finish the stream
			continue
		}
		p := parts[next-1]
		switch p.State {
		case StateQuoted:
			r.awaitPayment(ctx, p)
		case StatePaid, StateRunning:
			if reason := r.runPart(ctx, p); reason != "" {
				if ctx.Err() != nil {
					return // shutting down: the part resumes on restart
				}
				r.tasks.Wait()
				r.end(ctx, reason)
				return
			}
		default:
			r.tasks.Wait()
			r.end(ctx, fmt.Sprintf("stream ended: part %d is %s", p.K, p.State))
			return
		}
	}
}

// wait waits for a nudge (a payment, a quote or settle done, a stop) or ctx's end.
func (r *streamRun) wait(ctx context.Context) {
	select {
	case <-ctx.Done():
	case <-r.kick:
	}
}

// requestQuotes makes the quotes the window allows, beside the driver, one at a time and in
// order; a quote that fails ends the stream. Called while quotes are being made, it has them
// look at the window again before they stop.
func (r *streamRun) requestQuotes(ctx context.Context) {
	r.mu.Lock()
	if r.quoting {
		r.requote = true
		r.mu.Unlock()
		return
	}
	r.quoting = true
	r.mu.Unlock()
	r.tasks.Add(1)
	go func() {
		defer r.tasks.Done()
		defer r.nudge()
		for {
			r.mu.Lock()
			r.requote = false
			r.mu.Unlock()
			reason, quoted := r.quoteNext(ctx)
			r.mu.Lock()
			if reason != "" && r.failure == "" {
				r.failure = reason
			}
			if reason != "" || ctx.Err() != nil || (!quoted && !r.requote) {
				r.quoting = false
				r.mu.Unlock()
				return
			}
			r.mu.Unlock()
			r.nudge() // the driver may be waiting for this quote
		}
	}()
}

// quoteNext quotes the next part when the window and the bid allow it, reporting whether it
// did. Only one runs at a time (requestQuotes), so the parts it reads include every quote.
func (r *streamRun) quoteNext(ctx context.Context) (reason string, quoted bool) {
	if paused, _ := r.w.spare.gate(); r.stopped.Load() || paused {
		return "", false // paused: the driver asks again when the owner leaves (nudgeAll)
	}
	parts, err := r.w.store.parts(ctx, r.id)
	if err != nil {
		if ctx.Err() != nil {
			return "", false
		}
		r.log.Error().Err(err).Msg("read parts")
		return "stream ended: internal error", false
	}
	r.mu.Lock()
	limit := r.limit
	r.mu.Unlock()
	q := len(parts) + 1
	if q > min(r.finishedPrefix(parts)-1+r.row.Window, limit) {
		return "", false
	}
	if reason := r.quotePart(ctx, q, parts); reason != "" {
		return reason, false
	}
	return "", true
}

// finishedPrefix is the first part not finished (n+1 when all are): the window counts from it.
func (r *streamRun) finishedPrefix(parts []storedPart) int {
	finished := 1
	for _, p := range parts {
		if !r.finished(p) {
			break
		}
		finished = p.K + 1
	}
	return finished
}

// startSettle settles delivered escrow part p beside the driver, unless that is under way; a
// settle that fails ends the stream. A part the payment poll is settling meanwhile is left
// to it and looked at again shortly.
func (r *streamRun) startSettle(ctx context.Context, p storedPart) {
	r.mu.Lock()
	if r.settling[p.K] {
		r.mu.Unlock()
		return
	}
	r.settling[p.K] = true
	r.mu.Unlock()
	r.tasks.Add(1)
	go func() {
		defer r.tasks.Done()
		key := partKey(p)
		settled, busy := false, !r.w.holds.begin(key)
		if !busy {
			var refused bool
			settled, refused = r.w.settlePartOnce(ctx, p, r.log)
			r.w.holds.end(key, refused)
		}
		if busy {
			select { // the other settle records the part; read it again after a moment
			case <-ctx.Done():
			case <-time.After(200 * time.Millisecond):
			}
		}
		if settled {
			r.requestQuotes(ctx) // a finished part opens the window by one
		}
		r.mu.Lock()
		delete(r.settling, p.K)
		if !settled && !busy && ctx.Err() == nil && r.failure == "" {
			r.failure = fmt.Sprintf("stream ended: part %d could not be settled", p.K)
		}
		r.mu.Unlock()
		r.nudge()
	}()
}

// awaitPayment waits for part p's payment (or a stop): the payment watcher records it and
// nudges the driver. Past the invoice's expiry the driver asks the wallet itself.
func (r *streamRun) awaitPayment(ctx context.Context, p storedPart) {
	t := time.NewTimer(r.w.cfg.InvoiceExpiry + 2*r.w.cfg.PaymentPoll)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-r.kick:
	case <-t.C:
		lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		tx, err := r.w.wallet.LookupInvoice(lctx, nip47.LookupInvoiceParams{PaymentHash: p.PaymentHash})
		cancel()
		if err != nil {
			r.log.Warn().Err(err).Int("part", p.K).Msg("look up a part's invoice")
			return
		}
		tx.PaymentHash = p.PaymentHash
		if !expiredTx(tx) && tx.State != nip47.StateAccepted && !settledTx(tx) {
			tx.State = nip47.StateExpired // past its expiry and more: it is not going to be paid
		}
		r.w.partFunds(ctx, tx)
	}
}

// quotePart prices part k, records it and sends its quote; a non-empty reason ends the stream.
// A part the bid does not cover is not quoted: the stream ends once the parts before it are
// finished.
func (r *streamRun) quotePart(ctx context.Context, k int, parts []storedPart) (reason string) {
	w := r.w
	_, units, err := r.j.model.prepare(ctx, r.subRequest(k))
	if err != nil {
		return r.partError(k, err)
	}
	price := r.j.model.price(units)
	var quoted int64
	for _, p := range parts {
		quoted += p.AmountMsat
	}
	if bid := r.j.req.BidMsat; bid > 0 && quoted+price > bid {
		over := fmt.Sprintf("stream ended after %d of %d parts: part %d (%d msat) would take the job past its bid of %d msat (%d msat quoted before)",
			k-1, r.row.N, k, price, bid, quoted)
		r.mu.Lock()
		r.limit, r.over = k-1, over
		r.mu.Unlock()
		if k == 1 {
			return over
		}
		return ""
	}
	part := stream.Part{K: k, N: r.row.N}
	sp := storedPart{JobID: r.id, K: k, N: r.row.N, State: StateQuoted, AmountMsat: price}
	desc, expiry := stream.InvoiceDescription(r.id, part), int64(w.cfg.InvoiceExpiry/time.Second)
	if r.escrow() {
		p, err := escrow.NewPreimage()
		if err != nil {
			return r.partError(k, err)
		}
		sp.Preimage, sp.PaymentHash = p.Hex(), p.Hash()
		if err := w.store.putPart(ctx, sp); err != nil { // before the invoice exists: a restart knows P
			return r.partError(k, err)
		}
		tx, err := w.wallet.MakeHoldInvoice(ctx, nip47.MakeHoldInvoiceParams{Amount: price, Description: desc, Expiry: expiry, PaymentHash: sp.PaymentHash})
		if err != nil {
			if ctx.Err() != nil {
				r.unsent(ctx, k)
				return ""
			}
			w.store.advancePart(context.WithoutCancel(ctx), r.id, k, StateQuoted, StateFailed)
			return r.partError(k, fmt.Errorf("make hold invoice: %w", err))
		}
		sp.Bolt11 = tx.Invoice
		if err := w.store.setPartInvoice(ctx, r.id, k, sp.Bolt11); err != nil {
			if ctx.Err() != nil {
				r.unsent(ctx, k)
				return ""
			}
			return r.partError(k, err)
		}
	} else {
		tx, err := w.wallet.MakeInvoice(ctx, nip47.MakeInvoiceParams{Amount: price, Description: desc, Expiry: expiry})
		if err != nil {
			return r.partError(k, fmt.Errorf("make invoice: %w", err))
		}
		sp.Bolt11, sp.PaymentHash = tx.Invoice, tx.PaymentHash
		if err := w.store.putPart(ctx, sp); err != nil {
			return r.partError(k, err)
		}
	}
	w.publishFeedback(ctx, r.j, r.quote(sp))
	r.log.Info().Int("part", k).Int64("msat", price).Str("hash", sp.PaymentHash).Msg("part quoted")
	return ""
}

// quote is part p's payment-required feedback: its amount and invoice, the part and window
// tags, and for escrow the payment hash the result will be locked to.
func (r *streamRun) quote(p storedPart) nip90.JobFeedback {
	extra := nostr.Tags{stream.Part{K: p.K, N: r.row.N}.Tag(), stream.Window(r.row.Window)}
	if r.escrow() {
		extra = append(extra, escrow.Quote{PaymentHash: p.PaymentHash, SettleWindow: r.w.cfg.SettleWindow}.Tag())
	}
	return nip90.JobFeedback{
		CreatedAt: nostr.Now(), JobID: r.id, Customer: r.j.event.PubKey, Status: nip90.StatusPaymentRequired,
		Amount: &nip90.Amount{Msat: p.AmountMsat, Bolt11: p.Bolt11}, Extra: extra,
	}
}

// resendQuotes sends again, beside the driver, the quotes of a resumed stream's parts that
// are quoted and still unpaid: a shutdown just after a part's invoice was recorded may have
// cut its quote short, and the customer, who never saw it, would wait for nothing until the
// invoice expired. A quote the customer did get arrives twice, with the same invoice, which
// Lightning pays at most once. A part the wallet reports paid (or expired) is not re-sent; one
// the wallet cannot be asked about is.
func (r *streamRun) resendQuotes(ctx context.Context) {
	parts, err := r.w.store.parts(ctx, r.id)
	if err != nil {
		return // the driver reads them too, and ends the stream over the error
	}
	var open []storedPart
	for _, p := range parts {
		if p.State == StateQuoted && p.Bolt11 != "" {
			open = append(open, p)
		}
	}
	if len(open) == 0 {
		return
	}
	r.tasks.Add(1)
	go func() {
		defer r.tasks.Done()
		for _, p := range open {
			lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			tx, err := r.w.wallet.LookupInvoice(lctx, nip47.LookupInvoiceParams{PaymentHash: p.PaymentHash})
			cancel()
			if ctx.Err() != nil {
				return
			}
			if err == nil && (tx.State == nip47.StateAccepted || settledTx(tx) || expiredTx(tx) || tx.State == nip47.StateFailed) {
				continue // the payment watcher records it
			}
			if err != nil {
				r.log.Warn().Err(err).Int("part", p.K).Msg("look up a quoted part's invoice: sending its quote again anyway")
			}
			r.w.publishFeedback(ctx, r.j, r.quote(p))
			r.log.Info().Int("part", p.K).Int64("msat", p.AmountMsat).Str("hash", p.PaymentHash).Msg("part quoted again after the restart")
		}
	}()
}

// unsent forgets part k, whose quote a shutdown cut short before it went out (a failed part
// would end the stream on restart): the restart quotes it again. A hold invoice the wallet may
// have made meanwhile is unknown to any customer and expires unpaid.
func (r *streamRun) unsent(ctx context.Context, k int) {
	if err := r.w.store.dropUnsentPart(context.WithoutCancel(ctx), r.id, k); err != nil {
		r.log.Error().Err(err).Int("part", k).Msg("forget a quote cut short by the shutdown")
	}
}

// partError is the reason a stream ends over part k's error: a rejection's reason, or
// "internal error" (logged).
func (r *streamRun) partError(k int, err error) string {
	reason := strings.TrimPrefix(nip01.Reason(err), "error: ")
	if reason == "internal" {
		r.log.Error().Err(err).Int("part", k).Msg("part failed")
	}
	return fmt.Sprintf("stream ended: part %d: %s", k, reason)
}

// partDeadline is when a held escrow part's run must end (see runDeadline).
func (r *streamRun) partDeadline(p storedPart) time.Time {
	window := r.w.cfg.SettleWindow
	return p.AcceptedAt.Add(window - settleMargin(window))
}

// runPart runs a paid part and delivers it (escrow: and starts its settle); a non-empty
// reason ends the stream.
func (r *streamRun) runPart(ctx context.Context, p storedPart) (reason string) {
	w := r.w
	if r.escrow() && time.Now().After(r.partDeadline(p)) {
		return fmt.Sprintf("stream ended: the settle window of part %d closed before it ran", p.K)
	}
	if !r.claimed {
		home, claimed, err := w.claim(ctx, r.j, true)
		if err != nil {
			return "stream ended: " + err.Error()
		}
		r.home, r.claimed = home, true
		if claimed {
			go w.renew(ctx, r.j, home) // until the stream's driver returns
		}
	}
	if p.State == StatePaid {
		if ok, err := w.store.advancePart(ctx, r.id, p.K, StatePaid, StateRunning); err != nil || !ok {
			return fmt.Sprintf("stream ended: part %d: internal error", p.K)
		}
	}
	deadline := time.Time{}
	if r.escrow() {
		deadline = r.partDeadline(p)
	}
	runCtx, cancel := context.WithCancel(ctx)
	if !deadline.IsZero() {
		runCtx, cancel = context.WithDeadline(ctx, deadline)
	}
	defer cancel()
	r.mu.Lock()
	r.cancelRun = cancel
	r.mu.Unlock()
	defer func() { r.mu.Lock(); r.cancelRun = nil; r.mu.Unlock() }()
	if r.stopped.Load() {
		return "" // the driver ends the stream
	}
	text, err := r.runText(runCtx, p)
	switch {
	case r.stopped.Load() || ctx.Err() != nil:
		return "" // stopped, or shutting down (the part runs again on restart)
	case err != nil && errors.Is(runCtx.Err(), context.DeadlineExceeded):
		return fmt.Sprintf("stream ended: part %d did not finish within the settle window", p.K)
	case err != nil:
		return r.partError(p.K, err)
	}
	w.executed.Add(1)
	part := stream.Part{K: p.K, N: r.row.N}
	fb := nip90.JobFeedback{CreatedAt: nostr.Now(), JobID: r.id, Customer: r.j.event.PubKey, Status: nip90.StatusPartial,
		Content: text, Extra: nostr.Tags{part.Tag()}}
	if r.escrow() {
		pre, err := escrow.ParsePreimage(p.Preimage)
		if err == nil {
			fb.Content, err = escrow.SealContent(pre, stream.SealContext(r.id, part), []byte(text))
		}
		if err != nil {
			return r.partError(p.K, fmt.Errorf("seal part: %w", err))
		}
		fb.Extra = append(fb.Extra, escrow.ResultTag(p.PaymentHash))
	}
	if ok, why := w.publishPartial(ctx, r.j, fb, r.home); !ok {
		return fmt.Sprintf("stream ended: part %d was not delivered: %s", p.K, why)
	}
	if ok, err := w.store.deliverPart(context.WithoutCancel(ctx), r.id, p.K, text); err != nil || !ok {
		r.log.Error().Err(err).Int("part", p.K).Msg("record part delivered")
		return fmt.Sprintf("stream ended: part %d: internal error", p.K)
	}
	r.log.Info().Int("part", p.K).Msg("part delivered")
	if r.escrow() {
		p.State, p.Text = StateDelivered, text
		r.startSettle(ctx, p) // beside the next part's run
	}
	return ""
}

// runText prepares part p's input again (as a paid job does) and runs the model on it.
func (r *streamRun) runText(ctx context.Context, p storedPart) (string, error) {
	run, units, err := r.j.model.prepare(ctx, r.subRequest(p.K))
	if err != nil {
		return "", err
	}
	if price := r.j.model.price(units); p.AmountMsat > 0 && price != p.AmountMsat {
		return "", reject("the input changed since its quote of %d msat", p.AmountMsat)
	}
	slot := r.w.streams.slot(r.j.model, r.w.cfg.Parallel)
	select {
	case slot <- struct{}{}:
	case <-ctx.Done():
		return "", ctx.Err()
	}
	defer func() { <-slot }()
	return run(ctx)
}

// publishPartial signs a part's feedback and publishes it to every relay carrying the job,
// home first, waiting for their answers. The part counts as delivered when the home relay
// stored it, or, without a home relay, any relay did; why says otherwise.
// (Every stream event the customer reads is built as a nip90.JobFeedback and signed here or in
// publishFeedback, so one step can encrypt it for private requests.)
func (w *Worker) publishPartial(ctx context.Context, j *job, fb nip90.JobFeedback, home *link) (ok bool, why string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	evt := fb.Event()
	if err := w.signFor(j, &evt); err != nil { // encrypted to the customer first for a private job
		return false, strings.TrimPrefix(nip01.Reason(err), "error: ")
	}
	var reasons []string
	for _, l := range w.resultRelays(j, home) {
		if err := l.limits().check(&evt, l.url); err != nil {
			reasons = append(reasons, err.Error())
			continue
		}
		res, err := l.publish(ctx, evt)
		switch {
		case err != nil:
			reasons = append(reasons, fmt.Sprintf("relay %s did not confirm it", l.url))
		case !res.Accepted:
			reasons = append(reasons, fmt.Sprintf("relay %s refused it: %s", l.url, clip(res.Reason, 200)))
		case home == nil || l == home:
			ok = true
		}
		if l == home && !ok {
			return false, strings.Join(reasons, "; ")
		}
	}
	if !ok && len(reasons) == 0 {
		reasons = append(reasons, "the job names no relay this worker serves")
	}
	return ok, strings.Join(reasons, "; ")
}

// settlePart settles a delivered escrow part's hold invoice and records it settled; false
// when the wallet did not (the part stays delivered: the payment poll and the next start
// settle it).
func (r *streamRun) settlePart(ctx context.Context, p storedPart) bool {
	key := partKey(p)
	if !r.w.holds.begin(key) {
		return false
	}
	refused := false
	defer func() { r.w.holds.end(key, refused) }()
	var settled bool
	settled, refused = r.w.settlePartOnce(ctx, p, r.log)
	return settled
}

func partKey(p storedPart) string { return fmt.Sprintf("%s:%d", p.JobID, p.K) }

// settlePartOnce is settleOnce for a part: the settle, retried while the wallet does not
// answer; a refusal asks the wallet what became of the invoice, so a settle whose answer was
// lost is recorded once and never repeated.
func (w *Worker) settlePartOnce(ctx context.Context, p storedPart, log zerolog.Logger) (settled, refused bool) {
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 60*time.Second)
	defer cancel()
	log = log.With().Int("part", p.K).Logger()
	for wait := time.Second; ; wait *= 2 {
		err := w.wallet.SettleHoldInvoice(sctx, p.Preimage)
		if err == nil {
			break
		}
		var werr *nip47.Error
		if errors.As(err, &werr) {
			tx, lerr := w.wallet.LookupInvoice(sctx, nip47.LookupInvoiceParams{PaymentHash: p.PaymentHash})
			switch {
			case lerr == nil && settledTx(tx):
				w.store.advancePart(sctx, p.JobID, p.K, StateDelivered, StateSettled)
				return true, false
			case lerr == nil && (tx.State == nip47.StateFailed || expiredTx(tx)):
				w.store.advancePart(sctx, p.JobID, p.K, StateDelivered, StateRefunded)
				log.Error().Err(err).Msg("the part's hold ended before it was settled: delivered unpaid")
				return false, false
			}
			log.Error().Err(err).AnErr("lookup", lerr).Msg("settle of a part refused")
			return false, true
		}
		if wait > 8*time.Second {
			log.Error().Err(err).Msg("settle of a part: no answer; the payment poll tries again")
			return false, false
		}
		select {
		case <-sctx.Done():
			return false, false
		case <-time.After(wait):
		}
	}
	if _, err := w.store.advancePart(sctx, p.JobID, p.K, StateDelivered, StateSettled); err != nil {
		log.Error().Err(err).Msg("record part settled")
	}
	log.Info().Int64("msat", p.AmountMsat).Msg("part settled")
	return true, false
}

// delivered counts the stream's parts delivered so far.
func (r *streamRun) delivered(ctx context.Context) int {
	parts, _ := r.w.store.parts(context.WithoutCancel(ctx), r.id)
	n := 0
	for _, p := range parts {
		if p.State == StateDelivered || p.State == StateSettled {
			n++
		}
	}
	return n
}

// end ends the stream early: every part quoted and not paid is given up (its hold invoice
// cancelled), every part paid and not delivered is refunded (escrow) or owed (prepay), a
// delivered escrow part is settled; then the customer hears reason in error feedback, which
// also releases the lease.
func (r *streamRun) end(ctx context.Context, reason string) { r.endStream(ctx, reason, false) }

// endStream is end; with unpaid (a part's quote expired unpaid), a stream no part of which
// was ever paid ends without a word, as a whole job's expired quote does: the customer chose
// another worker, and error feedback from this one would only confuse it.
func (r *streamRun) endStream(ctx context.Context, reason string, unpaid bool) {
	w := r.w
	if ctx.Err() != nil && !r.stopped.Load() {
		return // shutting down: the stream resumes on restart
	}
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 90*time.Second)
	defer cancel()
	parts, err := w.store.parts(fctx, r.id)
	if err != nil {
		r.log.Error().Err(err).Msg("read parts to end the stream")
	}
	var owed, refunded int64
	chosen := false // the customer paid a part: this worker is the one it chose
	for _, p := range parts {
		chosen = chosen || (p.State != StateQuoted && p.State != StateFailed)
		o, rf := r.giveUp(fctx, p, reason)
		owed, refunded = owed+o, refunded+rf
	}
	if _, err := w.store.advance(fctx, r.id, StateStreaming, StateStreamEnded); err != nil {
		r.log.Error().Err(err).Msg("record stream ended")
	}
	info := reason
	if refunded > 0 {
		info += fmt.Sprintf("; %s msat held for parts not delivered returned to you", thousands(refunded))
	}
	if owed > 0 {
		info += fmt.Sprintf("; %s msat paid for parts not delivered owed to you, recorded by the worker", thousands(owed))
	}
	r.log.Info().Str("reason", loggable(r.j, reason)).Int64("refunded_msat", refunded).Int64("owed_msat", owed).Msg("stream ended")
	if unpaid && !chosen {
		return // the customer chose another worker (or none): its quotes expire unpaid, silently
	}
	w.feedback(fctx, r.j, nip90.StatusError, clip(info, 1000))
}

// giveUp ends one part of a stream that ends: quoted → failed (its hold invoice cancelled),
// paid or running → refunded (escrow) or owed (prepay), delivered → settled (escrow). A part
// whose payment arrives meanwhile (the compare-and-set misses) is read again and given up in
// its new state; states only move forward, so this ends.
func (r *streamRun) giveUp(ctx context.Context, p storedPart, reason string) (owed, refunded int64) {
	w := r.w
	for range 4 {
		var ok bool
		var err error
		switch p.State {
		case StateQuoted:
			if ok, err = w.store.advancePart(ctx, r.id, p.K, StateQuoted, StateFailed); ok && r.escrow() {
				w.cancelQuotedHold(ctx, p, r.log)
			}
		case StatePaid, StateRunning:
			if !r.escrow() {
				if ok, err = w.store.owePart(ctx, p, r.j.event.PubKey, reason); ok {
					owed += p.AmountMsat
				}
				break
			}
			if ok, err = w.store.advancePart(ctx, r.id, p.K, p.State, StateRefunding); ok {
				p.State = StateRefunding
				refunded += p.AmountMsat
				w.cancelPartHold(ctx, p, r.log)
			}
		case StateRefunding:
			w.cancelPartHold(ctx, p, r.log)
			return owed, refunded
		case StateDelivered:
			if r.escrow() {
				r.settlePart(ctx, p)
			}
			return owed, refunded
		default:
			return owed, refunded
		}
		if err != nil {
			r.log.Error().Err(err).Int("part", p.K).Msg("give a part up")
		}
		if ok || err != nil {
			return owed, refunded
		}
		if p, err = w.store.part(ctx, r.id, p.K); err != nil {
			return owed, refunded
		}
	}
	return owed, refunded
}

// cancelPartHold cancels a part's hold invoice (quoted or held); a held part moves from
// refunding to refunded once the wallet answered. A cancel is never gated on another call in
// flight: by then the part is failed or refunding, which no settle takes, and a second cancel
// changes nothing.
func (w *Worker) cancelPartHold(ctx context.Context, p storedPart, log zerolog.Logger) {
	if (escrowScheme{w}).cancel(ctx, log, p.PaymentHash) && p.State == StateRefunding {
		w.store.advancePart(ctx, p.JobID, p.K, StateRefunding, StateRefunded)
	}
}

// cancelQuotedHold cancels the hold invoice of a part given up before it was paid, then asks
// the wallet whether a payment got held meanwhile (it raced the cancel), and cancels that too.
func (w *Worker) cancelQuotedHold(ctx context.Context, p storedPart, log zerolog.Logger) {
	w.cancelPartHold(ctx, p, log)
	lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if tx, err := w.wallet.LookupInvoice(lctx, nip47.LookupInvoiceParams{PaymentHash: p.PaymentHash}); err == nil && tx.State == nip47.StateAccepted {
		log.Info().Int("part", p.K).Msg("a payment was held as the part was given up: cancelling it")
		w.cancelPartHold(ctx, p, log)
	}
}

// finish publishes the final result, every part's text in order, once every part is finished.
func (r *streamRun) finish(ctx context.Context, parts []storedPart) {
	w := r.w
	texts := make([]string, len(parts))
	for i, p := range parts {
		texts[i] = p.Text
	}
	r.publishResult(ctx, texts)
	if _, err := w.store.advance(context.WithoutCancel(ctx), r.id, StateStreaming, StateStreamed); err != nil {
		r.log.Error().Err(err).Msg("record stream done")
	}
}

// publishResult sends the final result: no invoice, every part was paid.
func (r *streamRun) publishResult(ctx context.Context, texts []string) {
	w := r.w
	home := r.home
	if home == nil {
		home = w.home(r.j)
	}
	res := w.result(r.j, home, stream.Join(texts))
	res.Extra = append(res.Extra, stream.Parts(len(texts)))
	d, err := w.deliver(ctx, r.j, home, res)
	switch {
	case err != nil:
		r.log.Error().Err(err).Msg("final result")
	case len(d.accepted) == 0:
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		reasons := make([]string, len(d.missed))
		for i, m := range d.missed {
			reasons[i] = m.reason
		}
		w.feedback(fctx, r.j, nip90.StatusError, clip("every part was delivered, the joined result was not: "+strings.Join(reasons, "; "), 1000))
	default:
		if len(d.missed) > 0 {
			w.partlyDelivered(ctx, r.j, r.log, d)
		}
		r.log.Info().Strs("delivered", urls(d.accepted)).Msg("stream done")
	}
}

// driveFree serves a stream that costs nothing: claim, then each part in order, then the
// result; a deletion stops it between parts.
func (r *streamRun) driveFree(ctx context.Context) {
	w := r.w
	home, claimed, err := w.claim(ctx, r.j, false)
	if err != nil {
		r.log.Info().Err(err).Msg("not serving stream")
		return
	}
	r.home, r.claimed = home, true
	if claimed {
		go w.renew(ctx, r.j, home)
	}
	texts := make([]string, 0, r.row.N)
	for k := 1; k <= r.row.N; k++ {
		if ctx.Err() != nil {
			return
		}
		if r.stopped.Load() {
			w.feedback(context.WithoutCancel(ctx), r.j, nip90.StatusError, fmt.Sprintf("stopped by the customer after %d of %d parts", k-1, r.row.N))
			return
		}
		runCtx, cancel := context.WithCancel(ctx)
		r.mu.Lock()
		r.cancelRun = cancel
		r.mu.Unlock()
		text, err := r.runText(runCtx, storedPart{K: k})
		cancel()
		if r.stopped.Load() {
			continue // says so at the top
		}
		if err != nil {
			if ctx.Err() == nil {
				w.feedback(context.WithoutCancel(ctx), r.j, nip90.StatusError, r.partError(k, err))
			}
			return
		}
		w.executed.Add(1)
		part := stream.Part{K: k, N: r.row.N}
		fb := nip90.JobFeedback{CreatedAt: nostr.Now(), JobID: r.id, Customer: r.j.event.PubKey, Status: nip90.StatusPartial,
			Content: text, Extra: nostr.Tags{part.Tag()}}
		if ok, why := w.publishPartial(ctx, r.j, fb, home); !ok {
			w.feedback(context.WithoutCancel(ctx), r.j, nip90.StatusError, fmt.Sprintf("stream ended: part %d was not delivered: %s", k, why))
			return
		}
		texts = append(texts, text)
	}
	r.publishResult(ctx, texts)
}

// watchDeletion follows, on every relay carrying the job, the customer's NIP-09 deletion of
// the request, until ctx ends; one stops the stream.
func (r *streamRun) watchDeletion(ctx context.Context) {
	f := nostr.Filter{Kinds: []int{nostr.KindDeletion}, Authors: []string{r.j.event.PubKey}, Tags: nostr.TagMap{"e": {r.id}}}
	for _, l := range r.w.targets(r.j) {
		r.w.async.Add(1)
		go func() {
			defer r.w.async.Done()
			l.follow(ctx, f, func(evt *nostr.Event) {
				if deletes(evt, r.j.event) {
					r.stop()
				}
			})
		}()
	}
}

// deletes reports whether evt is a valid NIP-09 deletion of req by its author.
func deletes(evt, req *nostr.Event) bool {
	if evt.Kind != nostr.KindDeletion || evt.PubKey != req.PubKey {
		return false
	}
	named := false
	for _, t := range evt.Tags {
		if len(t) >= 2 && t[0] == "e" && t[1] == req.ID {
			named = true
		}
	}
	if !named {
		return false
	}
	ok, err := evt.CheckSignature()
	return err == nil && ok
}

// follow keeps a subscription to f open on the link until ctx ends, resubscribing after a
// reconnect, and hands each event to fn.
func (l *link) follow(ctx context.Context, f nostr.Filter, fn func(*nostr.Event)) {
	for ctx.Err() == nil {
		l.awaitUp(ctx)
		l.mu.Lock()
		conn := l.conn
		l.mu.Unlock()
		select {
		case <-l.stopped:
			return
		default:
		}
		if conn != nil {
			if sub, err := conn.Subscribe(ctx, f); err == nil {
				func() {
					defer sub.Close()
					for {
						select {
						case <-ctx.Done():
							return
						case evt := <-sub.Events:
							fn(evt)
						case <-sub.Done():
							return
						}
					}
				}()
			}
		}
		select { // the connection dropped or refused: try again once it is back
		case <-ctx.Done():
		case <-l.stopped:
			return
		case <-time.After(time.Second):
		}
	}
}

// partFunds hands what the wallet says of an invoice to the part it is for, reporting false
// when it is not a part's. A payment held or settled is recorded (quoted → paid) and wakes the
// stream; an invoice expired unpaid gives the part up (the stream then ends); a hold arriving
// for a part given up is cancelled, and a prepay part paid after it was given up is owed.
func (w *Worker) partFunds(ctx context.Context, tx nip47.Transaction) bool {
	p, err := w.store.partByHash(ctx, tx.PaymentHash)
	if err != nil {
		return false
	}
	log := w.log.With().Str("job", p.JobID).Int("part", p.K).Logger()
	escrowPart := p.Preimage != ""
	changed := false
	switch {
	case p.State == StateQuoted && ((escrowPart && tx.State == nip47.StateAccepted) || (!escrowPart && settledTx(tx))):
		ok, err := w.store.acceptPart(ctx, p.JobID, p.K, time.Now())
		switch {
		case err != nil:
			log.Error().Err(err).Msg("record part paid")
		case ok:
			log.Info().Int64("msat", p.AmountMsat).Bool("held", escrowPart).Msg("part paid")
			changed = true
		default: // the stream gave the part up meanwhile: handle the payment in the part's new state
			if now, err := w.store.part(ctx, p.JobID, p.K); err == nil && now.State != StateQuoted {
				return w.partFunds(ctx, tx)
			}
		}
	case p.State == StateQuoted && expiredTx(tx):
		if ok, _ := w.store.advancePart(ctx, p.JobID, p.K, StateQuoted, StateFailed); ok {
			log.Info().Msg("part's quote expired unpaid")
			if escrowPart {
				w.cancelQuotedHold(ctx, p, log)
			}
			changed = true
		}
	case escrowPart && tx.State == nip47.StateAccepted && (p.State == StateFailed || p.State == StateRefunded):
		log.Info().Msg("payment held for a part given up: cancelling it")
		w.cancelPartHold(ctx, p, log)
	case !escrowPart && settledTx(tx) && p.State == StateFailed:
		if ok, err := w.store.oweLatePart(ctx, p, stCustomer(ctx, w, p.JobID)); err == nil && ok {
			log.Warn().Int64("owed_msat", p.AmountMsat).Msg("part paid after its stream ended: debt recorded")
		}
	}
	if changed {
		if r := w.streams.get(p.JobID); r != nil {
			r.nudge()
		}
	}
	return true
}

// stCustomer is the customer of a stored job ("" when unknown).
func stCustomer(ctx context.Context, w *Worker, id string) string {
	st, _ := w.store.get(ctx, id)
	return st.Customer
}

// partHashes are the payment hashes of parts quoted and not yet paid, for the payment poll.
func (w *Worker) partHashes(ctx context.Context) []string {
	parts, err := w.store.partsInState(ctx, StateQuoted, unfinishedBatch)
	if err != nil {
		return nil
	}
	out := make([]string, len(parts))
	for i, p := range parts {
		out[i] = p.PaymentHash
	}
	return out
}

// retryParts settles the delivered escrow parts and cancels the refunding ones of streams
// not being served (their wallet call got no answer), for the payment poll.
func (w *Worker) retryParts(ctx context.Context) {
	for _, state := range []string{StateDelivered, StateRefunding} {
		parts, err := w.store.partsInState(ctx, state, unfinishedBatch)
		if err != nil {
			return
		}
		for _, p := range parts {
			if p.Preimage == "" || w.streams.get(p.JobID) != nil {
				continue // prepay ends at delivered; a stream being served settles its own
			}
			log := w.log.With().Str("job", p.JobID).Logger()
			if state == StateRefunding {
				w.cancelPartHold(ctx, p, log)
				continue
			}
			key := partKey(p)
			if !w.holds.begin(key) {
				continue
			}
			w.async.Add(1)
			go func() {
				defer w.async.Done()
				_, refused := w.settlePartOnce(ctx, p, log)
				w.holds.end(key, refused)
			}()
		}
	}
}

// resumeStreams picks up, after a restart, every stream that was being served: each resumes
// at its first part not finished (see drive).
func (w *Worker) resumeStreams(ctx context.Context) error {
	jobs, err := w.store.inState(ctx, StateStreaming)
	if err != nil {
		return err
	}
	for _, st := range jobs {
		row, err := w.store.stream(ctx, st.ID)
		if err != nil {
			w.log.Error().Err(err).Str("job", st.ID).Msg("stored stream cannot be read")
			continue
		}
		j, err := w.restore(st)
		if err != nil {
			w.log.Error().Err(err).Str("job", st.ID).Msg("stored stream cannot be restored")
			continue
		}
		r := w.newStreamRun(j, row)
		r.resumed = true
		if w.streams.add(r, 0, true) {
			r.log.Info().Msg("resuming stream")
			w.startStream(ctx, r)
		}
	}
	return nil
}
