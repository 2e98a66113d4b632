package client

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nbd-wtf/go-nostr"

	"github.com/sparecycles/sparecycles/internal/invoice"
	"github.com/sparecycles/sparecycles/nips/escrow"
	"github.com/sparecycles/sparecycles/nips/nip47"
	"github.com/sparecycles/sparecycles/nips/nip90"
	"github.com/sparecycles/sparecycles/nips/stream"
)

// Streams (nips/stream.md): a request with two or more inputs is delivered part by part, one
// part per input, each part quoted with its own invoice and paid as it comes.

// StageStopped is a stream the customer stopped (Config.MaxSpendMsat) after the parts it
// received; the request is deleted so the worker stops.
const StageStopped Stage = "stopped"

// StatusStopped is Outcome.Status of a stream stopped by the customer.
const StatusStopped = "stopped"

// streamMaxPaying bounds the part payments in flight at once (and so the funds locked by
// escrow parts the worker has not delivered yet).
const streamMaxPaying = 8

// resultGrace bounds the wait for a stream's final result once every part was received: the
// result then only repeats the parts.
const resultGrace = 5 * time.Second

// deleteTimeout bounds publishing the deletion of a request whose stream ends early.
const deleteTimeout = 5 * time.Second

// Part is one part of a streamed job as the customer received it.
type Part struct {
	Index      int    `json:"index"` // k, from 1
	Text       string `json:"text"`
	AmountMsat int64  `json:"amount_msat"` // what the part was paid
}

// PartProgress is what Stream reports as each part arrives, in order.
type PartProgress struct {
	Part      Part
	Of        int   // the number of parts, n
	TotalMsat int64 // paid for the parts received so far
}

// IsStream reports whether req is a stream: two or more inputs.
func IsStream(req nip90.JobRequest) bool { return len(req.Inputs) >= 2 }

