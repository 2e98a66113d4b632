package client

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/nbd-wtf/go-nostr"

	"github.com/sparecycles/sparecycles/internal/invoice"
	"github.com/sparecycles/sparecycles/nips/escrow"
	"github.com/sparecycles/sparecycles/nips/nip47"
	"github.com/sparecycles/sparecycles/nips/nip90"
	"github.com/sparecycles/sparecycles/nips/postpay"
	"github.com/sparecycles/sparecycles/nips/stream"
)

// ErrUnknownJob means no relay has the job's request, feedback or results, and no payment
// for it is recorded here.
var ErrUnknownJob = errors.New("client: job not found")

// JobState is where a job stands, as far as the relays and the payment store tell.
type JobState string

// States of a job, from the relays' events.
const (
	JobPosted     JobState = "posted"     // the request is there; no worker answered yet
	JobQuoted     JobState = "quoted"     // workers asked to be paid; nobody processes it yet
	JobProcessing JobState = "processing" // a worker said it is running the job
	JobDone       JobState = "done"       // a result was published
	JobError      JobState = "error"      // the worker we paid, or the only ones that answered, reported an error
	JobLocked     JobState = "locked"     // an escrow payment is locked and its worker's result is still sealed
)

// JobStatus is what the relays and the local payment store know of a job.
type JobStatus struct {
	Job      string
	Request  *nip90.JobRequest // nil when no relay has the request (expired or deleted)
	State    JobState
	Worker   string           // who is processing, finished or failed the job
	Info     string           // the worker's error info, when State is JobError
	Quotes   []Quote          // each worker's latest payment-required feedback, by arrival
	Result   *nip90.JobResult // when done: the newest result of a worker we paid, else the newest
	Payments []Payment        // recorded here: empty on another machine than the one that paid
	// Sealed is set when the result is sealed (escrow). Opened: its Content is the text the
	// payment's preimage opened. OpenErr: the escrow settled, but the preimage does not open it.
	Sealed  bool
	Opened  bool
	OpenErr string
	// A stream's parts (nips/stream.md) delivered by the worker paid for them, in order: each
	// part paid here is opened (a sealed one with its payment's preimage), so a stream that
	// stopped or whose client crashed still gives up what was paid for. PartsOf is the
	// stream's part count (0: not a stream); PartsLocked counts parts delivered sealed whose
	// escrow payment is still held.
	Parts       []Part
	PartsOf     int
	PartsLocked int
}

// Status looks a job up by its request id: it queries the relays for the request, its
// feedback (kind 7000) and its results (6000-6999), and reads the payment store, so a job
// can be followed after a crash or from another machine. With a wallet, a payment recorded as
// in progress is looked up (lookup_invoice) and recorded as paid or failed; a sealed (escrow)
// result is opened with the preimage of the payment that settled for it. Errors:
// ErrUnknownJob, and those of Query.
func (c *Client) Status(ctx context.Context, jobID string) (JobStatus, error) {
	evs, err := Query(ctx, c.cfg.Relays, c.log,
		nostr.Filter{IDs: []string{jobID}},
		nostr.Filter{Tags: nostr.TagMap{"e": {jobID}}, Limit: 500})
	if err != nil {
		return JobStatus{Job: jobID}, fmt.Errorf("status of job %s: %w", jobID, err)
	}
	for i, evt := range evs { // a private job's feedback and results, decrypted (or dropped)
		evs[i] = c.reveal(evt)
	}
	evs = slices.DeleteFunc(evs, func(e *nostr.Event) bool { return e == nil })
	ps, err := c.Payments(ctx, jobID)
	if err != nil {
		return JobStatus{Job: jobID}, fmt.Errorf("status of job %s: payments: %w", jobID, err)
	}
	for i := range ps {
		c.resolve(ctx, &ps[i])
	}
	st, err := summarize(jobID, evs, ps)
	if err != nil {
		return st, err
	}
	unseal(&st)
	streamParts(&st, evs)
	return st, nil
}

