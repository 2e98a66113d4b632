package lnd_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sparecycles/sparecycles/internal/regtest"
	"github.com/sparecycles/sparecycles/nips/nip47"
	"github.com/sparecycles/sparecycles/wallet"
	"github.com/sparecycles/sparecycles/wallet/lnd"
)

// settleWait bounds waits for lnd to finish what it has started: a channel update after a
// payment, a notification.
const settleWait = 30 * time.Second

func connect(t *testing.T, node *regtest.Node) *lnd.Backend {
	t.Helper()
	b, err := lnd.New(t.Context(), lnd.Config{RESTURL: node.RESTURL, MacaroonPath: node.Macaroon, TLSCertPath: node.TLSCert})
	if err != nil {
		t.Fatalf("connect to %s: %v", node.Name, err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

// TestRegtestLND runs the backend against alice and bob. The subtests share one network
// and run in order: each reads balances that the ones before it moved.
func TestRegtestLND(t *testing.T) {
	n := regtest.Start(t)
	alice, bob := connect(t, n.Alice), connect(t, n.Bob)

	t.Run("Info", func(t *testing.T) {
		info, err := alice.Info(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if info.Pubkey != n.Alice.PubKey || info.Alias != "alice" || info.Network != "regtest" || info.BlockHeight == 0 {
			t.Errorf("info = %+v, want alice's pubkey %s on regtest", info, n.Alice.PubKey)
		}
		if len(info.Methods) != 9 {
			t.Errorf("methods = %v, want all six and the three of hold invoices", info.Methods)
		}
	})

	t.Run("PayLookupNotify", func(t *testing.T) {
		ctx := t.Context()
		bobEvents := subscribe(t, bob)
		aliceEvents := subscribe(t, alice)
		aliceBefore, bobBefore := balance(t, alice), balance(t, bob)

		const amount = 21_000_000 // msat
		inv, err := bob.MakeInvoice(ctx, "bob-account", nip47.MakeInvoiceParams{Amount: amount, Description: "coffee"})
		if err != nil {
			t.Fatal(err)
		}
		if inv.State != nip47.StatePending || inv.Amount != amount || inv.Description != "coffee" || inv.Preimage != "" {
			t.Errorf("new invoice = %+v", inv)
		}
		res, err := alice.PayInvoice(ctx, "alice-account", nip47.PayInvoiceParams{Invoice: inv.Invoice})
		if err != nil {
			t.Fatal(err)
		}
		checkPreimage(t, res.Preimage, inv.PaymentHash)

		in, err := bob.LookupInvoice(ctx, "bob-account", nip47.LookupInvoiceParams{PaymentHash: inv.PaymentHash})
		if err != nil {
			t.Fatal(err)
		}
		if in.Type != nip47.TypeIncoming || in.State != nip47.StateSettled || in.Preimage != res.Preimage || in.Amount != amount || in.SettledAt == 0 {
			t.Errorf("bob's lookup = %+v", in)
		}
		out, err := alice.LookupInvoice(ctx, "alice-account", nip47.LookupInvoiceParams{Invoice: inv.Invoice})
		if err != nil {
			t.Fatal(err)
		}
		if out.Type != nip47.TypeOutgoing || out.State != nip47.StateSettled || out.Preimage != res.Preimage ||
			out.Amount != amount || out.FeesPaid != res.FeesPaid || out.Description != "coffee" {
			t.Errorf("alice's lookup = %+v", out)
		}

		waitBalance(t, bob, bobBefore+amount)
		waitBalance(t, alice, aliceBefore-amount-res.FeesPaid)

		got := next(t, bobEvents)
		if got.Account != "bob-account" || got.Notification.Type != nip47.NotificationPaymentReceived ||
			got.Notification.Transaction.PaymentHash != inv.PaymentHash || got.Notification.Transaction.State != nip47.StateSettled {
			t.Errorf("bob's event = %+v", got)
		}
		got = next(t, aliceEvents)
		if got.Account != "alice-account" || got.Notification.Type != nip47.NotificationPaymentSent ||
			got.Notification.Transaction.Preimage != res.Preimage {
			t.Errorf("alice's event = %+v", got)
		}
	})

	t.Run("PayTwice", func(t *testing.T) {
		ctx := t.Context()
		inv, err := bob.MakeInvoice(ctx, "", nip47.MakeInvoiceParams{Amount: 5_000_000, Description: "once"})
		if err != nil {
			t.Fatal(err)
		}
		before := balance(t, alice)
		// Two at once, then a third after both: one payment, one preimage.
		var wg sync.WaitGroup
		results := make([]nip47.PayInvoiceResult, 3)
		errs := make([]error, 3)
		for i := range 2 {
			wg.Go(func() {
				results[i], errs[i] = alice.PayInvoice(ctx, "", nip47.PayInvoiceParams{Invoice: inv.Invoice})
			})
		}
		wg.Wait()
		results[2], errs[2] = alice.PayInvoice(ctx, "", nip47.PayInvoiceParams{Invoice: inv.Invoice})
		for i, err := range errs {
			if err != nil {
				t.Fatalf("payment %d: %v", i, err)
			}
			if results[i].Preimage != results[0].Preimage {
				t.Errorf("payment %d: preimage %s, want %s", i, results[i].Preimage, results[0].Preimage)
			}
		}
		checkPreimage(t, results[0].Preimage, inv.PaymentHash)
		waitBalance(t, alice, before-5_000_000-results[0].FeesPaid)

		txs, err := alice.ListTransactions(ctx, "", nip47.ListTransactionsParams{Type: nip47.TypeOutgoing, Unpaid: true})
		if err != nil {
			t.Fatal(err)
		}
		count := 0
		for _, tx := range txs {
			if tx.PaymentHash == inv.PaymentHash {
				count++
			}
		}
		if count != 1 {
			t.Errorf("alice has %d payments for the invoice, want 1", count)
		}
	})

	t.Run("BobPaysBack", func(t *testing.T) {
		ctx := t.Context()
		inv, err := alice.MakeInvoice(ctx, "", nip47.MakeInvoiceParams{Amount: 1_000_000})
		if err != nil {
			t.Fatal(err)
		}
		res, err := bob.PayInvoice(ctx, "", nip47.PayInvoiceParams{Invoice: inv.Invoice})
		if err != nil {
			t.Fatal(err)
		}
		checkPreimage(t, res.Preimage, inv.PaymentHash)
	})

	t.Run("ZeroAmountInvoice", func(t *testing.T) {
		ctx := t.Context()
		descHash := sha256.Sum256([]byte(`{"long":"description"}`))
		inv, err := bob.MakeInvoice(ctx, "", nip47.MakeInvoiceParams{DescriptionHash: hex.EncodeToString(descHash[:]), Expiry: 600})
		if err != nil {
			t.Fatal(err)
		}
		if inv.DescriptionHash != hex.EncodeToString(descHash[:]) || inv.ExpiresAt != inv.CreatedAt+600 {
			t.Errorf("invoice = %+v", inv)
		}
		_, err = alice.PayInvoice(ctx, "", nip47.PayInvoiceParams{Invoice: inv.Invoice})
		if !errors.Is(err, nip47.ErrOther) {
			t.Errorf("paying a zero-amount invoice without an amount: %v, want OTHER", err)
		}
		res, err := alice.PayInvoice(ctx, "", nip47.PayInvoiceParams{Invoice: inv.Invoice, Amount: 12_345})
		if err != nil {
			t.Fatal(err)
		}
		in, err := bob.LookupInvoice(ctx, "", nip47.LookupInvoiceParams{PaymentHash: inv.PaymentHash})
		if err != nil {
			t.Fatal(err)
		}
		if in.Amount != 12_345 || in.Preimage != res.Preimage {
			t.Errorf("bob's lookup = %+v, want 12345 msat paid", in)
		}
	})

	t.Run("Unpayable", func(t *testing.T) {
		ctx := t.Context()
		before := balance(t, alice)
		inv, err := bob.MakeInvoice(ctx, "", nip47.MakeInvoiceParams{Amount: 2 * regtest.ChannelCapacity * 1000})
		if err != nil {
			t.Fatal(err)
		}
		_, err = alice.PayInvoice(ctx, "", nip47.PayInvoiceParams{Invoice: inv.Invoice})
		if !errors.Is(err, nip47.ErrInsufficientBalance) && !errors.Is(err, nip47.ErrPaymentFailed) {
			t.Fatalf("paying more than the channel holds: %v, want INSUFFICIENT_BALANCE or PAYMENT_FAILED", err)
		}
		t.Logf("unpayable: %v", err)
		if after := balance(t, alice); after != before {
			t.Errorf("balance moved from %d to %d", before, after)
		}
		out, err := alice.LookupInvoice(ctx, "", nip47.LookupInvoiceParams{PaymentHash: inv.PaymentHash})
		if err != nil {
			t.Fatal(err)
		}
		if out.State != nip47.StateFailed {
			t.Errorf("failed payment's lookup = %+v", out)
		}
	})

	t.Run("BadInput", func(t *testing.T) {
		ctx := t.Context()
		_, err := alice.LookupInvoice(ctx, "", nip47.LookupInvoiceParams{PaymentHash: hex.EncodeToString(make([]byte, 32))})
		if !errors.Is(err, nip47.ErrNotFound) {
			t.Errorf("lookup of an unknown hash: %v, want NOT_FOUND", err)
		}
		_, err = alice.PayInvoice(ctx, "", nip47.PayInvoiceParams{Invoice: "lnbcrt1notaninvoice"})
		if !errors.Is(err, nip47.ErrOther) {
			t.Errorf("paying garbage: %v, want OTHER", err)
		}
		_, err = alice.LookupInvoice(ctx, "", nip47.LookupInvoiceParams{PaymentHash: "abc"})
		if !errors.Is(err, nip47.ErrOther) {
			t.Errorf("lookup of a short hash: %v, want OTHER", err)
		}
		_, err = alice.MakeInvoice(ctx, "", nip47.MakeInvoiceParams{Amount: 1000, Description: strings.Repeat("x", 700)})
		if !errors.Is(err, nip47.ErrOther) {
			t.Errorf("invoice with a 700-byte description: %v, want OTHER", err)
		}
		_, err = alice.MakeInvoice(ctx, "", nip47.MakeInvoiceParams{Amount: 21_000_000 * 100_000_000 * 1000})
		if !errors.Is(err, nip47.ErrOther) {
			t.Errorf("invoice for 21M BTC: %v, want OTHER", err)
		}
	})

	t.Run("ListTransactions", func(t *testing.T) {
		ctx := t.Context()
		all, err := bob.ListTransactions(ctx, "", nip47.ListTransactionsParams{Unpaid: true})
		if err != nil {
			t.Fatal(err)
		}
		// bob: invoices of coffee, once, zero-amount (settled), unpayable (open); a payment to alice.
		var in, out, settled int
		for i, tx := range all {
			if i > 0 && tx.CreatedAt > all[i-1].CreatedAt {
				t.Errorf("not newest first at %d: %d after %d", i, tx.CreatedAt, all[i-1].CreatedAt)
			}
			switch tx.Type {
			case nip47.TypeIncoming:
				in++
			case nip47.TypeOutgoing:
				out++
			}
			if tx.State == nip47.StateSettled {
				settled++
			}
		}
		if in != 4 || out != 1 || settled != 4 {
			t.Errorf("bob lists %d incoming, %d outgoing, %d settled; want 4, 1, 4: %+v", in, out, settled, all)
		}
		paid, err := bob.ListTransactions(ctx, "", nip47.ListTransactionsParams{})
		if err != nil {
			t.Fatal(err)
		}
		if len(paid) != 4 {
			t.Errorf("without unpaid: %d transactions, want the 4 settled", len(paid))
		}
		page, err := bob.ListTransactions(ctx, "", nip47.ListTransactionsParams{Unpaid: true, Limit: 2, Offset: 1})
		if err != nil {
			t.Fatal(err)
		}
		if len(page) != 2 || page[0].PaymentHash != all[1].PaymentHash || page[1].PaymentHash != all[2].PaymentHash {
			t.Errorf("limit 2 offset 1 = %+v, want items 1 and 2 of %+v", page, all)
		}
		incoming, err := bob.ListTransactions(ctx, "", nip47.ListTransactionsParams{Type: nip47.TypeIncoming, Unpaid: true})
		if err != nil {
			t.Fatal(err)
		}
		if len(incoming) != 4 {
			t.Errorf("type incoming: %d, want 4", len(incoming))
		}
		future, err := bob.ListTransactions(ctx, "", nip47.ListTransactionsParams{From: time.Now().Add(time.Hour).Unix()})
		if err != nil {
			t.Fatal(err)
		}
		if len(future) != 0 {
			t.Errorf("from an hour ahead: %d transactions", len(future))
		}
	})

	t.Run("BadCredentials", func(t *testing.T) {
		ctx := t.Context()
		garbage := filepath.Join(t.TempDir(), "garbage.macaroon")
		if err := os.WriteFile(garbage, []byte("not a macaroon"), 0o600); err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct {
			name string
			cfg  lnd.Config
			want error
		}{
			{"bob's macaroon", lnd.Config{RESTURL: n.Alice.RESTURL, MacaroonPath: n.Bob.Macaroon, TLSCertPath: n.Alice.TLSCert}, lnd.ErrUnauthorized},
			{"garbage macaroon", lnd.Config{RESTURL: n.Alice.RESTURL, MacaroonPath: garbage, TLSCertPath: n.Alice.TLSCert}, lnd.ErrUnauthorized},
			{"bob's cert", lnd.Config{RESTURL: n.Alice.RESTURL, MacaroonPath: n.Alice.Macaroon, TLSCertPath: n.Bob.TLSCert}, lnd.ErrCertMismatch},
		} {
			t.Run(tc.name, func(t *testing.T) {
				b, err := lnd.New(ctx, tc.cfg)
				if err == nil {
					b.Close()
				}
				if !errors.Is(err, tc.want) {
					t.Fatalf("New: %v, want %v", err, tc.want)
				}
			})
		}
	})
}

func subscribe(t *testing.T, b *lnd.Backend) <-chan wallet.BackendEvent {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	events, err := b.Subscribe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		for range events { // closed once the subscription's goroutines are done
		}
	})
	return events
}

func next(t *testing.T, events <-chan wallet.BackendEvent) wallet.BackendEvent {
	t.Helper()
	select {
	case ev, ok := <-events:
		if !ok {
			t.Fatal("subscription closed")
		}
		return ev
	case <-time.After(settleWait):
		t.Fatal("no notification")
	case <-t.Context().Done():
		t.Fatal(t.Context().Err())
	}
	return wallet.BackendEvent{}
}

func balance(t *testing.T, b *lnd.Backend) int64 {
	t.Helper()
	msat, err := b.Balance(t.Context(), "")
	if err != nil {
		t.Fatal(err)
	}
	return msat
}

// waitBalance waits for b's balance to reach want. A payment returns once the preimage is
// back, and the channel update that moves the balance follows a moment later in lnd; there
// is no event for it over REST, so this polls, within settleWait.
func waitBalance(t *testing.T, b *lnd.Backend, want int64) {
	t.Helper()
	deadline := time.Now().Add(settleWait)
	for {
		got := balance(t, b)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("balance %d msat, want %d (off by %d)", got, want, got-want)
		}
		select {
		case <-t.Context().Done():
			t.Fatal(t.Context().Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func checkPreimage(t *testing.T, preimage, hash string) {
	t.Helper()
	p, err := hex.DecodeString(preimage)
	if err != nil {
		t.Fatalf("preimage %q: %v", preimage, err)
	}
	if sum := sha256.Sum256(p); hex.EncodeToString(sum[:]) != hash {
		t.Fatalf("sha256(preimage %s) = %x, want the payment hash %s", preimage, sum, hash)
	}
}
