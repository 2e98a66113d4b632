package wallet_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/sparecycles/sparecycles/internal/rawnwc"
	"github.com/sparecycles/sparecycles/internal/regtest"
	"github.com/sparecycles/sparecycles/internal/testrelay"
	"github.com/sparecycles/sparecycles/wallet"
	"github.com/sparecycles/sparecycles/wallet/lnd"
)

// lndWait bounds waits for lnd: a channel balance lags the payment that moved it.
const lndWait = time.Minute

// serveLND runs `wallet serve` over node's lnd on relay, with its state in data, and returns
// once it answers requests. stop stops it and waits; the test's end stops it too.
func serveLND(t *testing.T, relay string, node *regtest.Node, data string) (stop func()) {
	t.Helper()
	cfg := wallet.DefaultConfig()
	cfg.Relays, cfg.Data, cfg.Backend = []string{relay}, data, wallet.BackendLND
	cfg.LNDRest, cfg.LNDMacaroon, cfg.LNDTLSCert = node.RESTURL, node.Macaroon, node.TLSCert
	cfg.OpenLND = lnd.Open
	cfg = wallet.WithInFlightEvery(cfg, 100*time.Millisecond)
	ready := make(chan struct{})
	cfg.OnReady = func() { close(ready) }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := wallet.Serve(ctx, cfg, zerolog.New(zerolog.NewTestWriter(t)).With().Str("node", node.Name).Logger()); err != nil {
			t.Errorf("wallet on %s: %v", node.Name, err)
		}
	}()
	stop = sync.OnceFunc(func() { cancel(); <-done })
	t.Cleanup(stop)
	select {
	case <-ready:
	case <-done:
		t.Fatalf("wallet on %s stopped before serving", node.Name)
	case <-time.After(lndWait):
		t.Fatalf("wallet on %s not serving within %s", node.Name, lndWait)
	}
	return stop
}

// connectLND adds a connection named name to the lnd wallet in data and dials it.
func connectLND(t *testing.T, data, relay, name string, budgetSats int64) *rawnwc.Client {
	t.Helper()
	uri, err := wallet.Connect(t.Context(), wallet.ConnectConfig{Data: data, Relays: []string{relay}, Name: name, BudgetSats: budgetSats, Backend: wallet.BackendLND})
	if err != nil {
		t.Fatal(err)
	}
	return rawnwc.Dial(t, uri.Encode())
}