// streamParts fills st's Parts from the partial feedback of the workers paid for the job:
// the newest partial of each part from a worker a payment recorded here went to, opened when
// the payment for that part is paid (escrow: the payment its sealed content names; prepay: the
// payment whose invoice names the part).
func streamParts(st *JobStatus, evs []*nostr.Event) {
	if st.Request != nil && len(st.Request.Inputs) >= 2 {
		st.PartsOf = len(st.Request.Inputs)
	}
	partials := map[int]*nostr.Event{}
	for _, evt := range evs {
		if evt.Kind != nip90.KindFeedback || nip90.JobID(evt) != st.Job {
			continue
		}
		if s := evt.Tags.Find("status"); len(s) < 2 || s[1] != string(nip90.StatusPartial) {
			continue
		}
		part, ok, err := stream.ParsePart(evt.Tags)
		if !ok || err != nil || (st.PartsOf > 0 && part.N != st.PartsOf) {
			continue
		}
		if st.PartsOf == 0 {
			st.PartsOf = part.N
		}
		if !slices.ContainsFunc(st.Payments, func(p Payment) bool { return p.Worker == evt.PubKey && p.State != PayFailed }) {
			continue // a worker not paid here: not the one chosen
		}
		if old := partials[part.K]; old == nil || evt.CreatedAt >= old.CreatedAt {
			partials[part.K] = evt
		}
	}
	for k := 1; k <= st.PartsOf; k++ {
		evt := partials[k]
		if evt == nil {
			continue
		}
		part := stream.Part{K: k, N: st.PartsOf}
		hash, sealed, err := escrow.ParseResult(evt.Tags)
		if err != nil {
			continue
		}
		var pay *Payment
		for i, p := range st.Payments {
			if p.Worker != evt.PubKey {
				continue
			}
			if (sealed && p.PaymentHash == hash) || (!sealed && invoice.Describes(p.Bolt11, stream.InvoiceDescription(st.Job, part))) {
				pay = &st.Payments[i]
				break
			}
		}
		switch {
		case pay == nil:
			continue
		case pay.State == PayPaying && sealed:
			st.PartsLocked++
			continue
		case pay.State != PayPaid:
			continue
		}
		text := evt.Content
		if sealed {
			if text, err = openResult(pay.Preimage, hash, stream.SealContext(st.Job, part), evt); err != nil {
				if st.OpenErr == "" {
					st.OpenErr = fmt.Sprintf("%v: part %s: %v (payment hash %s, preimage %s, partial %s)", ErrUnreadable, part, err, hash, pay.Preimage, evt.ID)
				}
				continue
			}
		}
		st.Parts = append(st.Parts, Part{Index: k, Text: text, AmountMsat: pay.AmountMsat})
	}
}

// resolve asks the wallet how a payment recorded as in progress ended (an escrow payment stays
// in progress while it is locked) and records a settled or failed one. Without a wallet, or
// without an answer, p stays as it is.
func (c *Client) resolve(ctx context.Context, p *Payment) {
	if c.wallet == nil || p.State != PayPaying {
		return
	}
	tx, err := c.wallet.LookupInvoice(ctx, nip47.LookupInvoiceParams{PaymentHash: p.PaymentHash})
	switch {
	case err != nil:
		c.log.Debug().Err(err).Str("job", p.JobID).Msg("look up a payment in progress")
		return
	case tx.Preimage != "" && preimageMatches(tx.Preimage, p.PaymentHash):
		p.State, p.Preimage, p.FeeMsat = PayPaid, tx.Preimage, tx.FeesPaid
	case tx.State == nip47.StateFailed || tx.State == nip47.StateExpired:
		p.State = PayFailed
	default:
		return // pending, or locked (accepted): not over yet
	}
	if err := c.store.finish(ctx, p.PaymentHash, p.State, p.Preimage, p.FeeMsat); err != nil {
		c.log.Warn().Err(err).Str("job", p.JobID).Msg("record a payment's outcome")
	}
}

// unseal opens st's result when it is sealed (escrow) and a payment of its worker settled for
// the hash it names; a sealed result whose payment is still in progress makes the job locked.
func unseal(st *JobStatus) {
	if st.Result == nil {
		return
	}
	hash, sealed, err := escrow.ParseResult(st.Result.Extra)
	if !sealed {
		return
	}
	st.Sealed = true
	if err != nil {
		st.OpenErr = err.Error()
		return
	}
	for _, p := range st.Payments {
		if p.PaymentHash != hash || p.Worker != st.Result.PubKey {
			continue
		}
		switch p.State {
		case PayPaying:
			st.State = JobLocked
		case PayPaid:
			text, err := openResult(p.Preimage, hash, st.Job, &nostr.Event{ID: st.Result.ID, Tags: st.Result.Extra, Content: st.Result.Content})
			if err != nil {
				st.OpenErr = fmt.Sprintf("%v: %v (payment hash %s, preimage %s, result %s)", ErrUnreadable, err, hash, p.Preimage, st.Result.ID)
				return
			}
			r := *st.Result
			r.Content = text
			st.Result, st.Opened = &r, true
		}
		return
	}
}

