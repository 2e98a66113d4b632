package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nbd-wtf/go-nostr"

	"github.com/sparecycles/sparecycles/client"
	"github.com/sparecycles/sparecycles/internal/invoice"
	"github.com/sparecycles/sparecycles/internal/invoice/invoicetest"
	"github.com/sparecycles/sparecycles/internal/relayconn"
	"github.com/sparecycles/sparecycles/internal/testrelay"
	"github.com/sparecycles/sparecycles/nips/nip47"
	"github.com/sparecycles/sparecycles/nips/nip90"
	"github.com/sparecycles/sparecycles/nips/postpay"
	"github.com/sparecycles/sparecycles/wallet"
	"github.com/sparecycles/sparecycles/worker"
)

// pricedModels copies the models folder's manifests with the OCR model priced, linking the
// model files.
func pricedModels(t testing.TB, baseMsat, perMegapixel int64, payment string) string {
	t.Helper()
	src := modelsDir()
	dst := t.TempDir()
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		from, _ := filepath.Abs(filepath.Join(src, e.Name()))
		if filepath.Ext(e.Name()) != ".json" {
			os.Symlink(from, filepath.Join(dst, e.Name()))
			continue
		}
		var m map[string]any
		b, _ := os.ReadFile(from)
		json.Unmarshal(b, &m)
		if m["task"] == "ocr" {
			m["price"] = map[string]any{"base_msat": baseMsat, "per_unit_msat": perMegapixel, "unit": "megapixel"}
			if payment != "" {
				m["payment"] = payment
			}
		}
		b, _ = json.Marshal(m)
		os.WriteFile(filepath.Join(dst, e.Name()), b, 0o644)
	}
	return dst
}

// startLedgerWallet serves a ledger wallet over url and returns its data folder.
func startLedgerWallet(t testing.TB, url string) string {
	t.Helper()
	data := t.TempDir()
	t.Cleanup(serveLedger(t, url, data))
	return data
}

func connect(t testing.TB, data, url, name string, fundSats, budgetSats int64) nip47.URI {
	t.Helper()
	uri, err := wallet.Connect(context.Background(), wallet.ConnectConfig{Data: data, Relays: []string{url}, Name: name, FundSats: fundSats, BudgetSats: budgetSats, Backend: "ledger"})
	if err != nil {
		t.Fatal(err)
	}
	return uri
}

func balance(t testing.TB, uri nip47.URI) int64 {
	t.Helper()
	pool := relayconn.NewPool(uri.Relays)
	defer pool.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	b, err := nip47.NewClient(uri, pool).GetBalance(ctx)
	if err != nil {
		t.Fatalf("balance: %v", err)
	}
	return b
}

func newClient(t testing.TB, url string, uri nip47.URI) *client.Client {
	t.Helper()
	return newClientPaying(t, url, uri, client.PayByAny)
}

