package wallet

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"testing"
	"time"

	"github.com/sparecycles/sparecycles/internal/rawnwc"
	"github.com/sparecycles/sparecycles/internal/testrelay"
)

// paymentState is the wallet store's record of a payment: in_flight, paid or failed.
func paymentState(t *testing.T, st *store, hash string) string {
	t.Helper()
	var s string
	if err := st.db.QueryRowContext(t.Context(), `SELECT state FROM payments WHERE payment_hash = ?`, hash).Scan(&s); err != nil {
		t.Fatal(err)
	}
	return s
}

// eventually polls cond for at most 15 s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 15 s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

type holdFixture struct {
	relay, dir           string
	worker, buyer, other string // connection strings
	buyerPubKey          string
	cfg                  Config
}

func newHoldFixture(t *testing.T) holdFixture {
	relay := testrelay.Start(t)
	dir := t.TempDir()
	conn := func(name string, budget, fund int64) ConnectConfig {
		return ConnectConfig{Data: dir, Relays: []string{relay}, Name: name, BudgetSats: budget, FundSats: fund}
	}
	buyer := connect(t, conn("buyer", 60, 100))
	return holdFixture{
		relay: relay, dir: dir,
		worker:      connect(t, conn("worker", 0, 0)).Encode(),
		buyer:       buyer.Encode(),
		buyerPubKey: buyer.ClientPubKey(),
		other:       connect(t, conn("other", 0, 0)).Encode(),
		cfg:         Config{Relays: []string{relay}, Data: dir, Backend: BackendLedger, inFlightEvery: 50 * time.Millisecond},
	}
}

// Hold invoices through `wallet serve`, driven by an independent NWC client: the payer's
// pay_invoice is answered only once the payee settles (with the preimage) or cancels
// (PAYMENT_FAILED, the money and the budget back); only the payee may settle or cancel.
func TestHoldInvoicesOverNWC(t *testing.T) {
	f := newHoldFixture(t)
	ctx := serve(t, f.cfg)
	worker, buyer, other := rawnwc.Dial(t, f.worker), rawnwc.Dial(t, f.buyer), rawnwc.Dial(t, f.other)
	st := openTestStore(t, f.dir)
	notes := worker.Notifications(ctx)

	var info struct {
		Methods       []string `json:"methods"`
		Notifications []string `json:"notifications"`
	}
	worker.Call(ctx, "get_info", map[string]any{}).Want(t, "get_info", "", &info)
	for _, m := range []string{"make_hold_invoice", "settle_hold_invoice", "cancel_hold_invoice", "hold_invoice_accepted"} {
		found := false
		for _, have := range append(info.Methods, info.Notifications...) {
			found = found || have == m
		}
		if !found {
			t.Errorf("get_info %+v lacks %s", info, m)
		}
	}

	t.Run("settle", func(t *testing.T) {
		preimage, hash := rawnwc.NewPreimage(t)
		inv := worker.MakeHoldInvoice(ctx, hash, 21_000, 10)
		// the request expires long before the answer: the answer still goes out
		expiration := time.Now().Unix() + 2
		paid := buyer.Send(ctx, "pay_invoice", map[string]any{"invoice": inv.Invoice}, expiration)
		rawnwc.AwaitHoldAccepted(ctx, t, notes, hash, 21_000)
		var got rawnwc.HoldInvoice
		worker.Call(ctx, "lookup_invoice", map[string]any{"payment_hash": hash}).Want(t, "lookup_invoice", "", &got)
		if got.State != "accepted" {
			t.Errorf("lookup_invoice: %+v, want accepted", got)
		}
		if b, w := buyer.Balance(ctx), worker.Balance(ctx); b != 79_000 || w != 0 {
			t.Errorf("held: buyer %d, worker %d msat; want 79000 and 0", b, w)
		}
		if s := spent(t, st, f.buyerPubKey); s != 21_000 {
			t.Errorf("budget spent %d msat, want 21000", s)
		}
		for who, c := range map[string]*rawnwc.Client{"other": other, "buyer": buyer} {
			c.Call(ctx, "settle_hold_invoice", map[string]any{"preimage": preimage}).Want(t, who+" settles", "NOT_FOUND", nil)
			c.Call(ctx, "cancel_hold_invoice", map[string]any{"payment_hash": hash}).Want(t, who+" cancels", "NOT_FOUND", nil)
		}
		select {
		case r := <-paid:
			t.Fatalf("pay_invoice answered before settle: %+v", r)
		default:
		}
		eventually(t, "the pay_invoice request expired", func() bool { return time.Now().Unix() > expiration })

		r := worker.Call(ctx, "settle_hold_invoice", map[string]any{"preimage": preimage})
		r.Want(t, "settle_hold_invoice", "", nil)
		if string(r.Result) != "{}" {
			t.Errorf("settle_hold_invoice result %s, want {}", r.Result)
		}
		var res struct {
			Preimage string `json:"preimage"`
		}
		rawnwc.Answer(ctx, t, paid).Want(t, "pay_invoice", "", &res)
		pre, _ := hex.DecodeString(res.Preimage)
		if h := sha256.Sum256(pre); hex.EncodeToString(h[:]) != hash {
			t.Fatalf("pay_invoice preimage %q does not hash to %s", res.Preimage, hash)
		}
		if b, w := buyer.Balance(ctx), worker.Balance(ctx); b != 79_000 || w != 21_000 {
			t.Errorf("settled: buyer %d, worker %d msat; want 79000 and 21000", b, w)
		}
		if s, state := spent(t, st, f.buyerPubKey), paymentState(t, st, hash); s != 21_000 || state != statePaid {
			t.Errorf("budget spent %d msat, payment %s; want 21000, paid", s, state)
		}
		worker.Call(ctx, "settle_hold_invoice", map[string]any{"preimage": preimage}).Want(t, "settle again", "", nil)
	})

	t.Run("cancel", func(t *testing.T) {
		_, hash := rawnwc.NewPreimage(t)
		inv := worker.MakeHoldInvoice(ctx, hash, 30_000, 10)
		paid := buyer.Send(ctx, "pay_invoice", map[string]any{"invoice": inv.Invoice}, 0)
		rawnwc.AwaitHoldAccepted(ctx, t, notes, hash, 30_000)
		if b := buyer.Balance(ctx); b != 49_000 {
			t.Errorf("held: buyer %d msat, want 49000", b)
		}
		if s := spent(t, st, f.buyerPubKey); s != 51_000 {
			t.Errorf("budget spent %d msat, want 51000", s)
		}
		worker.Call(ctx, "cancel_hold_invoice", map[string]any{"payment_hash": hash}).Want(t, "cancel_hold_invoice", "", nil)
		rawnwc.Answer(ctx, t, paid).Want(t, "pay_invoice of a cancelled hold invoice", "PAYMENT_FAILED", nil)
		if b, w := buyer.Balance(ctx), worker.Balance(ctx); b != 79_000 || w != 21_000 {
			t.Errorf("cancelled: buyer %d, worker %d msat; want 79000 and 21000", b, w)
		}
		if s := spent(t, st, f.buyerPubKey); s != 21_000 {
			t.Errorf("budget spent %d msat after cancel, want 21000", s)
		}
		worker.Call(ctx, "cancel_hold_invoice", map[string]any{"payment_hash": hash}).Want(t, "cancel again", "", nil)
		buyer.Call(ctx, "pay_invoice", map[string]any{"invoice": inv.Invoice}).Want(t, "pay a cancelled invoice", "PAYMENT_FAILED", nil)
		if b := buyer.Balance(ctx); b != 79_000 {
			t.Errorf("buyer %d msat, want 79000", b)
		}
	})
}