// Stream posts req, a request with 2 to stream.MaxParts inputs, and follows it as a stream
// (nips/stream.md). It chooses a worker on the quotes for part 1 as Do chooses on quotes (the
// quote window, escrow first, then the cheapest; named workers only; no post-pay offers), then
// pays only that worker's part quotes, in order of the parts: each is checked as a quote is
// and must be for a part 1..n of this job not paid before (n the number of inputs), its
// invoice's description naming that part (stream.InvoiceDescription), with the scheme of part
// 1, the running total within the bid. The first quote of a part stands. At most
// streamMaxPaying payments are in flight; an escrow part's payment answers when the worker
// settles it, and its part, held until then, is opened with the preimage under the part's
// seal context. Parts are reported to onPart (if set) in order.
//
// With Config.MaxSpendMsat, a part that would take the total paid or locked over it is not
// paid: the stream stops, waits for the parts already paid or locked to be delivered (or
// refunded), deletes the request (NIP-09) and returns Status "stopped" with the parts
// received and no error. A quote refused, a part that does not open (ErrUnreadable), a
// failed payment or the end of ctx also stop paying and delete the request, returning the
// parts received and the error; the worker's error feedback ends the stream with ErrJobFailed.
//
// Outcome.Result is the final result's content when it arrived, else the parts received
// joined (stream.Join); Outcome.AmountMsat is the total paid (the parts received, unless the
// worker failed to deliver a prepaid part or delivered one that does not open).
func (c *Client) Stream(ctx context.Context, req nip90.JobRequest, progress func(Stage), onPart func(PartProgress)) (Outcome, error) {
	n := len(req.Inputs)
	if n < 2 || n > stream.MaxParts {
		return Outcome{}, fmt.Errorf("client: a stream has 2 to %d inputs, not %d", stream.MaxParts, n)
	}
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	var paying sync.WaitGroup // the part payments' goroutines: done before Stream returns
	defer func() {
		cancel()
		paying.Wait()
	}()
	say := func(s Stage) {
		if progress != nil {
			progress(s)
		}
	}
	start := time.Now()
	subCtx, endSub := context.WithCancel(ctx)
	defer endSub()
	events, err := c.pool.Subscribe(subCtx, nostr.Filter{Kinds: []int{nip90.KindFeedback, nip90.ResultKind(req.Kind)}, Tags: nostr.TagMap{"p": {c.pubkey}}, Since: ptr(nostr.Now() - 5)})
	if err != nil {
		return Outcome{}, fmt.Errorf("subscribe: %w", err)
	}
	liveCh := make(chan []string, 1)
	if len(req.Providers) == 0 {
		go func() { liveCh <- c.liveWorkers(ctx, req.Kind) }()
	}
	job, err := c.Post(ctx, req)
	if err != nil {
		return Outcome{}, err
	}
	say(StagePosted)
	s := &streamJob{c: c, job: job.ID, kind: req.Kind, n: n, bid: req.BidMsat, maxSpend: c.cfg.MaxSpendMsat,
		parts: make([]streamPart, n+1), next: 1, paid: make(chan partPaid, n), hashes: map[string]int{}, say: say, onPart: onPart}
	s.out = Outcome{Job: job.ID}
	chosen, free, err := s.choose(ctx, events, liveCh, req)
	switch {
	case err != nil:
		s.deleteRequest(ctx, "no acceptable offer")
		return s.out, err
	case free != nil:
		// a free worker's result before anything was chosen: no money moves
		s.out.Worker, s.out.Scheme, s.out.Status, s.out.Result, s.out.Took = free.PubKey, SchemeFree, "success", free.Content, time.Since(start)
		if texts := stream.Split(free.Content); len(texts) == n {
			for i, t := range texts {
				s.out.Parts = append(s.out.Parts, Part{Index: i + 1, Text: t})
			}
		}
		say(StageDone)
		return s.out, nil
	}
	endSub() // from now on only the chosen worker's events count: stored ones too

	// giveUp ends a stream nothing was paid for yet
	giveUp := func(err error) (Outcome, error) {
		s.deleteRequest(ctx, "the customer cannot pay")
		s.out.Status = "error"
		return s.out, err
	}
	if c.wallet == nil {
		return giveUp(fmt.Errorf("pay job %s: %w", job.ID, ErrNoWallet))
	}
	if s.network, err = c.network(ctx); err != nil {
		return giveUp(fmt.Errorf("pay job %s: %w: %v", job.ID, ErrWalletDown, err))
	}
	mine, err := c.pool.Subscribe(ctx, nostr.Filter{Kinds: []int{nip90.KindFeedback, nip90.ResultKind(req.Kind)}, Authors: []string{chosen.Worker}, Tags: nostr.TagMap{"e": {job.ID}}})
	if err != nil {
		return giveUp(fmt.Errorf("subscribe: %w", err))
	}
	s.worker, s.escrow = chosen.Worker, chosen.Escrow != nil
	s.out.Worker, s.out.Scheme = chosen.Worker, escrow.SchemePrepay
	if s.escrow {
		s.out.Scheme = escrow.SchemeEscrow
	}
	first := chosen.Quote
	s.parts[1].quote = &first
	say(StagePaying)
	out, err := s.run(ctx, mine, &paying)
	out.Took = time.Since(start)
	return out, err
}

// streamJob is one stream after the choice: its parts and what was paid.
type streamJob struct {
	c        *Client
	job      string
	kind     int
	n        int
	bid      int64
	maxSpend int64
	network  string
	worker   string
	escrow   bool // part 1 was an escrow quote: every part must be
	say      func(Stage)
	onPart   func(PartProgress)
	out      Outcome

	parts     []streamPart // by index 1..n
	hashes    map[string]int
	next      int   // the next part to pay
	reported  int   // parts reported, in order
	paying    int   // payments in flight
	committed int64 // the amounts of the parts paid or being paid
	// receivedMsat is what the parts received were paid
	receivedMsat int64
	paid         chan partPaid
	final        *nostr.Event // the worker's final result
	allAt        time.Time    // when the last part was received
	stop         *streamStop  // why the stream ends before its last part; nil while it runs
}

// streamPart is one part's quote, payment and delivery.
type streamPart struct {
	quote   *Quote // the part's first quote: it stands
	hash    string // its payment hash, once its payment started
	payment *Payment
	partial *nostr.Event // the worker's partial feedback for the part
}