// newClientPaying is newClient paying only by.
func newClientPaying(t testing.TB, url string, uri nip47.URI, by client.PayBy) *client.Client {
	t.Helper()
	c, err := client.Open(context.Background(), client.Config{
		Relays: []string{url}, NWC: uri.Encode(), Data: t.TempDir(), SecretKey: nostr.GeneratePrivateKey(),
		QuoteWindow: time.Second, Timeout: 90 * time.Second, Pay: by,
	}, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func ocrJob(img string, bidMsat int64) nip90.JobRequest {
	return nip90.JobRequest{Kind: 5000, Inputs: []nip90.Input{{Value: img, Type: nip90.InputURL}}, Output: "text/plain", BidMsat: bidMsat}
}

// A paid job over the ledger wallet: quoted, paid, leased, run, delivered; the balances move
// by exactly the invoice amount (the ledger settles internally: no routing fee).
func TestPaidJobThroughLedgerWallet(t *testing.T) {
	r, url := startRelay(t)
	data := startLedgerWallet(t, url)
	workerURI := connect(t, data, url, "worker", 0, 0)
	clientURI := connect(t, data, url, "client", 1000, 500)
	w := startPaidWorker(t, url, workerURI, pricedModels(t, 2000, 1000, ""))
	c := newClient(t, url, clientURI)
	before := [2]int64{balance(t, workerURI), balance(t, clientURI)}

	img := servePNG(t, "paid work")
	out, err := c.Do(context.Background(), ocrJob(img, 50_000), nil)
	if err != nil {
		t.Fatalf("job: %v", err)
	}
	if strings.ToLower(strings.TrimSpace(out.Result)) != "paid work" || out.Worker != w.PubKey() {
		t.Fatalf("outcome %+v", out)
	}
	if out.AmountMsat <= 2000 || out.AmountMsat > 3000 {
		t.Fatalf("paid %d msat, want the price: 2000 + 1000 per megapixel", out.AmountMsat)
	}
	after := [2]int64{balance(t, workerURI), balance(t, clientURI)}
	if after[0]-before[0] != out.AmountMsat || before[1]-after[1] != out.AmountMsat {
		t.Fatalf("balances %v → %v, want both to move by %d", before, after, out.AmountMsat)
	}
	ps, _ := c.Payments(context.Background(), out.Job)
	if len(ps) != 1 || ps[0].State != client.PayPaid {
		t.Fatalf("client payments %+v", ps)
	}
	if j, _ := r.Jobs().Lookup(out.Job); j.ResultBy != w.PubKey() {
		t.Fatalf("relay job %+v", j)
	}
}

func startPaidWorker(t testing.TB, url string, uri nip47.URI, models string) *worker.Worker {
	t.Helper()
	return startWorkerWith(t, func(cfg *worker.Config) {
		cfg.NWC = uri.Encode()
		cfg.Models = models
		cfg.PaymentPoll = time.Second
	}, url)
}

// A bid below the price gets error feedback naming the price, and nothing is paid.
func TestBidBelowPrice(t *testing.T) {
	_, url := startRelay(t)
	data := startLedgerWallet(t, url)
	workerURI := connect(t, data, url, "worker", 0, 0)
	clientURI := connect(t, data, url, "client", 1000, 0)
	startPaidWorker(t, url, workerURI, pricedModels(t, 9000, 0, ""))
	c := newClient(t, url, clientURI)
	_, err := c.Do(context.Background(), ocrJob(servePNG(t, "too cheap"), 5000), nil)
	if !errors.Is(err, client.ErrNoOffer) || !strings.Contains(err.Error(), "below the price of 9000 msat") {
		t.Fatalf("err = %v", err)
	}
	if b := balance(t, clientURI); b != 1_000_000 {
		t.Fatalf("client balance %d, want untouched 1000000", b)
	}
}

// Paying the same quote twice pays once; an invoice the wallet cannot pay fails cleanly; the
// client refuses an invoice above its bid before the wallet hears of it.
func TestPayOnceAndRefusals(t *testing.T) {
	_, url := startRelay(t)
	data := startLedgerWallet(t, url)
	workerURI := connect(t, data, url, "worker", 0, 0)
	clientURI := connect(t, data, url, "client", 100, 0)
	c := newClient(t, url, clientURI)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	pool := relayconn.NewPool([]string{url})
	defer pool.Close()
	workerWallet := nip47.NewClient(workerURI, pool)
	job := strings.Repeat("e", 64)
	tx, err := workerWallet.MakeInvoice(ctx, nip47.MakeInvoiceParams{Amount: 7000, Description: invoice.Description(job)})
	if err != nil {
		t.Fatal(err)
	}
	q := client.Quote{JobID: job, Worker: "w", AmountMsat: 7000, Bolt11: tx.Invoice, BidMsat: 10_000}
	first, err := c.Pay(ctx, q)
	if err != nil || first.State != client.PayPaid {
		t.Fatalf("first pay: %+v %v", first, err)
	}
	second, err := c.Pay(ctx, q)
	if err != nil || second.Preimage != first.Preimage {
		t.Fatalf("second pay: %+v %v", second, err)
	}
	if b := balance(t, clientURI); b != 100_000-7000 {
		t.Fatalf("client balance %d after paying twice, want one debit of 7000", b)
	}

	over := q
	over.BidMsat = 5000
	if _, err := c.Pay(ctx, over); !errors.Is(err, client.ErrRefusedInvoice) || !errors.Is(err, invoice.ErrOverBid) {
		t.Fatalf("invoice above the bid: %v", err)
	}
	foreign := client.Quote{JobID: job, AmountMsat: 1000, BidMsat: 5000,
		Bolt11: invoicetest.Mint(t, invoicetest.Spec{Msat: 1000, Description: invoice.Description(job)})}
	if p, err := c.Pay(ctx, foreign); !errors.Is(err, client.ErrPaymentFailed) || p.State != client.PayFailed {
		t.Fatalf("unpayable invoice: %+v %v", p, err)
	}
	if b := balance(t, clientURI); b != 100_000-7000 {
		t.Fatalf("client balance %d after a failed payment", b)
	}
}

// The customer's wallet is down when it must pay: the client says so and has paid nothing;
// once the wallet is back the same job is paid once.
func TestWalletDownDuringPayment(t *testing.T) {
	_, url := startRelay(t)
	data := t.TempDir()
	workerURI := connect(t, data, url, "worker", 0, 0)
	clientURI := connect(t, data, url, "client", 100, 0)
	c := newClient(t, url, clientURI)
	job := strings.Repeat("f", 64)

	// the worker's invoice, made while the wallet serves
	stop := serveLedger(t, url, data)
	pool := relayconn.NewPool([]string{url})
	defer pool.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	tx, err := nip47.NewClient(workerURI, pool).MakeInvoice(ctx, nip47.MakeInvoiceParams{Amount: 3000, Description: invoice.Description(job)})
	if err != nil {
		t.Fatal(err)
	}
	stop()

	q := client.Quote{JobID: job, AmountMsat: 3000, Bolt11: tx.Invoice, BidMsat: 5000}
	dctx, dcancel := context.WithTimeout(ctx, 3*time.Second)
	_, err = c.Pay(dctx, q)
	dcancel()
	if !errors.Is(err, client.ErrWalletDown) {
		t.Fatalf("pay with the wallet down: %v", err)
	}
	stop = serveLedger(t, url, data)
	defer stop()
	p, err := c.Pay(ctx, q)
	if err != nil || p.State != client.PayPaid {
		t.Fatalf("pay when the wallet is back: %+v %v", p, err)
	}
	if again, err := c.Pay(ctx, q); err != nil || again.Preimage != p.Preimage {
		t.Fatalf("pay again: %+v %v", again, err)
	}
	if b := balance(t, clientURI); b != 100_000-3000 {
		t.Fatalf("client balance %d, want one debit of 3000", b)
	}
}

// serveLedger runs a ledger wallet service on data until stop is called; it returns once the
// service answers requests.
func serveLedger(t testing.TB, url, data string) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	ready := make(chan struct{})
	go func() {
		defer close(done)
		cfg := wallet.Config{Relays: []string{url}, Data: data, Backend: "ledger", OnReady: func() { close(ready) }}
		if err := wallet.Serve(ctx, cfg, testLog(t)); err != nil && ctx.Err() == nil {
			t.Errorf("wallet: %v", err)
		}
	}()
	select {
	case <-ready:
	case <-done:
		t.Fatal("wallet stopped before serving")
	}
	var once sync.Once
	return func() { once.Do(func() { cancel(); <-done }) }
}

// A worker stopped after the customer paid finishes the job when it starts again: one
// result, one payment.
func TestPaidJobSurvivesWorkerRestart(t *testing.T) {
	_, url := startRelay(t)
	data := startLedgerWallet(t, url)
	workerURI := connect(t, data, url, "worker", 0, 0)
	clientURI := connect(t, data, url, "client", 100, 0)
	models := pricedModels(t, 4000, 0, "")
	// the worker fetches the input twice: to price it, and to run it once paid. The second
	// fetch is held, and the worker is stopped while it waits.
	input, held, _ := heldInput(t, "finished after restart")

	keyFile := filepath.Join(t.TempDir(), "worker.nsec")
	state := t.TempDir()
	cfg := func(c *worker.Config) {
		c.NWC, c.Models, c.PaymentPoll, c.KeyFile, c.Data = workerURI.Encode(), models, time.Second, keyFile, state
	}
	first, stopFirst := runWorker(t, cfg, url)
	c := newClient(t, url, clientURI)
	type result struct {
		out client.Outcome
		err error
	}
	done := make(chan result, 1)
	go func() {
		out, err := c.Do(context.Background(), ocrJob(input, 10_000), nil)
		done <- result{out, err}
	}()
	<-held // paid, and preparing to run
	stopFirst()
	if first.Stats().Executed != 0 {
		t.Fatalf("first worker ran the job before it was stopped")
	}
	second, _ := runWorker(t, cfg, url) // same key, same store
	r := <-done
	if r.err != nil || strings.ToLower(strings.TrimSpace(r.out.Result)) != "finished after restart" {
		t.Fatalf("outcome %+v, %v", r.out, r.err)
	}
	if b := balance(t, clientURI); b != 100_000-4000 {
		t.Fatalf("client balance %d, want one payment of 4000", b)
	}
	if second.Stats().Executed != 1 {
		t.Fatalf("second worker executed %d jobs, want the resumed one", second.Stats().Executed)
	}
	evs := testrelay.Query(t, testrelay.Dial(t, url), nostr.Filter{Kinds: []int{6000}, Tags: nostr.TagMap{"e": {r.out.Job}}})
	if len(evs) != 1 {
		t.Fatalf("%d results for the job, want 1", len(evs))
	}
}

// Post-pay: the worker offers its price, the client accepts, the result comes with an invoice
// for the offered amount and the client pays it after reading; a customer who does not pay is
// refused once it owes more than the worker's limit. The jobs of the customer that does not
// pay name the worker (a "p" tag), which chooses it without an acceptance.
func TestPostPay(t *testing.T) {
	_, url := startRelay(t)
	data := startLedgerWallet(t, url)
	workerURI := connect(t, data, url, "worker", 0, 0)
	clientURI := connect(t, data, url, "client", 100, 0)
	w := startWorkerWith(t, func(cfg *worker.Config) {
		cfg.NWC, cfg.Models, cfg.PaymentPoll, cfg.MaxUnpaidMsat = workerURI.Encode(), pricedModels(t, 3000, 0, worker.PayAfter), time.Second, 5000
	}, url)
	img := servePNG(t, "pay later")

	c := newClient(t, url, clientURI)
	out, err := c.Do(context.Background(), ocrJob(img, 10_000), nil)
	if err != nil || strings.ToLower(strings.TrimSpace(out.Result)) != "pay later" || out.AmountMsat != 3000 || out.Worker != w.PubKey() {
		t.Fatalf("post-pay job: %+v %v", out, err)
	}
	if b := balance(t, clientURI); b != 100_000-3000 {
		t.Fatalf("client balance %d, want one payment of 3000", b)
	}

	// a customer that never pays: the first job is delivered with an invoice, the second would
	// put it over the limit
	conn := testrelay.Dial(t, url)
	sk := nostr.GeneratePrivateKey()
	for i := 0; i < 2; i++ {
		job := post(t, conn, sk, nostr.Tags{{"i", img, "url"}, {"bid", "10000"}, {"p", w.PubKey()}, {"param", "n", fmt.Sprint(i)}})
		res, info := testrelay.JobOutcome(t, conn, job)
		if i == 0 {
			r, err := nip90.ParseJobResult(res)
			if err != nil || r.Amount == nil || r.Amount.Msat != 3000 || r.Amount.Bolt11 == "" {
				t.Fatalf("first unpaid job: result %+v %v (feedback %q)", r, err, info)
			}
			continue
		}
		if res != nil || !strings.Contains(info, "owe 3000 msat") {
			t.Fatalf("second unpaid job: result %v, feedback %q; want refused for owing", res, info)
		}
	}
	if w.Stats().Executed != 2 {
		t.Fatalf("worker executed %d jobs, want 2 (the refused one never ran)", w.Stats().Executed)
	}
}

// A post-pay offer nobody accepts is never run: the worker states its price and waits; a
// request without a "p" tag does not start it.
func TestPostPayWaitsForAcceptance(t *testing.T) {
	_, url := startRelay(t)
	data := startLedgerWallet(t, url)
	workerURI := connect(t, data, url, "worker", 0, 0)
	w := startWorkerWith(t, func(cfg *worker.Config) {
		cfg.NWC, cfg.Models = workerURI.Encode(), pricedModels(t, 3000, 0, worker.PayAfter)
	}, url)
	conn := testrelay.Dial(t, url)
	job := post(t, conn, nostr.GeneratePrivateKey(), nostr.Tags{{"i", servePNG(t, "offered"), "url"}, {"bid", "10000"}})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	sub, err := conn.Subscribe(ctx, nostr.Filter{Kinds: []int{nip90.KindFeedback}, Tags: nostr.TagMap{"e": {job.ID}}, Authors: []string{w.PubKey()}})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case evt := <-sub.Events:
		fb, err := nip90.ParseJobFeedback(evt)
		if msat, ok := postpay.OfferAmount(fb); err != nil || !ok || msat != 3000 {
			t.Fatalf("first feedback %+v (%v), want an offer of 3000 msat", fb, err)
		}
	case <-ctx.Done():
		t.Fatal("no offer")
	}
	if n := w.Stats().Executed; n != 0 {
		t.Fatalf("the worker ran %d jobs before anyone accepted its offer", n)
	}
	if evs := testrelay.Query(t, conn, nostr.Filter{Kinds: []int{6000}, Tags: nostr.TagMap{"e": {job.ID}}}); len(evs) != 0 {
		t.Fatalf("a result without an acceptance: %v", evs)
	}
}