// A restart of `wallet serve` while payments are held neither loses nor doubles money, and a
// settle or a cancel after the restart resolves the payment the first run left in flight.
func TestHeldPaymentsSurviveRestart(t *testing.T) {
	f := newHoldFixture(t)
	st := openTestStore(t, f.dir)
	settleP, settleH := rawnwc.NewPreimage(t)
	_, cancelH := rawnwc.NewPreimage(t)
	t.Run("first run", func(t *testing.T) {
		ctx := serve(t, f.cfg)
		worker, buyer := rawnwc.Dial(t, f.worker), rawnwc.Dial(t, f.buyer)
		notes := worker.Notifications(ctx)
		for _, h := range []string{settleH, cancelH} {
			inv := worker.MakeHoldInvoice(ctx, h, 20_000, 10)
			buyer.Send(ctx, "pay_invoice", map[string]any{"invoice": inv.Invoice}, 0)
			rawnwc.AwaitHoldAccepted(ctx, t, notes, h, 20_000)
		}
	})
	if t.Failed() {
		return
	}
	for _, h := range []string{settleH, cancelH} {
		if state := paymentState(t, st, h); state != stateInFlight {
			t.Fatalf("after the first run: payment %s, want in_flight", state)
		}
	}
	ctx := serve(t, f.cfg)
	worker, buyer := rawnwc.Dial(t, f.worker), rawnwc.Dial(t, f.buyer)
	if b, w, s := buyer.Balance(ctx), worker.Balance(ctx), spent(t, st, f.buyerPubKey); b != 60_000 || w != 0 || s != 40_000 {
		t.Fatalf("after restart: buyer %d, worker %d, spent %d msat; want 60000, 0, 40000", b, w, s)
	}
	buyer.Call(ctx, "pay_invoice", map[string]any{"invoice": mustInvoice(ctx, t, worker, settleH)}).
		Want(t, "paying a held invoice again", "OTHER", nil) // payment in progress

	worker.Call(ctx, "settle_hold_invoice", map[string]any{"preimage": settleP}).Want(t, "settle", "", nil)
	worker.Call(ctx, "cancel_hold_invoice", map[string]any{"payment_hash": cancelH}).Want(t, "cancel", "", nil)
	eventually(t, "the settled payment recorded paid", func() bool { return paymentState(t, st, settleH) == statePaid })
	eventually(t, "the cancelled payment recorded failed", func() bool { return paymentState(t, st, cancelH) == stateFailed })
	if b, w, s := buyer.Balance(ctx), worker.Balance(ctx), spent(t, st, f.buyerPubKey); b != 80_000 || w != 20_000 || s != 20_000 {
		t.Errorf("resolved: buyer %d, worker %d, spent %d msat; want 80000, 20000, 20000", b, w, s)
	}
	var res struct {
		Preimage string `json:"preimage"`
	}
	buyer.Call(ctx, "pay_invoice", map[string]any{"invoice": mustInvoice(ctx, t, worker, settleH)}).Want(t, "pay again", "", &res)
	if res.Preimage != settleP {
		t.Errorf("pay again: preimage %q, want the settled one", res.Preimage)
	}
	if b, w := buyer.Balance(ctx), worker.Balance(ctx); b != 80_000 || w != 20_000 {
		t.Errorf("after paying again: buyer %d, worker %d msat; want 80000, 20000", b, w)
	}
}

// mustInvoice is the bolt11 of worker's invoice for hash.
func mustInvoice(ctx context.Context, t *testing.T, worker *rawnwc.Client, hash string) string {
	t.Helper()
	var got rawnwc.HoldInvoice
	worker.Call(ctx, "lookup_invoice", map[string]any{"payment_hash": hash}).Want(t, "lookup_invoice", "", &got)
	return got.Invoice
}
