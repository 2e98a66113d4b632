package lnd_test

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/sparecycles/sparecycles/internal/regtest"
	"github.com/sparecycles/sparecycles/nips/nip47"
	"github.com/sparecycles/sparecycles/wallet"
	"github.com/sparecycles/sparecycles/wallet/lnd"
)

// TestRegtestHoldInvoices runs hold invoices between alice (the payer) and bob (the maker)
// over their direct channel, so no routing fees: balances move by the amount exactly. The
// subtests share one network and run in order.
func TestRegtestHoldInvoices(t *testing.T) {
	n := regtest.Start(t)
	owners := filepath.Join(t.TempDir(), lnd.HoldOwnersFile)
	alice, bob := connect(t, n.Alice), connectHold(t, n.Bob, owners)
	const amount = 40_000_000 // msat

	t.Run("Info", func(t *testing.T) {
		info, err := bob.Info(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if len(info.Methods) != 9 || len(info.Notifications) != 3 {
			t.Errorf("methods %v, notifications %v: want the hold invoice ones too", info.Methods, info.Notifications)
		}
	})

	t.Run("Settle", func(t *testing.T) {
		ctx := t.Context()
		bobEvents := subscribe(t, bob)
		aliceBefore, bobBefore := balance(t, alice), balance(t, bob)
		preimage, hash := newPreimage(t)

		inv, err := bob.MakeHoldInvoice(ctx, "bob-account", nip47.MakeHoldInvoiceParams{
			Amount: amount, Description: "job", PaymentHash: hash, Expiry: 600,
		})
		if err != nil {
			t.Fatal(err)
		}
		if inv.State != nip47.StatePending || inv.PaymentHash != hash || inv.Amount != amount || inv.Description != "job" || inv.Preimage != "" {
			t.Errorf("new hold invoice = %+v", inv)
		}
		if err := bob.SettleHoldInvoice(ctx, "bob-account", preimage); !errors.Is(err, nip47.ErrOther) {
			t.Errorf("settling an unpaid hold invoice: %v, want OTHER", err)
		}
		_, err = bob.MakeHoldInvoice(ctx, "bob-account", nip47.MakeHoldInvoiceParams{Amount: amount, PaymentHash: hash})
		if !errors.Is(err, nip47.ErrOther) {
			t.Errorf("a second hold invoice for the same hash: %v, want OTHER", err)
		}

		paid := payAsync(t, alice, inv.Invoice)
		accepted := next(t, bobEvents)
		checkAccepted(t, bob, accepted, "bob-account", hash, amount)
		in, err := bob.LookupInvoice(ctx, "bob-account", nip47.LookupInvoiceParams{PaymentHash: hash})
		if err != nil {
			t.Fatal(err)
		}
		if in.State != nip47.StateAccepted || in.SettleDeadline != accepted.Notification.Transaction.SettleDeadline {
			t.Errorf("bob's lookup of the accepted invoice = %+v", in)
		}
		out, err := alice.LookupInvoice(ctx, "alice-account", nip47.LookupInvoiceParams{PaymentHash: hash})
		if err != nil {
			t.Fatal(err)
		}
		if out.Type != nip47.TypeOutgoing || out.State != nip47.StatePending {
			t.Errorf("alice's lookup of the held payment = %+v, want outgoing pending", out)
		}
		// Held: alice's funds are locked in the HTLC, bob has nothing yet.
		waitBalanceAtMost(t, alice, aliceBefore-amount)
		if got := balance(t, bob); got != bobBefore {
			t.Errorf("bob's balance moved from %d to %d before the settle", bobBefore, got)
		}
		select {
		case r := <-paid:
			t.Fatalf("alice's payment returned while held: %+v", r)
		default:
		}

		// Only bob-account may settle or cancel.
		if err := bob.SettleHoldInvoice(ctx, "mallory", preimage); !errors.Is(err, nip47.ErrNotFound) {
			t.Errorf("settle by another account: %v, want NOT_FOUND", err)
		}
		if err := bob.CancelHoldInvoice(ctx, "mallory", hash); !errors.Is(err, nip47.ErrNotFound) {
			t.Errorf("cancel by another account: %v, want NOT_FOUND", err)
		}
		wrong, _ := newPreimage(t)
		if err := bob.SettleHoldInvoice(ctx, "bob-account", wrong); !errors.Is(err, nip47.ErrNotFound) {
			t.Errorf("settle with a preimage of no invoice: %v, want NOT_FOUND", err)
		}

		if err := bob.SettleHoldInvoice(ctx, "bob-account", preimage); err != nil {
			t.Fatal(err)
		}
		if err := bob.SettleHoldInvoice(ctx, "bob-account", preimage); err != nil {
			t.Errorf("settling twice: %v", err)
		}
		r := waitPaid(t, paid)
		if r.err != nil {
			t.Fatalf("alice's payment: %v", r.err)
		}
		if r.res.Preimage != preimage || r.res.FeesPaid != 0 {
			t.Errorf("alice's payment = %+v, want preimage %s and no fees", r.res, preimage)
		}
		waitBalance(t, bob, bobBefore+amount)
		waitBalance(t, alice, aliceBefore-amount)

		got := next(t, bobEvents)
		if got.Account != "bob-account" || got.Notification.Type != nip47.NotificationPaymentReceived ||
			got.Notification.Transaction.PaymentHash != hash || got.Notification.Transaction.Preimage != preimage {
			t.Errorf("bob's event after the settle = %+v", got)
		}
		// The next event is for a later invoice: the settle was notified once.
		marker, err := bob.MakeInvoice(ctx, "", nip47.MakeInvoiceParams{Amount: 1000, Description: "marker"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := alice.PayInvoice(ctx, "", nip47.PayInvoiceParams{Invoice: marker.Invoice}); err != nil {
			t.Fatal(err)
		}
		if got := next(t, bobEvents); got.Notification.Transaction.PaymentHash != marker.PaymentHash {
			t.Errorf("after the settle's payment_received came %+v, want the marker's", got)
		}
		// Moved once: by the amount and the marker's 1000 msat.
		waitBalance(t, bob, bobBefore+amount+1000)
		waitBalance(t, alice, aliceBefore-amount-1000)
		if err := bob.CancelHoldInvoice(ctx, "bob-account", hash); !errors.Is(err, nip47.ErrOther) {
			t.Errorf("cancelling a settled hold invoice: %v, want OTHER", err)
		}
		in, err = bob.LookupInvoice(ctx, "", nip47.LookupInvoiceParams{PaymentHash: hash})
		if err != nil || in.State != nip47.StateSettled || in.Preimage != preimage {
			t.Errorf("bob's lookup after the settle = %+v, %v", in, err)
		}
	})

	t.Run("Cancel", func(t *testing.T) {
		ctx := t.Context()
		bobEvents := subscribe(t, bob)
		aliceBefore, bobBefore := balance(t, alice), balance(t, bob)
		preimage, hash := newPreimage(t)
		inv, err := bob.MakeHoldInvoice(ctx, "bob-account", nip47.MakeHoldInvoiceParams{
			Amount: amount, Description: "job to fail", PaymentHash: hash, MinCLTVExpiryDelta: 40,
		})
		if err != nil {
			t.Fatal(err)
		}
		paid := payAsync(t, alice, inv.Invoice)
		checkAccepted(t, bob, next(t, bobEvents), "bob-account", hash, amount)
		waitBalanceAtMost(t, alice, aliceBefore-amount)

		if err := bob.CancelHoldInvoice(ctx, "bob-account", hash); err != nil {
			t.Fatal(err)
		}
		if err := bob.CancelHoldInvoice(ctx, "bob-account", hash); err != nil {
			t.Errorf("cancelling twice: %v", err)
		}
		r := waitPaid(t, paid)
		if !errors.Is(r.err, nip47.ErrPaymentFailed) {
			t.Fatalf("alice's payment after the cancel: %+v, %v; want PAYMENT_FAILED", r.res, r.err)
		}
		waitBalance(t, alice, aliceBefore)
		if got := balance(t, bob); got != bobBefore {
			t.Errorf("bob's balance moved from %d to %d", bobBefore, got)
		}
		if err := bob.SettleHoldInvoice(ctx, "bob-account", preimage); !errors.Is(err, nip47.ErrOther) {
			t.Errorf("settling a cancelled hold invoice: %v, want OTHER", err)
		}
		in, err := bob.LookupInvoice(ctx, "", nip47.LookupInvoiceParams{PaymentHash: hash})
		if err != nil || in.State != nip47.StateFailed {
			t.Errorf("bob's lookup after the cancel = %+v, %v; want failed", in, err)
		}
		out, err := alice.LookupInvoice(ctx, "", nip47.LookupInvoiceParams{PaymentHash: hash})
		if err != nil || out.State != nip47.StateFailed {
			t.Errorf("alice's lookup after the cancel = %+v, %v; want failed", out, err)
		}

		// An open (unpaid) hold invoice cancels too, and then cannot be paid.
		_, hash2 := newPreimage(t)
		inv2, err := bob.MakeHoldInvoice(ctx, "bob-account", nip47.MakeHoldInvoiceParams{Amount: amount, PaymentHash: hash2})
		if err != nil {
			t.Fatal(err)
		}
		if err := bob.CancelHoldInvoice(ctx, "bob-account", hash2); err != nil {
			t.Fatal(err)
		}
		if _, err := alice.PayInvoice(ctx, "", nip47.PayInvoiceParams{Invoice: inv2.Invoice}); !errors.Is(err, nip47.ErrPaymentFailed) {
			t.Errorf("paying a cancelled hold invoice: %v, want PAYMENT_FAILED", err)
		}
	})

	t.Run("BadInput", func(t *testing.T) {
		ctx := t.Context()
		_, hash := newPreimage(t)
		for _, p := range []nip47.MakeHoldInvoiceParams{
			{Amount: amount, PaymentHash: "abc"},
			{Amount: 0, PaymentHash: hash},
			{Amount: amount, PaymentHash: hash, MinCLTVExpiryDelta: 5},
			{Amount: amount, PaymentHash: hash, DescriptionHash: "zz"},
		} {
			if _, err := bob.MakeHoldInvoice(ctx, "", p); !errors.Is(err, nip47.ErrOther) {
				t.Errorf("MakeHoldInvoice(%+v): %v, want OTHER", p, err)
			}
		}
		if err := bob.SettleHoldInvoice(ctx, "", "00"); !errors.Is(err, nip47.ErrOther) {
			t.Errorf("settle with a short preimage: %v, want OTHER", err)
		}
		if err := bob.CancelHoldInvoice(ctx, "", hash); !errors.Is(err, nip47.ErrNotFound) {
			t.Errorf("cancel of an unknown hash: %v, want NOT_FOUND", err)
		}
	})

	// A hold invoice accepted before the wallet restarts is notified after it and can still be
	// settled, by the account that made it only.
	t.Run("Restart", func(t *testing.T) {
		ctx := t.Context()
		aliceBefore := balance(t, alice)
		preimage, hash := newPreimage(t)
		inv, err := bob.MakeHoldInvoice(ctx, "bob-account", nip47.MakeHoldInvoiceParams{Amount: amount, PaymentHash: hash})
		if err != nil {
			t.Fatal(err)
		}
		paid := payAsync(t, alice, inv.Invoice)
		waitState(t, bob, hash, nip47.StateAccepted)
		if err := bob.Close(); err != nil {
			t.Fatal(err)
		}

		again := connectHold(t, n.Bob, owners)
		checkAccepted(t, again, next(t, subscribe(t, again)), "bob-account", hash, amount)
		if err := again.SettleHoldInvoice(ctx, "mallory", preimage); !errors.Is(err, nip47.ErrNotFound) {
			t.Errorf("settle by another account after the restart: %v, want NOT_FOUND", err)
		}
		if err := again.SettleHoldInvoice(ctx, "bob-account", preimage); err != nil {
			t.Fatal(err)
		}
		if r := waitPaid(t, paid); r.err != nil || r.res.Preimage != preimage {
			t.Fatalf("alice's payment: %+v, %v", r.res, r.err)
		}
		waitBalance(t, alice, aliceBefore-amount)
	})
}

func connectHold(t *testing.T, node *regtest.Node, owners string) *lnd.Backend {
	t.Helper()
	b, err := lnd.New(t.Context(), lnd.Config{
		RESTURL: node.RESTURL, MacaroonPath: node.Macaroon, TLSCertPath: node.TLSCert, HoldOwnersPath: owners,
	})
	if err != nil {
		t.Fatalf("connect to %s: %v", node.Name, err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

func newPreimage(t *testing.T) (preimage, hash string) {
	t.Helper()
	p := make([]byte, 32)
	rand.Read(p)
	h := sha256.Sum256(p)
	return hex.EncodeToString(p), hex.EncodeToString(h[:])
}

type payResult struct {
	res nip47.PayInvoiceResult
	err error
}

// payAsync pays from b in a goroutine: a payment to a hold invoice blocks until it settles
// or is cancelled.
func payAsync(t *testing.T, b *lnd.Backend, invoice string) <-chan payResult {
	done := make(chan payResult, 1)
	go func() {
		res, err := b.PayInvoice(t.Context(), "alice-account", nip47.PayInvoiceParams{Invoice: invoice})
		done <- payResult{res, err}
	}()
	return done
}

func waitPaid(t *testing.T, paid <-chan payResult) payResult {
	t.Helper()
	select {
	case r := <-paid:
		return r
	case <-time.After(settleWait):
		t.Fatal("the payment did not return after the settle or cancel")
	}
	return payResult{}
}

func checkAccepted(t *testing.T, b *lnd.Backend, ev wallet.BackendEvent, account, hash string, amount int64) {
	t.Helper()
	tx := ev.Notification.Transaction
	if ev.Account != account || ev.Notification.Type != nip47.NotificationHoldInvoiceAccepted ||
		tx.PaymentHash != hash || tx.State != nip47.StateAccepted || tx.Amount != amount || tx.Preimage != "" {
		t.Fatalf("event = %+v, want hold_invoice_accepted for %s", ev, hash)
	}
	info, err := b.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if tx.SettleDeadline <= info.BlockHeight {
		t.Errorf("settle_deadline %d is not after the height %d", tx.SettleDeadline, info.BlockHeight)
	}
}

// waitState polls b's lookup of hash until it is in state, within settleWait.
func waitState(t *testing.T, b *lnd.Backend, hash, state string) {
	t.Helper()
	deadline := time.Now().Add(settleWait)
	for {
		tx, err := b.LookupInvoice(t.Context(), "", nip47.LookupInvoiceParams{PaymentHash: hash})
		if err != nil {
			t.Fatal(err)
		}
		if tx.State == state {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("invoice %s is %s, want %s", hash, tx.State, state)
		}
		select {
		case <-t.Context().Done():
			t.Fatal(t.Context().Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// waitBalanceAtMost waits for b's balance to drop to at most want: funds locked in an HTLC
// leave it (and, for the channel's opener, the bigger commitment's fee).
func waitBalanceAtMost(t *testing.T, b *lnd.Backend, want int64) {
	t.Helper()
	deadline := time.Now().Add(settleWait)
	for {
		got := balance(t, b)
		if got <= want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("balance %d msat, want at most %d", got, want)
		}
		select {
		case <-t.Context().Done():
			t.Fatal(t.Context().Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}