// streamStop is why a stream ends early.
type streamStop struct {
	err      error // nil: stopped by the customer's spending limit
	byWorker bool  // the worker ended it: its paid, undelivered parts are not awaited
	// a part's payment came back without the worker's reason: its error feedback is awaited
	// for failureGrace from then
	awaitReason time.Time
}

// partPaid is a part payment's answer.
type partPaid struct {
	k   int
	p   Payment
	err error
}

// choose collects the quotes for part 1 and picks one as Do does. A free worker's result
// before any choice is returned as free.
func (s *streamJob) choose(ctx context.Context, events <-chan *nostr.Event, liveCh <-chan []string, req nip90.JobRequest) (*candidate, *nostr.Event, error) {
	c := s.c
	w := &watch{job: s.job, bid: req.BidMsat, named: req.Providers, by: c.cfg.Pay, answered: map[string]bool{}}
	var refusals []string // part-1 quotes refused before they could be candidates, one per worker
	refuse := func(worker, why string) {
		if !w.answered[worker] {
			w.answered[worker] = true
			refusals = append(refusals, fmt.Sprintf("%s: %s", short(worker), why))
		}
	}
	pick := func() (*candidate, error) {
		q, why := w.best()
		if q == nil {
			if all := append(why, refusals...); len(all) > 0 {
				return nil, fmt.Errorf("job %s: %w: %s", s.job, ErrNoOffer, strings.Join(all, "; "))
			}
		}
		return q, nil
	}
	part1 := stream.Part{K: 1, N: s.n}
	window := time.NewTimer(c.cfg.QuoteWindow)
	defer window.Stop()
	early := false
	for {
		select {
		case <-ctx.Done():
			return nil, nil, fmt.Errorf("job %s: %w", s.job, ErrNoOffer)
		case live := <-liveCh:
			w.live, w.liveKnown = live, true
		case evt, ok := <-events:
			if !ok {
				return nil, nil, fmt.Errorf("job %s: %w", s.job, ErrTimeout)
			}
			if evt = s.c.reveal(evt); evt == nil {
				continue // a private job's event that does not decrypt cannot be read
			}
			if nip90.JobID(evt) != s.job {
				continue
			}
			if nip90.IsResultKind(evt.Kind) {
				r, err := nip90.ParseJobResult(evt)
				if err == nil && (r.Amount == nil || r.Amount.Msat == 0) && w.may(evt.PubKey) {
					return nil, evt, nil
				}
				s.out.IgnoredResults++
				continue
			}
			fb, err := nip90.ParseJobFeedback(evt)
			if err != nil || !w.may(evt.PubKey) {
				continue
			}
			if fb.Status != nip90.StatusPaymentRequired {
				w.see(evt) // an error feedback: a refusal
				continue
			}
			p, ok, err := stream.ParsePart(evt.Tags)
			switch {
			case !ok:
				refuse(evt.PubKey, "not a stream quote (no part tag): a stream is paid part by part")
				continue
			case err != nil:
				refuse(evt.PubKey, err.Error())
				continue
			case p.N != s.n:
				refuse(evt.PubKey, fmt.Sprintf("quotes part %s, the request has %d inputs", p, s.n))
				continue
			case p.K != 1:
				continue // a later part: read again once its worker is chosen
			case fb.Amount == nil || fb.Amount.Bolt11 == "":
				refuse(evt.PubKey, "a post-pay offer: a stream is paid part by part")
				continue
			}
			before := len(w.candidates)
			w.see(evt)
			if len(w.candidates) > before {
				w.candidates[before].Description = stream.InvoiceDescription(s.job, part1)
			}
			if !early && w.ready(c.cfg.FirstQuote) {
				early = true
				q, err := pick()
				if err != nil || q != nil {
					return q, nil, err
				}
			}
			continue
		case <-window.C:
			q, err := pick()
			if err != nil || q != nil {
				return q, nil, err
			}
			window.Reset(c.cfg.QuoteWindow)
			continue
		}
		if !early && w.ready(c.cfg.FirstQuote) {
			early = true
			q, err := pick()
			if err != nil || q != nil {
				return q, nil, err
			}
		}
	}
}