// summarize reads a job's state from its events, oldest first, and its recorded payments.
func summarize(jobID string, evs []*nostr.Event, payments []Payment) (JobStatus, error) {
	st := JobStatus{Job: jobID, Payments: payments}
	var workers []string                      // in order of first feedback
	latest := map[string]*nip90.JobFeedback{} // worker → newest feedback
	quoted := map[string]*nip90.JobFeedback{} // worker → newest payment-required
	var results []*nip90.JobResult
	for _, evt := range evs {
		switch {
		case evt.ID == jobID && nip90.IsRequestKind(evt.Kind):
			if r, err := nip90.ParseJobRequest(evt); err == nil {
				st.Request = r
			}
		case evt.Kind == nip90.KindFeedback && nip90.JobID(evt) == jobID:
			fb, err := nip90.ParseJobFeedback(evt)
			if err != nil {
				continue
			}
			if _, err := postpay.ParseAcceptance(evt); err == nil {
				continue // the customer accepting an offer: not a worker's feedback
			}
			if latest[fb.PubKey] == nil {
				workers = append(workers, fb.PubKey)
			}
			if later(fb, latest[fb.PubKey]) {
				latest[fb.PubKey] = fb
			}
			if fb.Status == nip90.StatusPaymentRequired && fb.Amount != nil && later(fb, quoted[fb.PubKey]) {
				quoted[fb.PubKey] = fb
			}
		case nip90.IsResultKind(evt.Kind) && nip90.JobID(evt) == jobID:
			if r, err := nip90.ParseJobResult(evt); err == nil {
				results = append(results, r)
			}
		}
	}
	if st.Request != nil { // drop results of another kind than the request's
		kept := results[:0]
		for _, r := range results {
			if r.Kind == nip90.ResultKind(st.Request.Kind) {
				kept = append(kept, r)
			}
		}
		results = kept
	}
	if st.Request == nil && len(workers) == 0 && len(results) == 0 && len(payments) == 0 {
		return st, fmt.Errorf("job %s: %w", jobID, ErrUnknownJob)
	}
	var bid int64
	if st.Request != nil {
		bid = st.Request.BidMsat
	}
	for _, w := range workers {
		if fb := quoted[w]; fb != nil {
			st.Quotes = append(st.Quotes, Quote{JobID: jobID, Worker: w, AmountMsat: fb.Amount.Msat, Bolt11: fb.Amount.Bolt11, BidMsat: bid})
		}
	}
	// the worker we paid (or are paying) speaks for the job
	var ours []string
	for _, p := range payments {
		if p.State != PayFailed {
			ours = append(ours, p.Worker)
		}
	}
	for _, r := range results { // oldest first: a newer one replaces, but not ours by another's
		if st.Result == nil || !slices.Contains(ours, st.Result.PubKey) || slices.Contains(ours, r.PubKey) {
			st.Result = r
		}
	}
	if st.Result != nil {
		st.State, st.Worker = JobDone, st.Result.PubKey
		return st, nil
	}
	for _, w := range ours {
		switch fb := latest[w]; {
		case fb == nil:
		case fb.Status == nip90.StatusError:
			st.State, st.Worker, st.Info = JobError, w, fb.Info
			return st, nil
		case fb.Status == nip90.StatusProcessing || fb.Status == nip90.StatusPartial:
			st.State, st.Worker = JobProcessing, w
			return st, nil
		}
	}
	var failed *nip90.JobFeedback
	for _, w := range workers {
		switch fb := latest[w]; fb.Status {
		case nip90.StatusProcessing, nip90.StatusPartial:
			st.State, st.Worker = JobProcessing, w
			return st, nil
		case nip90.StatusError:
			if failed == nil {
				failed = fb
			}
		}
	}
	switch {
	case len(st.Quotes) > 0:
		st.State = JobQuoted
	case failed != nil:
		st.State, st.Worker, st.Info = JobError, failed.PubKey, failed.Info
	default:
		st.State = JobPosted
	}
	return st, nil
}

// later reports whether fb comes after than. Timestamps are in seconds, so a fast worker's
// quote and its error often share one: then the order of a job's steps decides.
func later(fb, than *nip90.JobFeedback) bool {
	if than == nil || fb.CreatedAt != than.CreatedAt {
		return than == nil || fb.CreatedAt > than.CreatedAt
	}
	return step(fb.Status) >= step(than.Status)
}

func step(s nip90.Status) int {
	switch s {
	case nip90.StatusPaymentRequired:
		return 0
	case nip90.StatusProcessing:
		return 1
	case nip90.StatusPartial:
		return 2
	}
	return 3 // success, error: the end
}
