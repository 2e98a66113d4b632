package client

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nbd-wtf/go-nostr"
	"github.com/rs/zerolog"

	"github.com/sparecycles/sparecycles/internal/invoice"
	"github.com/sparecycles/sparecycles/internal/relayconn"
	"github.com/sparecycles/sparecycles/internal/streamtest"
	"github.com/sparecycles/sparecycles/internal/testrelay"
	"github.com/sparecycles/sparecycles/nips/escrow"
	"github.com/sparecycles/sparecycles/nips/nip47"
	"github.com/sparecycles/sparecycles/nips/nip90"
	"github.com/sparecycles/sparecycles/nips/stream"
	"github.com/sparecycles/sparecycles/wallet"
)

// partMsat is each part's price in the stream tests.
const partMsat = 1100

// ledgerEnv is a relay and a ledger wallet service on it, with a worker account and a funded
// customer account.
type ledgerEnv struct {
	relay    string
	worker   nip47.URI
	customer nip47.URI
}

func startLedger(t *testing.T) *ledgerEnv {
	t.Helper()
	relay := testrelay.Start(t)
	data := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	done, ready := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		cfg := wallet.Config{Relays: []string{relay}, Data: data, Backend: "ledger", OnReady: func() { close(ready) }}
		if err := wallet.Serve(ctx, cfg, zerolog.Nop()); err != nil && ctx.Err() == nil {
			t.Errorf("wallet: %v", err)
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	select {
	case <-ready:
	case <-done:
		t.Fatal("wallet stopped before serving")
	}
	connect := func(name string, fundSats int64) nip47.URI {
		uri, err := wallet.Connect(context.Background(), wallet.ConnectConfig{Data: data, Relays: []string{relay}, Name: name, FundSats: fundSats, Backend: "ledger"})
		if err != nil {
			t.Fatal(err)
		}
		return uri
	}
	return &ledgerEnv{relay: relay, worker: connect("worker", 0), customer: connect("customer", 100)}
}

func balanceOf(t *testing.T, uri nip47.URI) int64 {
	t.Helper()
	pool := relayconn.NewPool(uri.Relays)
	defer pool.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b, err := nip47.NewClient(uri, pool).GetBalance(ctx)
	if err != nil {
		t.Fatalf("balance: %v", err)
	}
	return b
}

// streamCustomer opens a client paying from the ledger's customer account.
func (e *ledgerEnv) streamCustomer(t *testing.T, cfg Config) *Client {
	t.Helper()
	cfg.Relays, cfg.NWC, cfg.Data, cfg.SecretKey = []string{e.relay}, e.customer.Encode(), t.TempDir(), nostr.GeneratePrivateKey()
	if cfg.QuoteWindow == 0 {
		cfg.QuoteWindow, cfg.FirstQuote = 30*time.Second, true
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 2 * time.Minute
	}
	c, err := Open(context.Background(), cfg, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// pages is a request of n inputs with bid msat.
func pages(n int, bid int64) nip90.JobRequest {
	req := nip90.JobRequest{Kind: 5000, BidMsat: bid, Output: "text/plain"}
	for k := 1; k <= n; k++ {
		req.Inputs = append(req.Inputs, nip90.Input{Value: fmt.Sprintf("https://example.com/page-%d.png", k), Type: nip90.InputURL})
	}
	return req
}

func pageText(k int) string { return fmt.Sprintf("text of page %d", k) }

func flat(int) int64 { return partMsat }

// streamRun is one stream's outcome and what the customer heard.
type streamRun struct {
	out      Outcome
	err      error
	progress []PartProgress
}

func runStream(t *testing.T, c *Client, req nip90.JobRequest) streamRun {
	t.Helper()
	var r streamRun
	var mu sync.Mutex
	r.out, r.err = c.Stream(t.Context(), req, nil, func(p PartProgress) {
		mu.Lock()
		r.progress = append(r.progress, p)
		mu.Unlock()
	})
	return r
}

// checkParts asserts the parts received are want (indexes), in order, with their texts and
// amounts, reported in that order with running totals.
func (r streamRun) checkParts(t *testing.T, want ...int) {
	t.Helper()
	var got []int
	var total int64
	for i, p := range r.out.Parts {
		got = append(got, p.Index)
		total += p.AmountMsat
		if p.Text != pageText(p.Index) || p.AmountMsat != partMsat {
			t.Errorf("part %d: %q, %d msat", p.Index, p.Text, p.AmountMsat)
		}
		if i >= len(r.progress) || r.progress[i].Part != p || r.progress[i].TotalMsat != total || r.progress[i].Of != 3 {
			t.Errorf("progress %d: %+v, part %+v", i, r.progress, p)
		}
	}
	if !slices.Equal(got, want) || len(r.progress) != len(want) {
		t.Fatalf("parts %v (%d reported), want %v; error %v", got, len(r.progress), want, r.err)
	}
}

// paidOnce asserts the client paid each of the job's payments once, one per part.
func paidOnce(t *testing.T, c *Client, job string, parts int) {
	t.Helper()
	ps, err := c.Payments(context.Background(), job)
	if err != nil {
		t.Fatal(err)
	}
	paid := 0
	for _, p := range ps {
		if p.State == PayPaid {
			paid++
		}
	}
	if paid != parts || len(ps) != parts {
		t.Fatalf("%d payments, %d paid, want %d: %+v", len(ps), paid, parts, ps)
	}
}

// balances reads both accounts; moved asserts they moved by exactly msat.
type balances struct{ customer, worker int64 }

func (e *ledgerEnv) balances(t *testing.T) balances {
	return balances{balanceOf(t, e.customer), balanceOf(t, e.worker)}
}

func (e *ledgerEnv) moved(t *testing.T, before balances, msat, fee int64) {
	t.Helper()
	after := e.balances(t)
	if before.customer-after.customer != msat+fee || after.worker-before.worker != msat {
		t.Fatalf("customer paid %d msat, worker got %d msat; want %d (+%d fee)", before.customer-after.customer, after.worker-before.worker, msat, fee)
	}
}

// awaitDone waits for the provider's script of job to return.
func awaitDone(t *testing.T, p *streamtest.Provider, job string) *streamtest.Job {
	t.Helper()
	j := p.Job(job)
	if j == nil {
		t.Fatalf("the provider never saw job %s", job)
	}
	select {
	case <-j.Done():
	case <-time.After(time.Minute):
		t.Fatal("the provider's script did not end")
	}
	return j
}

// TestStreamEscrow: a 3-part escrow stream: parts in order, each paid once, balances moved by
// exactly the sum; Do hands a request of several inputs to Stream.
func TestStreamEscrow(t *testing.T) {
	t.Parallel()
	for _, scheme := range []string{escrow.SchemeEscrow, escrow.SchemePrepay} {
		t.Run(scheme, func(t *testing.T) {
			e := startLedger(t)
			streamtest.Start(t, e.relay, e.worker, 5000, streamtest.Honest(streamtest.Script{Escrow: scheme == escrow.SchemeEscrow, Price: flat, Text: pageText}))
			c := e.streamCustomer(t, Config{})
			before := e.balances(t)
			r := runStream(t, c, pages(3, 10_000))
			if r.err != nil || r.out.Status != "success" || r.out.Scheme != scheme {
				t.Fatalf("outcome %+v, %v", r.out, r.err)
			}
			r.checkParts(t, 1, 2, 3)
			if r.out.AmountMsat != 3*partMsat || r.out.Result != stream.Join([]string{pageText(1), pageText(2), pageText(3)}) {
				t.Fatalf("amount %d, result %q", r.out.AmountMsat, r.out.Result)
			}
			paidOnce(t, c, r.out.Job, 3)
			e.moved(t, before, 3*partMsat, r.out.FeeMsat)
			// Do takes the same path (another bid: another request id)
			var stages []Stage
			out, err := c.Do(t.Context(), pages(3, 9_000), func(s Stage) { stages = append(stages, s) })
			if err != nil || len(out.Parts) != 3 || !slices.Equal(stages, []Stage{StagePosted, StagePaying, StageDone}) {
				t.Fatalf("Do: %+v, %v, stages %v", out, err, stages)
			}
		})
	}
}

// TestStreamMaxSpend: a limit for two parts stops after two: the third is never paid, the
// request is deleted and the worker stops.
func TestStreamMaxSpend(t *testing.T) {
	t.Parallel()
	for _, scheme := range []string{escrow.SchemeEscrow, escrow.SchemePrepay} {
		t.Run(scheme, func(t *testing.T) {
			e := startLedger(t)
			p := streamtest.Start(t, e.relay, e.worker, 5000, streamtest.Honest(streamtest.Script{Escrow: scheme == escrow.SchemeEscrow, Price: flat, Text: pageText}))
			c := e.streamCustomer(t, Config{MaxSpendMsat: 2*partMsat + partMsat/2})
			before := e.balances(t)
			var stages []Stage
			out, err := c.Stream(t.Context(), pages(3, 10_000), func(s Stage) { stages = append(stages, s) }, nil)
			if err != nil || out.Status != StatusStopped || out.AmountMsat != 2*partMsat || len(out.Parts) != 2 || out.Parts[1].Index != 2 ||
				!slices.Equal(stages, []Stage{StagePosted, StagePaying, StageStopped}) {
				t.Fatalf("outcome %+v, %v, stages %v", out, err, stages)
			}
			paidOnce(t, c, out.Job, 2)
			e.moved(t, before, 2*partMsat, out.FeeMsat)
			j := awaitDone(t, p, out.Job)
			select {
			case <-j.Deleted():
			default:
				t.Fatal("the provider did not see the request deleted")
			}
			dels, err := Query(t.Context(), []string{e.relay}, zerolog.Nop(), nostr.Filter{Kinds: []int{nostr.KindDeletion}, Authors: []string{c.PubKey()}, Tags: nostr.TagMap{"e": {out.Job}}})
			if err != nil || len(dels) != 1 || !slices.Equal(dels[0].Tags.Find("k"), nostr.Tag{"k", "5000"}) {
				t.Fatalf("deletions %v, %v", dels, err)
			}
			invs := j.Invoices()
			if len(invs) != 3 || invs[2].Part.K != 3 {
				t.Fatalf("invoices %+v", invs)
			}
			if st, err := j.State(t.Context(), invs[2]); err != nil || st == nip47.StateAccepted || st == nip47.StateSettled {
				t.Fatalf("part 3's invoice is %q (%v): it was paid", st, err)
			}
		})
	}
}

// TestStreamWorkerFails: the worker's error ends the stream with the parts received; the part
// it held and did not deliver is refunded.
func TestStreamWorkerFails(t *testing.T) {
	t.Parallel()
	e := startLedger(t)
	streamtest.Start(t, e.relay, e.worker, 5000, func(ctx context.Context, j *streamtest.Job) {
		invs := make([]streamtest.Invoice, 3)
		for k := 1; k <= 2; k++ {
			invs[k] = j.MakeInvoice(ctx, j.Part(k), partMsat, true, "")
			j.Quote(ctx, invs[k], 2)
		}
		for k := 1; k <= 2; k++ {
			if j.WaitPaid(ctx, invs[k]) != nil {
				return
			}
		}
		j.Deliver(ctx, invs[1], pageText(1))
		j.Error(ctx, "the model crashed on part 2")
		j.Cancel(ctx, invs[2])
	})
	c := e.streamCustomer(t, Config{})
	before := e.balances(t)
	r := runStream(t, c, pages(3, 10_000))
	if !errors.Is(r.err, ErrJobFailed) || !strings.Contains(r.err.Error(), "the model crashed on part 2") || r.out.Status != "error" || r.out.Result != pageText(1) {
		t.Fatalf("outcome %+v, %v", r.out, r.err)
	}
	r.checkParts(t, 1)
	e.moved(t, before, partMsat, r.out.FeeMsat)
}

// TestStreamCancelled: the customer giving up (ctrl-C) deletes the request, so the worker
// stops.
func TestStreamCancelled(t *testing.T) {
	t.Parallel()
	e := startLedger(t)
	p := streamtest.Start(t, e.relay, e.worker, 5000, streamtest.Honest(streamtest.Script{Window: 1, Escrow: true, Price: flat, Text: pageText}))
	c := e.streamCustomer(t, Config{})
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	out, err := c.Stream(ctx, pages(3, 10_000), nil, func(p PartProgress) {
		if p.Part.Index == 1 {
			cancel()
		}
	})
	if !errors.Is(err, ErrTimeout) || len(out.Parts) != 1 {
		t.Fatalf("outcome %+v, %v", out, err)
	}
	j := awaitDone(t, p, out.Job)
	select {
	case <-j.Deleted():
	default:
		t.Fatal("the provider did not see the request deleted")
	}
	for _, inv := range j.Invoices()[1:] {
		if st, err := j.State(t.Context(), inv); err != nil || st == nip47.StateAccepted || st == nip47.StateSettled {
			t.Errorf("part %s's invoice is %q (%v) after the stop", inv.Part, st, err)
		}
	}
}

// TestStreamHostile: a provider breaking the stream's rules is refused, and nothing is paid
// for what it broke them with.
func TestStreamHostile(t *testing.T) {
	t.Parallel()
	type hostile struct {
		name   string
		bid    int64
		window time.Duration // the quote window when no quote can be chosen
		serve  func(ctx context.Context, j *streamtest.Job)
		// what the customer gets: the error, the parts, the invoices (by order made) paid
		wantErr  error
		mentions []string
		parts    []int
		paid     []bool
	}
	// honestUntil serves the parts as the spec says, part k's quote made by quote instead
	quoteWith := func(bad int, quote func(ctx context.Context, j *streamtest.Job) streamtest.Invoice) func(ctx context.Context, j *streamtest.Job) {
		return func(ctx context.Context, j *streamtest.Job) {
			invs := make([]streamtest.Invoice, j.N+1)
			for k := 1; k <= j.N; k++ {
				if k == bad {
					invs[k] = quote(ctx, j)
					continue
				}
				invs[k] = j.MakeInvoice(ctx, j.Part(k), partMsat, true, "")
				j.Quote(ctx, invs[k], 3)
			}
			for k := 1; k <= j.N; k++ {
				if j.WaitPaid(ctx, invs[k]) != nil {
					return
				}
				j.Deliver(ctx, invs[k], pageText(k))
			}
		}
	}
	tests := []hostile{
		{
			name: "a part's invoice describes another part",
			bid:  10_000,
			serve: quoteWith(2, func(ctx context.Context, j *streamtest.Job) streamtest.Invoice {
				inv := j.MakeInvoice(ctx, j.Part(2), partMsat, true, stream.InvoiceDescription(j.Req.ID, j.Part(3)))
				j.Quote(ctx, inv, 3)
				return inv
			}),
			wantErr: ErrRefusedInvoice, mentions: []string{"part 2/3", "description"},
			parts: []int{1}, paid: []bool{true, false, false},
		},
		{
			name: "a part of another number of parts",
			bid:  10_000,
			serve: quoteWith(2, func(ctx context.Context, j *streamtest.Job) streamtest.Invoice {
				p := stream.Part{K: 2, N: 4}
				inv := j.MakeInvoice(ctx, p, partMsat, true, "")
				j.Quote(ctx, inv, 3)
				return inv
			}),
			wantErr: ErrRefusedInvoice, mentions: []string{"part 2/4, the request has 3 inputs"},
			parts: []int{1}, paid: []bool{true, false, false},
		},
		{
			name:   "part 1 of another number of parts: no offer",
			bid:    10_000,
			window: time.Second,
			serve: func(ctx context.Context, j *streamtest.Job) {
				inv := j.MakeInvoice(ctx, stream.Part{K: 1, N: 4}, partMsat, true, "")
				j.Quote(ctx, inv, 2)
			},
			wantErr: ErrNoOffer, mentions: []string{"quotes part 1/4, the request has 3 inputs"},
			paid: []bool{false},
		},
		{
			name:    "a part over what is left of the bid",
			bid:     2*partMsat + partMsat/2,
			serve:   streamtest.Honest(streamtest.Script{Escrow: true, Price: flat, Text: pageText}),
			wantErr: invoice.ErrOverBid, mentions: []string{"part 3/3"},
			parts: []int{1, 2}, paid: []bool{true, true, false},
		},
		{
			name: "a part quoted again with a new invoice",
			bid:  10_000,
			serve: func(ctx context.Context, j *streamtest.Job) {
				invs := make([]streamtest.Invoice, j.N+1)
				for k := 1; k <= j.N; k++ {
					invs[k] = j.MakeInvoice(ctx, j.Part(k), partMsat, true, "")
					j.Quote(ctx, invs[k], 3)
				}
				for k := 1; k <= 2; k++ { // parts 1 and 2 are locked: then part 2 is quoted again
					if j.WaitPaid(ctx, invs[k]) != nil {
						return
					}
				}
				again := j.MakeInvoice(ctx, j.Part(2), partMsat, true, "")
				j.Quote(ctx, again, 3)
				for k := 1; k <= j.N; k++ {
					if j.WaitPaid(ctx, invs[k]) != nil {
						return
					}
					j.Deliver(ctx, invs[k], pageText(k))
				}
				j.Result(ctx, []string{pageText(1), pageText(2), pageText(3)})
			},
			parts: []int{1, 2, 3}, paid: []bool{true, true, true, false},
		},
		{
			name: "a part that does not open",
			bid:  10_000,
			serve: func(ctx context.Context, j *streamtest.Job) {
				invs := make([]streamtest.Invoice, j.N+1)
				for k := 1; k <= 2; k++ {
					invs[k] = j.MakeInvoice(ctx, j.Part(k), partMsat, true, "")
					j.Quote(ctx, invs[k], 2)
				}
				for k := 1; k <= 2; k++ {
					if j.WaitPaid(ctx, invs[k]) != nil {
						return
					}
					key := invs[k].Preimage
					if k == 2 {
						key, _ = escrow.NewPreimage() // sealed under a key the payment does not hand over
					}
					j.Publish(ctx, j.PartialEvent(invs[k], key, pageText(k)))
					j.Settle(ctx, invs[k])
				}
				select {
				case <-j.Deleted():
				case <-ctx.Done():
				}
			},
			wantErr: ErrUnreadable, mentions: []string{"part 2/3", "partial"},
			parts: []int{1}, paid: []bool{true, true},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := startLedger(t)
			p := streamtest.Start(t, e.relay, e.worker, 5000, tc.serve)
			c := e.streamCustomer(t, Config{QuoteWindow: tc.window})
			before := e.balances(t)
			r := runStream(t, c, pages(3, tc.bid))
			if tc.wantErr == nil && r.err != nil || tc.wantErr != nil && !errors.Is(r.err, tc.wantErr) {
				t.Fatalf("error %v, want %v (outcome %+v)", r.err, tc.wantErr, r.out)
			}
			for _, m := range append(tc.mentions, r.out.Job) {
				if r.err != nil && !strings.Contains(r.err.Error(), m) {
					t.Errorf("error %q does not mention %q", r.err, m)
				}
			}
			if errors.Is(tc.wantErr, ErrUnreadable) && (!strings.Contains(r.err.Error(), p.PubKey) || !strings.Contains(r.err.Error(), "preimage")) {
				t.Errorf("error %q does not name the worker and the payment", r.err)
			}
			r.checkParts(t, tc.parts...)
			var want int64
			j := p.Job(r.out.Job)
			if j == nil {
				t.Fatal("the provider never saw the job")
			}
			invs := j.Invoices()
			if len(invs) != len(tc.paid) {
				t.Fatalf("%d invoices made, want %d", len(invs), len(tc.paid))
			}
			for i, inv := range invs {
				st, err := j.State(t.Context(), inv)
				if paid := st == nip47.StateSettled || st == nip47.StateAccepted; err != nil || paid != tc.paid[i] {
					t.Errorf("invoice %d (part %s) is %q (%v), want paid %v", i, inv.Part, st, err, tc.paid[i])
				}
				if tc.paid[i] {
					want += inv.Msat
				}
			}
			paidOnce(t, c, r.out.Job, len(slices.DeleteFunc(slices.Clone(tc.paid), func(b bool) bool { return !b })))
			if r.out.AmountMsat != want {
				t.Errorf("outcome says %d msat paid, want %d", r.out.AmountMsat, want)
			}
			e.moved(t, before, want, r.out.FeeMsat)
		})
	}
}

// TestStreamPaysAtMostEightAtOnce: a provider quoting every part of a long stream at once
// gets at most streamMaxPaying parts locked until it delivers.
func TestStreamPaysAtMostEightAtOnce(t *testing.T) {
	t.Parallel()
	const n = streamMaxPaying + 2
	e := startLedger(t)
	held := make(chan int, 1) // how many parts were locked while none was delivered
	streamtest.Start(t, e.relay, e.worker, 5000, func(ctx context.Context, j *streamtest.Job) {
		invs := make([]streamtest.Invoice, n+1)
		for k := 1; k <= n; k++ {
			invs[k] = j.MakeInvoice(ctx, j.Part(k), partMsat, true, "")
			j.Quote(ctx, invs[k], n)
		}
		for k := 1; k <= streamMaxPaying; k++ {
			if j.WaitPaid(ctx, invs[k]) != nil {
				return
			}
		}
		locked := 0
		for k := 1; k <= n; k++ {
			if st, err := j.State(ctx, invs[k]); err == nil && st == nip47.StateAccepted {
				locked++
			}
		}
		held <- locked
		var texts []string
		for k := 1; k <= n; k++ {
			if j.WaitPaid(ctx, invs[k]) != nil {
				return
			}
			j.Deliver(ctx, invs[k], pageText(k))
			texts = append(texts, pageText(k))
		}
		j.Result(ctx, texts)
	})
	c := e.streamCustomer(t, Config{})
	out, err := c.Stream(t.Context(), pages(n, 100_000), nil, nil)
	if err != nil || len(out.Parts) != n || out.AmountMsat != n*partMsat {
		t.Fatalf("outcome %+v, %v", out, err)
	}
	if locked := <-held; locked != streamMaxPaying {
		t.Fatalf("%d parts locked at once, want %d", locked, streamMaxPaying)
	}
}
