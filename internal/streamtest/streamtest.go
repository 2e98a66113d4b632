// Package streamtest is a scripted stream provider for tests (nips/stream.md): a stranger peer
// under the test's control. It quotes parts with real BOLT11 invoices from a real NWC wallet
// (hold invoices for escrow), delivers parts as partial feedback (sealed with each part's
// preimage under escrow), settles after publishing and ends with the joined result — or, by
// script, does none of that properly. Only tests use it.
package streamtest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nbd-wtf/go-nostr"

	"github.com/sparecycles/sparecycles/internal/relayconn"
	"github.com/sparecycles/sparecycles/internal/testrelay"
	"github.com/sparecycles/sparecycles/nips/escrow"
	"github.com/sparecycles/sparecycles/nips/nip47"
	"github.com/sparecycles/sparecycles/nips/nip90"
	"github.com/sparecycles/sparecycles/nips/stream"
)

// ErrDeleted means the customer deleted the request (NIP-09) while the provider waited.
var ErrDeleted = errors.New("streamtest: the customer deleted the request")

// pollEvery is how often WaitPaid asks the wallet about an invoice.
const pollEvery = 25 * time.Millisecond

// Provider answers the requests of one kind with a script.
type Provider struct {
	t      testing.TB
	sk     string
	PubKey string
	conn   *relayconn.Conn
	Wallet *nip47.Client

	mu   sync.Mutex
	jobs map[string]*Job
}

// Start runs a provider on relay, paid into the wallet of walletURI; serve runs once per
// request of kind, in its own goroutine, until it returns or the test ends.
func Start(t testing.TB, relay string, walletURI nip47.URI, kind int, serve func(ctx context.Context, j *Job)) *Provider {
	t.Helper()
	p := &Provider{t: t, sk: nostr.GeneratePrivateKey(), conn: testrelay.Dial(t, relay), jobs: map[string]*Job{}}
	p.PubKey, _ = nostr.GetPublicKey(p.sk)
	pool := relayconn.NewPool(walletURI.Relays)
	p.Wallet = nip47.NewClient(walletURI, pool)
	ctx, cancel := context.WithCancel(context.Background())
	sub, err := p.conn.Subscribe(ctx, nostr.Filter{Kinds: []int{kind}})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-sub.EOSE: // live from here on
	case <-time.After(30 * time.Second):
		t.Fatal("no EOSE from the relay")
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case req := <-sub.Events:
				j := p.newJob(ctx, req, &wg)
				wg.Go(func() {
					defer close(j.done)
					serve(ctx, j)
				})
			case <-sub.Done():
				return
			}
		}
	})
	t.Cleanup(func() { cancel(); wg.Wait(); pool.Close() })
	return p
}

// Job returns the job of request id once the provider saw it.
func (p *Provider) Job(id string) *Job {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.jobs[id]
}

// Job is one request being served.
type Job struct {
	P       *Provider
	Req     *nostr.Event
	N       int // the number of inputs: parts
	deleted chan struct{}
	done    chan struct{}

	mu       sync.Mutex
	invoices []Invoice
}

func (p *Provider) newJob(ctx context.Context, req *nostr.Event, wg *sync.WaitGroup) *Job {
	j := &Job{P: p, Req: req, N: len(req.Tags.GetAll([]string{"i"})), deleted: make(chan struct{}), done: make(chan struct{})}
	p.mu.Lock()
	p.jobs[req.ID] = j
	p.mu.Unlock()
	sub, err := p.conn.Subscribe(ctx, nostr.Filter{Kinds: []int{nostr.KindDeletion}, Authors: []string{req.PubKey}, Tags: nostr.TagMap{"e": {req.ID}}})
	if err != nil {
		p.t.Errorf("subscribe to deletions: %v", err)
		return j
	}
	wg.Go(func() {
		select {
		case <-sub.Events:
			close(j.deleted)
		case <-sub.Done():
		}
	})
	return j
}

// Deleted is closed once the customer deleted the request.
func (j *Job) Deleted() <-chan struct{} { return j.deleted }

// Done is closed once the script returned.
func (j *Job) Done() <-chan struct{} { return j.done }

// Invoices are the invoices made for the job, in order.
func (j *Job) Invoices() []Invoice {
	j.mu.Lock()
	defer j.mu.Unlock()
	return append([]Invoice(nil), j.invoices...)
}

// Part is part k of the job.
func (j *Job) Part(k int) stream.Part { return stream.Part{K: k, N: j.N} }