// run follows the chosen worker's stream to its end.
func (s *streamJob) run(ctx context.Context, events <-chan *nostr.Event, wg *sync.WaitGroup) (Outcome, error) {
	for {
		s.payReady(ctx, wg)
		s.openReady()
		if out, err, done := s.ended(ctx); done {
			return out, err
		}
		var grace, reason <-chan time.Time
		if s.stop == nil && s.reported == s.n {
			grace = time.After(time.Until(s.allAt.Add(resultGrace)))
		}
		if s.stop != nil && !s.stop.awaitReason.IsZero() {
			reason = time.After(time.Until(s.stop.awaitReason.Add(failureGrace)))
		}
		select {
		case <-ctx.Done():
			s.deleteRequest(ctx, "the customer gave up")
			why := "the result did not arrive"
			if s.paying > 0 {
				why = fmt.Sprintf("payments still locked or in flight: client status %s finishes them", s.job)
			}
			return s.outcome("error"), fmt.Errorf("job %s: %w after %d of %d parts: %s", s.job, ErrTimeout, s.reported, s.n, why)
		case r := <-s.paid:
			s.answered(r)
		case evt, ok := <-events:
			if !ok {
				events = nil // ctx ended: the next round says so
				continue
			}
			if evt = s.c.reveal(evt); evt == nil {
				continue
			}
			s.see(evt)
		case <-grace:
			s.say(StageDone)
			return s.outcome("success"), nil
		case <-reason:
			s.stop.awaitReason = time.Time{} // the worker gave no reason
		}
	}
}

// payReady starts the payments of the next quoted parts, in order, within the limits.
func (s *streamJob) payReady(ctx context.Context, wg *sync.WaitGroup) {
	for ctx.Err() == nil && s.stop == nil && s.next <= s.n && s.paying < min(s.n, streamMaxPaying) {
		k := s.next
		if s.maxSpend > 0 && s.committed >= s.maxSpend {
			s.stopByCustomer() // nothing more fits: every part costs something
			return
		}
		p := &s.parts[k]
		if p.quote == nil {
			return
		}
		q := *p.quote
		if s.maxSpend > 0 && s.committed+q.AmountMsat > s.maxSpend {
			s.stopByCustomer()
			return
		}
		q.BidMsat = s.bid - s.committed // the bid caps the whole job
		inv, err := invoice.Check(q.Bolt11, invoice.Expect{JobID: s.job, BidMsat: q.BidMsat, QuotedMsat: q.AmountMsat,
			Network: s.network, MinLife: 10 * time.Second, Description: q.Description})
		if err == nil {
			err = checkEscrow(q, inv.PaymentHash)
		}
		if other, ok := s.hashes[inv.PaymentHash]; err == nil && ok {
			err = fmt.Errorf("the invoice of part %d", other)
		}
		if err != nil {
			s.end(&streamStop{err: fmt.Errorf("job %s: %w: part %d/%d: %w", s.job, ErrRefusedInvoice, k, s.n, err)})
			return
		}
		p.hash = inv.PaymentHash
		s.hashes[p.hash] = k
		s.paying++
		s.committed += q.AmountMsat
		s.next++
		wg.Go(func() {
			pctx, cancel := ctx, context.CancelFunc(func() {})
			if q.Escrow != nil { // answered when the worker settles or cancels
				pctx, cancel = context.WithTimeout(ctx, q.Escrow.SettleWindow+escrowMargin)
			}
			defer cancel()
			pay, err := s.c.Pay(pctx, q)
			s.paid <- partPaid{k, pay, err} // buffered for every part: never blocks
		})
	}
}

// answered takes a part payment's answer.
func (s *streamJob) answered(r partPaid) {
	s.paying--
	p := &s.parts[r.k]
	if r.err == nil {
		p.payment = &r.p
		s.out.AmountMsat += r.p.AmountMsat
		s.out.FeeMsat += r.p.FeeMsat
		return
	}
	s.committed -= p.quote.AmountMsat
	switch {
	case s.escrow && errors.Is(r.err, nip47.ErrPaymentFailed):
		// the worker cancelled the part: it ended the stream (its error feedback says why)
		s.end(&streamStop{err: fmt.Errorf("job %s: %w: the worker cancelled part %d/%d (the locked payment was refunded)", s.job, ErrJobFailed, r.k, s.n), byWorker: true, awaitReason: time.Now()})
	case errors.Is(r.err, ErrWalletDown):
		s.end(&streamStop{err: fmt.Errorf("%w (part %d/%d may be locked: client status %s finishes it)", r.err, r.k, s.n, s.job)})
	default:
		s.end(&streamStop{err: fmt.Errorf("part %d/%d: %w", r.k, s.n, r.err)})
	}
}