// Hold invoices through `wallet serve` over real lnd nodes, driven by an independent NWC
// client: the customer's wallet serves alice's node, the worker's bob's. The customer's
// pay_invoice is answered only once the worker settles (with the preimage) or cancels
// (PAYMENT_FAILED, the money and the budget back); only the connection that made the hold
// invoice may settle or cancel it. The subtests share the network and run in order.
func TestRegtestHoldInvoicesOverNWC(t *testing.T) {
	n := regtest.Start(t)
	relay := testrelay.Start(t)
	aliceData, bobData := t.TempDir(), t.TempDir()
	serveLND(t, relay, n.Alice, aliceData)
	serveLND(t, relay, n.Bob, bobData)
	customer := connectLND(t, aliceData, relay, "customer", 60_000)
	worker := connectLND(t, bobData, relay, "worker", 0)
	other := connectLND(t, bobData, relay, "other", 0)
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	notes := worker.Notifications(ctx)
	const cltvDelta = 40 // lnd wants at least 24 blocks for a hold invoice

	t.Run("settle", func(t *testing.T) {
		const amount = 21_000_000 // msat
		customerBefore, workerBefore := customer.Balance(ctx), worker.Balance(ctx)
		spentBefore := wallet.SpentMsat(t, aliceData, customer.PubKey())
		preimage, hash := rawnwc.NewPreimage(t)
		inv := worker.MakeHoldInvoice(ctx, hash, amount, cltvDelta)
		paid := customer.Send(ctx, "pay_invoice", map[string]any{"invoice": inv.Invoice}, 0)

		accepted := rawnwc.AwaitHoldAccepted(ctx, t, notes, hash, amount)
		var info struct {
			BlockHeight int64 `json:"block_height"`
		}
		worker.Call(ctx, "get_info", map[string]any{}).Want(t, "get_info", "", &info)
		if d := accepted.Transaction.SettleDeadline; d <= info.BlockHeight {
			t.Errorf("settle_deadline %d, want past the current height %d", d, info.BlockHeight)
		}
		var got rawnwc.HoldInvoice
		worker.Call(ctx, "lookup_invoice", map[string]any{"payment_hash": hash}).Want(t, "lookup_invoice", "", &got)
		if got.State != "accepted" {
			t.Errorf("worker's lookup_invoice: %+v, want accepted", got)
		}
		if w := worker.Balance(ctx); w != workerBefore {
			t.Errorf("held: worker's balance moved from %d to %d msat", workerBefore, w)
		}
		if s := wallet.SpentMsat(t, aliceData, customer.PubKey()); s != spentBefore+amount {
			t.Errorf("held: customer's budget spent %d msat, want %d", s, spentBefore+amount)
		}
		// another connection on the worker's wallet, and the customer on hers, may not resolve it
		for who, c := range map[string]*rawnwc.Client{"other": other, "customer": customer} {
			c.Call(ctx, "settle_hold_invoice", map[string]any{"preimage": preimage}).Want(t, who+" settles", "NOT_FOUND", nil)
			c.Call(ctx, "cancel_hold_invoice", map[string]any{"payment_hash": hash}).Want(t, who+" cancels", "NOT_FOUND", nil)
		}
		select {
		case r := <-paid:
			t.Fatalf("pay_invoice answered while held: %+v", r)
		default:
		}

		r := worker.Call(ctx, "settle_hold_invoice", map[string]any{"preimage": preimage})
		r.Want(t, "settle_hold_invoice", "", nil)
		if string(r.Result) != "{}" {
			t.Errorf("settle_hold_invoice result %s, want {}", r.Result)
		}
		var res struct {
			Preimage string `json:"preimage"`
			FeesPaid int64  `json:"fees_paid"`
		}
		rawnwc.Answer(ctx, t, paid).Want(t, "pay_invoice", "", &res)
		pre, _ := hex.DecodeString(res.Preimage)
		if h := sha256.Sum256(pre); hex.EncodeToString(h[:]) != hash || res.Preimage != preimage {
			t.Fatalf("pay_invoice preimage %q, want %s (of %s)", res.Preimage, preimage, hash)
		}
		if res.FeesPaid != 0 {
			t.Errorf("pay_invoice fees_paid %d msat, want 0 over the direct channel", res.FeesPaid)
		}
		worker.AwaitBalance(ctx, "worker after the settle", workerBefore+amount, lndWait)
		customer.AwaitBalance(ctx, "customer after the settle", customerBefore-amount-res.FeesPaid, lndWait)
		if s := wallet.SpentMsat(t, aliceData, customer.PubKey()); s != spentBefore+amount+res.FeesPaid {
			t.Errorf("settled: customer's budget spent %d msat, want %d", s, spentBefore+amount+res.FeesPaid)
		}
		worker.Call(ctx, "lookup_invoice", map[string]any{"payment_hash": hash}).Want(t, "lookup_invoice", "", &got)
		if got.State != "settled" {
			t.Errorf("worker's lookup_invoice after the settle: %+v, want settled", got)
		}
	})

	t.Run("cancel", func(t *testing.T) {
		const amount = 30_000_000 // msat
		customerBefore, workerBefore := customer.Balance(ctx), worker.Balance(ctx)
		spentBefore := wallet.SpentMsat(t, aliceData, customer.PubKey())
		_, hash := rawnwc.NewPreimage(t)
		inv := worker.MakeHoldInvoice(ctx, hash, amount, cltvDelta)
		paid := customer.Send(ctx, "pay_invoice", map[string]any{"invoice": inv.Invoice}, 0)
		rawnwc.AwaitHoldAccepted(ctx, t, notes, hash, amount)
		if s := wallet.SpentMsat(t, aliceData, customer.PubKey()); s != spentBefore+amount {
			t.Errorf("held: customer's budget spent %d msat, want %d", s, spentBefore+amount)
		}
		other.Call(ctx, "cancel_hold_invoice", map[string]any{"payment_hash": hash}).Want(t, "other cancels", "NOT_FOUND", nil)
		select {
		case r := <-paid:
			t.Fatalf("pay_invoice answered while held: %+v", r)
		default:
		}

		r := worker.Call(ctx, "cancel_hold_invoice", map[string]any{"payment_hash": hash})
		r.Want(t, "cancel_hold_invoice", "", nil)
		if string(r.Result) != "{}" {
			t.Errorf("cancel_hold_invoice result %s, want {}", r.Result)
		}
		rawnwc.Answer(ctx, t, paid).Want(t, "pay_invoice of a cancelled hold invoice", "PAYMENT_FAILED", nil)
		customer.AwaitBalance(ctx, "customer after the cancel", customerBefore, lndWait)
		if w := worker.Balance(ctx); w != workerBefore {
			t.Errorf("cancelled: worker's balance moved from %d to %d msat", workerBefore, w)
		}
		if s := wallet.SpentMsat(t, aliceData, customer.PubKey()); s != spentBefore {
			t.Errorf("cancelled: customer's budget spent %d msat, want %d back", s, spentBefore)
		}
		var got rawnwc.HoldInvoice
		worker.Call(ctx, "lookup_invoice", map[string]any{"payment_hash": hash}).Want(t, "lookup_invoice", "", &got)
		if got.State != "failed" {
			t.Errorf("worker's lookup_invoice after the cancel: %+v, want failed", got)
		}
		// the budget given back pays this much again: 21 000 + 30 000 sat fit the 60 000
		var plain rawnwc.HoldInvoice
		worker.Call(ctx, "make_invoice", map[string]any{"amount": amount, "description": "retry"}).Want(t, "make_invoice", "", &plain)
		customer.Call(ctx, "pay_invoice", map[string]any{"invoice": plain.Invoice}).Want(t, "pay within the budget given back", "", nil)
		worker.AwaitBalance(ctx, "worker after the plain payment", workerBefore+amount, lndWait)
	})
}