// Invoice is one part's invoice.
type Invoice struct {
	Part     stream.Part
	Msat     int64
	Bolt11   string
	Hash     string
	Escrow   bool
	Preimage escrow.Preimage // escrow: the part's key, the worker's secret until it settles
}

// MakeInvoice asks the wallet for part's invoice of msat: a hold invoice for a fresh preimage
// with escrow, a plain one otherwise; description "" is the spec's
// (stream.InvoiceDescription).
func (j *Job) MakeInvoice(ctx context.Context, part stream.Part, msat int64, withEscrow bool, description string) Invoice {
	if description == "" {
		description = stream.InvoiceDescription(j.Req.ID, part)
	}
	inv := Invoice{Part: part, Msat: msat, Escrow: withEscrow}
	var tx nip47.Transaction
	var err error
	if withEscrow {
		if inv.Preimage, err = escrow.NewPreimage(); err != nil {
			j.P.t.Error(err)
			return inv
		}
		tx, err = j.P.Wallet.MakeHoldInvoice(ctx, nip47.MakeHoldInvoiceParams{Amount: msat, Description: description, Expiry: 600, PaymentHash: inv.Preimage.Hash()})
	} else {
		tx, err = j.P.Wallet.MakeInvoice(ctx, nip47.MakeInvoiceParams{Amount: msat, Description: description, Expiry: 600})
	}
	if err != nil {
		if ctx.Err() == nil {
			j.P.t.Errorf("make invoice for part %s: %v", part, err)
		}
		return inv
	}
	inv.Bolt11, inv.Hash = tx.Invoice, tx.PaymentHash
	j.mu.Lock()
	j.invoices = append(j.invoices, inv)
	j.mu.Unlock()
	return inv
}

// QuoteEvent is the spec's quote of inv (unsigned): payment-required, the amount and invoice,
// ["part", k, n], ["window", w] and, with escrow, the escrow tag.
func (j *Job) QuoteEvent(inv Invoice, window int) nostr.Event {
	extra := nostr.Tags{inv.Part.Tag(), stream.Window(window)}
	if inv.Escrow {
		extra = append(extra, escrow.Quote{PaymentHash: inv.Hash, SettleWindow: 10 * time.Minute}.Tag())
	}
	fb := nip90.JobFeedback{JobID: j.Req.ID, Customer: j.Req.PubKey, Status: nip90.StatusPaymentRequired, Amount: &nip90.Amount{Msat: inv.Msat, Bolt11: inv.Bolt11}, Extra: extra}
	return fb.Event()
}

// Quote publishes the spec's quote of inv.
func (j *Job) Quote(ctx context.Context, inv Invoice, window int) {
	j.Publish(ctx, j.QuoteEvent(inv, window))
}

// PartialEvent is part inv.Part's partial feedback carrying text (unsigned): sealed with key
// under the part's seal context and naming inv's hash with escrow, plain otherwise.
func (j *Job) PartialEvent(inv Invoice, key escrow.Preimage, text string) nostr.Event {
	extra := nostr.Tags{inv.Part.Tag()}
	content := text
	if inv.Escrow {
		sealed, err := escrow.SealContent(key, stream.SealContext(j.Req.ID, inv.Part), []byte(text))
		if err != nil {
			j.P.t.Error(err)
		}
		content = sealed
		extra = append(extra, escrow.ResultTag(inv.Hash))
	}
	fb := nip90.JobFeedback{JobID: j.Req.ID, Customer: j.Req.PubKey, Status: nip90.StatusPartial, Content: content, Extra: extra}
	return fb.Event()
}

// Deliver publishes part inv.Part as the spec says, then (escrow) settles its payment.
func (j *Job) Deliver(ctx context.Context, inv Invoice, text string) {
	if !j.Publish(ctx, j.PartialEvent(inv, inv.Preimage, text)) {
		return
	}
	if inv.Escrow {
		j.Settle(ctx, inv)
	}
}

// Settle settles inv's held payment.
func (j *Job) Settle(ctx context.Context, inv Invoice) {
	if err := j.P.Wallet.SettleHoldInvoice(ctx, inv.Preimage.Hex()); err != nil && ctx.Err() == nil {
		j.P.t.Errorf("settle part %s: %v", inv.Part, err)
	}
}

// Cancel cancels inv (escrow): its held payment, if any, goes back.
func (j *Job) Cancel(ctx context.Context, inv Invoice) {
	if err := j.P.Wallet.CancelHoldInvoice(ctx, inv.Hash); err != nil && ctx.Err() == nil {
		j.P.t.Logf("cancel part %s: %v", inv.Part, err)
	}
}