// see takes one of the chosen worker's events for the job.
func (s *streamJob) see(evt *nostr.Event) {
	if evt.PubKey != s.worker || nip90.JobID(evt) != s.job {
		return
	}
	if nip90.IsResultKind(evt.Kind) {
		if s.final == nil {
			s.final = evt
		}
		return
	}
	fb, err := nip90.ParseJobFeedback(evt)
	if err != nil {
		return
	}
	switch fb.Status {
	case nip90.StatusPaymentRequired:
		s.quoted(evt, fb)
	case nip90.StatusPartial:
		p, ok, err := stream.ParsePart(evt.Tags)
		if !ok || err != nil || p.N != s.n {
			s.c.log.Debug().Str("job", s.job).Str("event", evt.ID).Msg("ignored a partial that is not a part of this stream")
			return
		}
		part := &s.parts[p.K]
		// a part sealed for the part's payment wins over one that is not
		if part.partial == nil || part.hash == "" || sealedFor(evt, part.hash) || !sealedFor(part.partial, part.hash) {
			part.partial = evt
		}
	case nip90.StatusError:
		info := fmt.Errorf("job %s: %w: %s", s.job, ErrJobFailed, fb.Info)
		if s.stop == nil || s.stop.byWorker {
			s.stop = &streamStop{err: info, byWorker: true}
		}
	}
}

// quoted takes the worker's quote for a part: the first quote of a part stands; one that
// cannot be a quote for this stream ends it.
func (s *streamJob) quoted(evt *nostr.Event, fb *nip90.JobFeedback) {
	if s.stop != nil {
		return
	}
	refused := func(why string) {
		s.end(&streamStop{err: fmt.Errorf("job %s: %w: quote %s: %s", s.job, ErrRefusedInvoice, evt.ID, why)})
	}
	p, ok, err := stream.ParsePart(evt.Tags)
	switch {
	case !ok:
		refused("no part tag")
		return
	case err != nil:
		refused(err.Error())
		return
	case p.N != s.n:
		refused(fmt.Sprintf("part %s, the request has %d inputs", p, s.n))
		return
	}
	part := &s.parts[p.K]
	if part.quote != nil {
		if fb.Amount == nil || part.quote.Bolt11 != fb.Amount.Bolt11 {
			s.c.log.Warn().Str("job", s.job).Int("part", p.K).Str("event", evt.ID).Msg("a part quoted again with another invoice: the first quote stands")
		}
		return
	}
	if fb.Amount == nil || fb.Amount.Bolt11 == "" {
		refused(fmt.Sprintf("part %s has no invoice", p))
		return
	}
	eq, isEscrow, err := escrow.ParseQuote(evt.Tags)
	switch {
	case err != nil:
		refused(err.Error())
		return
	case isEscrow != s.escrow:
		refused(fmt.Sprintf("part %s is paid otherwise than part 1 (escrow %v, part 1 escrow %v)", p, isEscrow, s.escrow))
		return
	}
	q := Quote{JobID: s.job, Worker: s.worker, AmountMsat: fb.Amount.Msat, Bolt11: fb.Amount.Bolt11, Description: stream.InvoiceDescription(s.job, p)}
	if isEscrow {
		q.Escrow = &eq
	}
	part.quote = &q
}