// A restart of both wallet services while payments are held over lnd neither loses nor doubles
// money: after it the worker's connection still settles or cancels its hold invoices, and the
// customer's wallet resolves the payments the first run left in flight (paid with the
// preimage, or failed with the budget given back).
func TestRegtestHeldPaymentsSurviveRestartOverNWC(t *testing.T) {
	n := regtest.Start(t)
	relay := testrelay.Start(t)
	aliceData, bobData := t.TempDir(), t.TempDir()
	stopAlice, stopBob := serveLND(t, relay, n.Alice, aliceData), serveLND(t, relay, n.Bob, bobData)
	customer := connectLND(t, aliceData, relay, "customer", 100_000)
	worker := connectLND(t, bobData, relay, "worker", 0)
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	notes := worker.Notifications(ctx)
	const amount = 20_000_000 // msat
	customerBefore, workerBefore := customer.Balance(ctx), worker.Balance(ctx)
	settleP, settleH := rawnwc.NewPreimage(t)
	_, cancelH := rawnwc.NewPreimage(t)
	invoices, firstRun := map[string]string{}, map[string]<-chan rawnwc.Response{}
	for _, h := range []string{settleH, cancelH} {
		invoices[h] = worker.MakeHoldInvoice(ctx, h, amount, 40).Invoice
		firstRun[h] = customer.Send(ctx, "pay_invoice", map[string]any{"invoice": invoices[h]}, 0)
		rawnwc.AwaitHoldAccepted(ctx, t, notes, h, amount)
	}
	stopAlice()
	stopBob()

	serveLND(t, relay, n.Alice, aliceData)
	serveLND(t, relay, n.Bob, bobData)
	// the worker may have missed hold_invoice_accepted while its wallet was down: it comes again
	again, stop := context.WithTimeout(ctx, lndWait)
	defer stop()
	for missing := map[string]bool{settleH: true, cancelH: true}; len(missing) > 0; {
		var note rawnwc.Notification
		select {
		case note = <-notes:
		case <-again.Done():
			t.Fatalf("no hold_invoice_accepted after the restart for %v", missing)
		}
		if tx := note.Transaction; note.Type == "hold_invoice_accepted" && tx.State == "accepted" && tx.Amount == amount {
			delete(missing, tx.PaymentHash)
		}
	}
	if s := wallet.SpentMsat(t, aliceData, customer.PubKey()); s != 2*amount {
		t.Fatalf("after restart: customer's budget spent %d msat, want %d", s, 2*amount)
	}
	customer.Call(ctx, "pay_invoice", map[string]any{"invoice": invoices[settleH]}).
		Want(t, "paying a held invoice again", "OTHER", nil) // payment in progress
	var got rawnwc.HoldInvoice
	worker.Call(ctx, "lookup_invoice", map[string]any{"payment_hash": settleH}).Want(t, "lookup_invoice", "", &got)
	if got.State != "accepted" {
		t.Errorf("after restart: worker's lookup_invoice %+v, want accepted", got)
	}

	worker.Call(ctx, "settle_hold_invoice", map[string]any{"preimage": settleP}).Want(t, "settle after restart", "", nil)
	worker.Call(ctx, "cancel_hold_invoice", map[string]any{"payment_hash": cancelH}).Want(t, "cancel after restart", "", nil)
	worker.AwaitBalance(ctx, "worker after the settle", workerBefore+amount, lndWait)
	var fees struct {
		FeesPaid int64 `json:"fees_paid"`
	}
	customer.Call(ctx, "lookup_invoice", map[string]any{"payment_hash": settleH}).Want(t, "customer's lookup_invoice", "", &fees)
	customer.AwaitBalance(ctx, "customer after the settle and the cancel", customerBefore-amount-fees.FeesPaid, lndWait)
	deadline := time.Now().Add(lndWait)
	for wallet.SpentMsat(t, aliceData, customer.PubKey()) != amount+fees.FeesPaid {
		if time.Now().After(deadline) {
			t.Fatalf("customer's budget spent %d msat %s after the cancel, want %d", wallet.SpentMsat(t, aliceData, customer.PubKey()), lndWait, amount+fees.FeesPaid)
		}
		time.Sleep(50 * time.Millisecond)
	}
	var res struct {
		Preimage string `json:"preimage"`
	}
	customer.Call(ctx, "pay_invoice", map[string]any{"invoice": invoices[settleH]}).Want(t, "pay the settled invoice again", "", &res)
	if res.Preimage != settleP {
		t.Errorf("pay again: preimage %q, want the settled one", res.Preimage)
	}
	customer.Call(ctx, "pay_invoice", map[string]any{"invoice": invoices[cancelH]}).Want(t, "pay the cancelled invoice again", "PAYMENT_FAILED", nil)
	if c, w := customer.Balance(ctx), worker.Balance(ctx); c != customerBefore-amount-fees.FeesPaid || w != workerBefore+amount {
		t.Errorf("after paying again: customer %d, worker %d msat; want %d, %d", c, w, customerBefore-amount-fees.FeesPaid, workerBefore+amount)
	}
	// stopping must not answer a held payment: an INTERNAL or a failure would tell the
	// customer the money is free while it may yet go to the worker
	for h, ch := range firstRun {
		select {
		case r := <-ch:
			t.Errorf("the first run's pay_invoice of %s answered: error %+v, result %s", h, r.Error, r.Result)
		default:
		}
	}
}