// State is inv's state in the provider's wallet (nip47.StatePending, StateAccepted, ...).
func (j *Job) State(ctx context.Context, inv Invoice) (string, error) {
	tx, err := j.P.Wallet.LookupInvoice(ctx, nip47.LookupInvoiceParams{PaymentHash: inv.Hash})
	return tx.State, err
}

// WaitPaid waits until inv's payment is held (escrow) or settled (plain): ErrDeleted if the
// customer deleted the request first.
func (j *Job) WaitPaid(ctx context.Context, inv Invoice) error {
	want := nip47.StateSettled
	if inv.Escrow {
		want = nip47.StateAccepted
	}
	tick := time.NewTicker(pollEvery)
	defer tick.Stop()
	for {
		st, err := j.State(ctx, inv)
		if err == nil && st == want {
			return nil
		}
		select {
		case <-j.deleted:
			return ErrDeleted
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// Result publishes the final result: texts joined, with ["parts", n].
func (j *Job) Result(ctx context.Context, texts []string) {
	r := nip90.JobResult{Kind: nip90.ResultKind(j.Req.Kind), JobID: j.Req.ID, Customer: j.Req.PubKey, Content: stream.Join(texts), Extra: nostr.Tags{stream.Parts(len(texts))}}
	j.Publish(ctx, r.Event())
}

// Error publishes error feedback.
func (j *Job) Error(ctx context.Context, info string) {
	fb := nip90.JobFeedback{JobID: j.Req.ID, Customer: j.Req.PubKey, Status: nip90.StatusError, Info: info}
	j.Publish(ctx, fb.Event())
}

// Publish signs evt as the provider and publishes it; false if the relay did not take it.
func (j *Job) Publish(ctx context.Context, evt nostr.Event) bool {
	evt.CreatedAt = nostr.Now()
	if err := evt.Sign(j.P.sk); err != nil {
		j.P.t.Error(err)
		return false
	}
	ok, err := j.P.conn.Publish(ctx, evt)
	if err != nil || !ok.Accepted {
		if ctx.Err() == nil {
			j.P.t.Errorf("publish kind %d: %v %s", evt.Kind, err, ok.Reason)
		}
		return false
	}
	return true
}

// Script is an honest provider's terms.
type Script struct {
	Window int                // parts quoted ahead (default 2)
	Escrow bool               // hold invoices and sealed parts; plain invoices otherwise
	Price  func(k int) int64  // a part's price in msat
	Text   func(k int) string // a part's text
}

// Honest serves a stream as nips/stream.md says: parts 1..w quoted at the start, part k+w
// once part k is finished; each part run once paid, delivered, then settled; the final result
// at the end. A deletion by the customer stops it: what is quoted and not delivered is
// cancelled and error feedback says after how many parts.
func Honest(s Script) func(ctx context.Context, j *Job) {
	if s.Window == 0 {
		s.Window = 2
	}
	return func(ctx context.Context, j *Job) {
		n := j.N
		invs := make([]Invoice, n+1)
		quote := func(k int) {
			invs[k] = j.MakeInvoice(ctx, j.Part(k), s.Price(k), s.Escrow, "")
			j.Quote(ctx, invs[k], s.Window)
		}
		for k := 1; k <= min(s.Window, n); k++ {
			quote(k)
		}
		texts := make([]string, 0, n)
		stopped := func(k int) { // deleted before part k ran: cancel what is quoted, say so
			for q := k; q <= min(k+s.Window-1, n); q++ {
				if invs[q].Escrow && invs[q].Hash != "" {
					j.Cancel(ctx, invs[q])
				}
			}
			j.Error(ctx, fmt.Sprintf("stopped by the customer after %d of %d parts", k-1, n))
		}
		for k := 1; k <= n; k++ {
			if err := j.WaitPaid(ctx, invs[k]); err != nil {
				if errors.Is(err, ErrDeleted) {
					stopped(k)
				}
				return
			}
			select {
			case <-j.deleted: // paid (held) but not run: an escrow part goes back
				stopped(k)
				return
			default:
			}
			texts = append(texts, s.Text(k))
			j.Deliver(ctx, invs[k], s.Text(k))
			if k+s.Window <= n {
				quote(k + s.Window)
			}
		}
		j.Result(ctx, texts)
	}
}
