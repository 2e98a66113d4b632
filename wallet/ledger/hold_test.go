package ledger

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"testing"
	"time"

	"github.com/sparecycles/sparecycles/nips/nip47"
)

// secret returns a fresh preimage and its payment hash, hex.
func secret(t *testing.T) (preimage, hash string) {
	t.Helper()
	var p [32]byte
	if _, err := rand.Read(p[:]); err != nil {
		t.Fatal(err)
	}
	h := sha256.Sum256(p[:])
	return hex.EncodeToString(p[:]), hex.EncodeToString(h[:])
}

func holdInvoice(t *testing.T, l *Ledger, account, hash string, msat, delta int64) nip47.Transaction {
	t.Helper()
	tx, err := l.MakeHoldInvoice(t.Context(), account, nip47.MakeHoldInvoiceParams{
		Amount: msat, Description: "job", PaymentHash: hash, MinCLTVExpiryDelta: delta})
	if err != nil {
		t.Fatal(err)
	}
	return tx
}

type payOutcome struct {
	res nip47.PayInvoiceResult
	err error
}

// payAsync starts a PayInvoice and returns where its outcome arrives.
func payAsync(ctx context.Context, l *Ledger, account, bolt11 string) <-chan payOutcome {
	out := make(chan payOutcome, 1)
	go func() {
		res, err := l.PayInvoice(ctx, account, nip47.PayInvoiceParams{Invoice: bolt11})
		out <- payOutcome{res, err}
	}()
	return out
}