// openReady reports the parts paid and delivered, in order; an escrow part is opened with its
// payment's preimage. A part that does not open ends the stream (ErrUnreadable) and is
// skipped: the parts after it, paid too, are still opened and reported.
func (s *streamJob) openReady() {
	for k := s.reported + 1; k <= s.n; k++ {
		p := &s.parts[k]
		if p.payment == nil || p.partial == nil {
			return
		}
		s.reported = k
		if k == s.n {
			s.allAt = time.Now()
		}
		text := p.partial.Content
		if s.escrow {
			var err error
			text, err = openResult(p.payment.Preimage, p.hash, stream.SealContext(s.job, stream.Part{K: k, N: s.n}), p.partial)
			if err != nil {
				s.c.log.Error().Str("job", s.job).Str("worker", s.worker).Int("part", k).Str("partial", p.partial.ID).Str("payment_hash", p.hash).Msg("paid for a part that cannot be opened")
				s.end(&streamStop{err: fmt.Errorf("job %s: %w: worker %s was paid (payment hash %s, preimage %s) for part %d/%d, partial %s: %v",
					s.job, ErrUnreadable, s.worker, p.hash, p.payment.Preimage, k, s.n, p.partial.ID, err)})
				continue
			}
		}
		part := Part{Index: k, Text: text, AmountMsat: p.payment.AmountMsat}
		s.out.Parts = append(s.out.Parts, part)
		s.receivedMsat += part.AmountMsat
		if s.onPart != nil {
			s.onPart(PartProgress{Part: part, Of: s.n, TotalMsat: s.receivedMsat})
		}
	}
}

// ended says whether the stream is over: every part and the final result are in, or it was
// stopped and nothing it waits for is still on its way.
func (s *streamJob) ended(ctx context.Context) (Outcome, error, bool) {
	if s.stop == nil {
		if s.reported == s.n && s.final != nil {
			s.say(StageDone)
			return s.outcome("success"), nil, true
		}
		return Outcome{}, nil, false
	}
	if s.paying > 0 || !s.stop.awaitReason.IsZero() {
		return Outcome{}, nil, false // a part locked or being paid: delivered and settled, or refunded
	}
	for k := s.reported + 1; k < s.next && !s.stop.byWorker; k++ {
		if p := &s.parts[k]; p.payment != nil && p.partial == nil {
			return Outcome{}, nil, false // paid for: the worker delivers it
		}
	}
	if !s.stop.byWorker {
		s.deleteRequest(ctx, "stopped by the customer")
	}
	if s.stop.err == nil {
		s.say(StageStopped)
		return s.outcome(StatusStopped), nil, true
	}
	return s.outcome("error"), s.stop.err, true
}

// end stops the stream for stop, unless it was stopped already; a part paid for and not
// readable is reported over any other reason.
func (s *streamJob) end(stop *streamStop) {
	if s.stop == nil || (errors.Is(stop.err, ErrUnreadable) && !errors.Is(s.stop.err, ErrUnreadable)) {
		s.stop = stop
	}
}

// stopByCustomer stops the stream at the customer's spending limit.
func (s *streamJob) stopByCustomer() {
	s.c.log.Info().Str("job", s.job).Int("parts", s.next-1).Int("of", s.n).Int64("msat", s.committed).Int64("max_spend_msat", s.maxSpend).Msg("stream stopped: the next part would pass the spending limit")
	s.end(&streamStop{})
}

// outcome is the outcome with status, the parts received and the result.
func (s *streamJob) outcome(status string) Outcome {
	out := s.out
	out.Status = status
	texts := make([]string, len(out.Parts))
	for i, p := range out.Parts {
		texts[i] = p.Text
	}
	out.Result = stream.Join(texts)
	if status == "success" && s.final != nil {
		out.Result = s.final.Content
	}
	return out
}

// deleteRequest publishes a NIP-09 deletion of the request (e and k tags), so the worker stops
// and cancels what it holds; best effort, bounded by deleteTimeout.
func (s *streamJob) deleteRequest(ctx context.Context, reason string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), deleteTimeout)
	defer cancel()
	del := nostr.Event{Kind: nostr.KindDeletion, CreatedAt: nostr.Now(), Content: reason,
		Tags: nostr.Tags{{"e", s.job}, {"k", strconv.Itoa(s.kind)}}}
	if err := del.Sign(s.c.cfg.SecretKey); err != nil {
		s.c.log.Warn().Err(err).Str("job", s.job).Msg("sign the deletion of the request")
		return
	}
	if err := s.c.pool.Publish(ctx, del); err != nil {
		s.c.log.Warn().Err(err).Str("job", s.job).Msg("delete the request")
	}
}