// waitState polls account's view of hash until it is in state, for at most 10 s.
func waitState(t *testing.T, l *Ledger, account, hash, state string) nip47.Transaction {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		tx, err := l.LookupInvoice(t.Context(), account, nip47.LookupInvoiceParams{PaymentHash: hash})
		if err == nil && tx.State == state {
			return tx
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s's %s: %+v, %v; want state %s", account, hash, tx, err, state)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func outcome(t *testing.T, ch <-chan payOutcome) payOutcome {
	t.Helper()
	select {
	case o := <-ch:
		return o
	case <-time.After(10 * time.Second):
		t.Fatal("PayInvoice still held after 10 s")
	}
	panic("unreachable")
}

func wantBalances(t *testing.T, l *Ledger, want map[string]int64) {
	t.Helper()
	for a, w := range want {
		if got, err := l.Balance(t.Context(), a); err != nil || got != w {
			t.Errorf("balance of %s: %d, %v; want %d", a, got, err, w)
		}
	}
}

// The life of a hold invoice: money leaves the payer at accept, reaches the payee only at
// settle, and goes back to the msat at cancel or timeout.
func TestHoldInvoice(t *testing.T) {
	tests := []struct {
		name string
		// resolve ends the hold; it returns the error PayInvoice should end with (nil = paid)
		resolve func(t *testing.T, l *Ledger, c *clock, preimage, hash string) error
	}{
		{"settle", func(t *testing.T, l *Ledger, c *clock, preimage, hash string) error {
			if err := l.SettleHoldInvoice(t.Context(), "buyer", preimage); !errors.Is(err, nip47.ErrNotFound) {
				t.Errorf("settle by the payer: %v, want NOT_FOUND", err)
			}
			if err := l.SettleHoldInvoice(t.Context(), "worker", preimage); err != nil {
				t.Fatal(err)
			}
			if err := l.SettleHoldInvoice(t.Context(), "worker", preimage); err != nil {
				t.Errorf("settle again: %v", err)
			}
			if err := l.CancelHoldInvoice(t.Context(), "worker", hash); !errors.Is(err, nip47.ErrOther) {
				t.Errorf("cancel after settle: %v, want OTHER", err)
			}
			return nil
		}},
		{"cancel", func(t *testing.T, l *Ledger, c *clock, preimage, hash string) error {
			if err := l.CancelHoldInvoice(t.Context(), "buyer", hash); !errors.Is(err, nip47.ErrNotFound) {
				t.Errorf("cancel by the payer: %v, want NOT_FOUND", err)
			}
			for range 2 {
				if err := l.CancelHoldInvoice(t.Context(), "worker", hash); err != nil {
					t.Fatal(err)
				}
			}
			if err := l.SettleHoldInvoice(t.Context(), "worker", preimage); !errors.Is(err, nip47.ErrOther) {
				t.Errorf("settle after cancel: %v, want OTHER", err)
			}
			return nip47.ErrPaymentFailed
		}},
		{"timeout", func(t *testing.T, l *Ledger, c *clock, preimage, hash string) error {
			c.add(3 * BlockInterval) // past the deadline of a 2-block hold
			return nip47.ErrPaymentFailed
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l, c := open(t)
			l.PollEvery = 10 * time.Millisecond
			fund(t, l, "buyer", 100_000)
			events, err := l.Subscribe(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			preimage, hash := secret(t)
			inv := holdInvoice(t, l, "worker", hash, 21_000, 2)
			if inv.PaymentHash != hash || inv.State != nip47.StatePending {
				t.Fatalf("hold invoice %+v", inv)
			}
			if _, err := l.MakeHoldInvoice(t.Context(), "other", nip47.MakeHoldInvoiceParams{Amount: 1, PaymentHash: hash}); !errors.Is(err, nip47.ErrOther) {
				t.Errorf("second invoice for the hash: %v, want OTHER", err)
			}
			if err := l.SettleHoldInvoice(t.Context(), "worker", preimage); !errors.Is(err, nip47.ErrOther) {
				t.Errorf("settle before payment: %v, want OTHER", err)
			}
			paid := payAsync(t.Context(), l, "buyer", inv.Invoice)
			in := waitState(t, l, "worker", hash, nip47.StateAccepted)
			out := waitState(t, l, "buyer", hash, nip47.StatePending)
			wantDeadline := l.Height() + 2
			if in.SettleDeadline != wantDeadline || in.Preimage != "" || out.Preimage != "" {
				t.Errorf("accepted: %+v / %+v; want settle_deadline %d and no preimage", in, out, wantDeadline)
			}
			wantBalances(t, l, map[string]int64{"buyer": 79_000, "worker": 0})
			if ev := <-events; ev.Account != "worker" || ev.Notification.Type != nip47.NotificationHoldInvoiceAccepted ||
				ev.Notification.Transaction.State != nip47.StateAccepted || ev.Notification.Transaction.SettleDeadline != wantDeadline {
				t.Errorf("event %+v, want hold_invoice_accepted to worker", ev)
			}
			txs, err := l.ListTransactions(t.Context(), "worker", nip47.ListTransactionsParams{})
			if err != nil || len(txs) != 1 || txs[0].State != nip47.StateAccepted {
				t.Errorf("worker's transactions %+v, %v; want the accepted invoice", txs, err)
			}
			select {
			case o := <-paid:
				t.Fatalf("PayInvoice returned while held: %+v", o)
			default:
			}

			wantErr := tc.resolve(t, l, c, preimage, hash)
			o := outcome(t, paid)
			if wantErr != nil {
				if !errors.Is(o.err, wantErr) {
					t.Fatalf("PayInvoice: %v, want %v", o.err, wantErr)
				}
				wantBalances(t, l, map[string]int64{"buyer": 100_000, "worker": 0})
				waitState(t, l, "worker", hash, nip47.StateFailed)
				waitState(t, l, "buyer", hash, nip47.StateFailed)
				if _, err := l.PayInvoice(t.Context(), "buyer", nip47.PayInvoiceParams{Invoice: inv.Invoice}); !errors.Is(err, nip47.ErrPaymentFailed) {
					t.Errorf("paying a cancelled hold invoice: %v, want PAYMENT_FAILED", err)
				}
				wantBalances(t, l, map[string]int64{"buyer": 100_000, "worker": 0})
				return
			}
			if o.err != nil || o.res.Preimage != preimage {
				t.Fatalf("PayInvoice: %+v, %v; want the preimage", o.res, o.err)
			}
			wantBalances(t, l, map[string]int64{"buyer": 79_000, "worker": 21_000})
			for _, a := range []string{"worker", "buyer"} {
				if tx := waitState(t, l, a, hash, nip47.StateSettled); tx.Preimage != preimage {
					t.Errorf("%s's settled transaction %+v lacks the preimage", a, tx)
				}
			}
			if again, err := l.PayInvoice(t.Context(), "buyer", nip47.PayInvoiceParams{Invoice: inv.Invoice}); err != nil || again.Preimage != preimage {
				t.Errorf("paying again: %+v, %v; want the preimage, nothing moved", again, err)
			}
			wantBalances(t, l, map[string]int64{"buyer": 79_000, "worker": 21_000})
		})
	}
}

func TestHoldInvoiceRefusals(t *testing.T) {
	l, _ := open(t)
	fund(t, l, "buyer", 100_000)
	preimage, hash := secret(t)
	inv := holdInvoice(t, l, "worker", hash, 21_000, 0)
	for _, p := range []nip47.MakeHoldInvoiceParams{
		{Amount: 1, PaymentHash: "zz"},
		{Amount: 1, PaymentHash: hash[:10]},
		{Amount: -1, PaymentHash: hash},
		{Amount: 1, PaymentHash: hash, MinCLTVExpiryDelta: MaxCLTVExpiryDelta + 1},
	} {
		if _, err := l.MakeHoldInvoice(t.Context(), "worker", p); !errors.Is(err, nip47.ErrOther) {
			t.Errorf("MakeHoldInvoice(%+v): %v, want OTHER", p, err)
		}
	}
	ordinary := invoice(t, l, "worker", nip47.MakeInvoiceParams{Amount: 1000})
	if _, err := l.MakeHoldInvoice(t.Context(), "worker", nip47.MakeHoldInvoiceParams{Amount: 1, PaymentHash: ordinary.PaymentHash}); !errors.Is(err, nip47.ErrOther) {
		t.Errorf("hold invoice for an ordinary invoice's hash: %v, want OTHER", err)
	}
	if err := l.CancelHoldInvoice(t.Context(), "worker", ordinary.PaymentHash); !errors.Is(err, nip47.ErrNotFound) {
		t.Errorf("cancel an ordinary invoice: %v, want NOT_FOUND", err)
	}
	// cancelled before any payment: nobody can pay it, nothing moves
	if err := l.CancelHoldInvoice(t.Context(), "worker", hash); err != nil {
		t.Fatal(err)
	}
	if _, err := l.PayInvoice(t.Context(), "buyer", nip47.PayInvoiceParams{Invoice: inv.Invoice}); !errors.Is(err, nip47.ErrPaymentFailed) {
		t.Errorf("pay a cancelled hold invoice: %v, want PAYMENT_FAILED", err)
	}
	if err := l.SettleHoldInvoice(t.Context(), "worker", preimage); !errors.Is(err, nip47.ErrOther) {
		t.Errorf("settle a cancelled hold invoice: %v, want OTHER", err)
	}
	wantBalances(t, l, map[string]int64{"buyer": 100_000, "worker": 0})
}

// Two payers of one hold invoice: exactly one locks its money; the other is refused at once.
// A PayInvoice whose ctx ends leaves the money held, and a later settle still pays.
func TestHoldConcurrentPayersAndLeavingPayer(t *testing.T) {
	l, _ := open(t)
	for _, a := range []string{"a", "b"} {
		fund(t, l, a, 50_000)
	}
	preimage, hash := secret(t)
	inv := holdInvoice(t, l, "worker", hash, 30_000, 0)
	ctx, leave := context.WithCancel(t.Context())
	outs := map[string]<-chan payOutcome{"a": payAsync(ctx, l, "a", inv.Invoice), "b": payAsync(ctx, l, "b", inv.Invoice)}
	var refused, holder string
	select {
	case o := <-outs["a"]:
		refused, holder = "a", "b"
		if !errors.Is(o.err, nip47.ErrPaymentFailed) {
			t.Fatalf("a: %v, want PAYMENT_FAILED", o.err)
		}
	case o := <-outs["b"]:
		refused, holder = "b", "a"
		if !errors.Is(o.err, nip47.ErrPaymentFailed) {
			t.Fatalf("b: %v, want PAYMENT_FAILED", o.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("neither payer was refused")
	}
	waitState(t, l, holder, hash, nip47.StatePending)
	wantBalances(t, l, map[string]int64{holder: 20_000, refused: 50_000, "worker": 0})

	leave()
	o := outcome(t, outs[holder])
	var werr *nip47.Error
	if o.err == nil || errors.As(o.err, &werr) {
		t.Fatalf("PayInvoice after its ctx ended: %v, want an error that is not a NIP-47 one", o.err)
	}
	wantBalances(t, l, map[string]int64{holder: 20_000, "worker": 0})
	if err := l.SettleHoldInvoice(t.Context(), "worker", preimage); err != nil {
		t.Fatal(err)
	}
	if tx := waitState(t, l, holder, hash, nip47.StateSettled); tx.Preimage != preimage {
		t.Errorf("payer's payment %+v lacks the preimage", tx)
	}
	wantBalances(t, l, map[string]int64{holder: 20_000, refused: 50_000, "worker": 30_000})
}

// A settle made by another handle on the same folder (another process) reaches a held payer.
func TestHoldSettledElsewhere(t *testing.T) {
	dir := t.TempDir()
	l, _ := openIn(t, dir)
	l.PollEvery = 10 * time.Millisecond
	other, _ := openIn(t, dir)
	fund(t, l, "buyer", 10_000)
	preimage, hash := secret(t)
	inv := holdInvoice(t, l, "worker", hash, 10_000, 0)
	paid := payAsync(t.Context(), l, "buyer", inv.Invoice)
	waitState(t, other, "worker", hash, nip47.StateAccepted)
	if err := other.SettleHoldInvoice(t.Context(), "worker", preimage); err != nil {
		t.Fatal(err)
	}
	if o := outcome(t, paid); o.err != nil || o.res.Preimage != preimage {
		t.Fatalf("PayInvoice: %+v, %v", o.res, o.err)
	}
}
