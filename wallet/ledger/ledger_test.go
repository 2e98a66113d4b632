package ledger

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/btcsuite/btcd/chaincfg"
	"github.com/lightningnetwork/lnd/lnwire"
	"github.com/lightningnetwork/lnd/zpay32"
	decodepay "github.com/nbd-wtf/ln-decodepay"

	"github.com/sparecycles/sparecycles/nips/nip47"
)

// clock is a fake clock tests move by hand.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }

func (c *clock) add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

func open(t *testing.T) (*Ledger, *clock) {
	t.Helper()
	return openIn(t, t.TempDir())
}

func openIn(t *testing.T, dir string) (*Ledger, *clock) {
	t.Helper()
	l, err := Open(t.Context(), dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	c := &clock{t: time.Now()}
	l.Now = c.now
	return l, c
}

func fund(t *testing.T, l *Ledger, account string, msat int64) {
	t.Helper()
	if err := l.Fund(t.Context(), account, msat); err != nil {
		t.Fatal(err)
	}
}

func invoice(t *testing.T, l *Ledger, account string, p nip47.MakeInvoiceParams) nip47.Transaction {
	t.Helper()
	tx, err := l.MakeInvoice(t.Context(), account, p)
	if err != nil {
		t.Fatal(err)
	}
	return tx
}

func balances(t *testing.T, l *Ledger, accounts ...string) map[string]int64 {
	t.Helper()
	out := map[string]int64{}
	for _, a := range accounts {
		b, err := l.Balance(t.Context(), a)
		if err != nil {
			t.Fatal(err)
		}
		out[a] = b
	}
	return out
}

func TestMakeInvoiceDecodes(t *testing.T) {
	l, _ := open(t)
	descHash := sha256.Sum256([]byte("a long description"))
	tests := []struct {
		name   string
		in     nip47.MakeInvoiceParams
		expiry int
	}{
		{"amount and description", nip47.MakeInvoiceParams{Amount: 21_000, Description: "job 1234"}, 3600},
		{"description hash", nip47.MakeInvoiceParams{Amount: 1_000, DescriptionHash: hex.EncodeToString(descHash[:])}, 3600},
		{"no amount", nip47.MakeInvoiceParams{Description: "tip"}, 3600},
		{"expiry", nip47.MakeInvoiceParams{Amount: 5, Description: "x", Expiry: 90}, 90},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tx := invoice(t, l, "worker", tc.in)
			d, err := decodepay.Decodepay(tx.Invoice)
			if err != nil {
				t.Fatal(err)
			}
			if d.Currency != "bcrt" {
				t.Errorf("currency %q, want bcrt (regtest)", d.Currency)
			}
			if d.MSatoshi != tc.in.Amount || d.Description != tc.in.Description || d.DescriptionHash != tc.in.DescriptionHash {
				t.Errorf("decoded amount %d description %q hash %q, want %+v", d.MSatoshi, d.Description, d.DescriptionHash, tc.in)
			}
			if d.Payee != l.PubKey() {
				t.Errorf("payee %s, want the ledger's key %s", d.Payee, l.PubKey())
			}
			if d.PaymentHash != tx.PaymentHash || d.Expiry != tc.expiry || int64(d.CreatedAt) != tx.CreatedAt {
				t.Errorf("decoded hash %s expiry %d created %d; made %+v", d.PaymentHash, d.Expiry, d.CreatedAt, tx)
			}
			if tx.ExpiresAt != tx.CreatedAt+int64(tc.expiry) || tx.State != nip47.StatePending || tx.Preimage != "" {
				t.Errorf("made %+v", tx)
			}
			if _, err := zpay32.Decode(tx.Invoice, &chaincfg.RegressionNetParams); err != nil {
				t.Errorf("zpay32 on regtest: %v", err)
			}
		})
	}
}

func TestMakeInvoiceErrors(t *testing.T) {
	l, _ := open(t)
	tests := []struct {
		name string
		in   nip47.MakeInvoiceParams
	}{
		{"negative amount", nip47.MakeInvoiceParams{Amount: -1}},
		{"short description hash", nip47.MakeInvoiceParams{Amount: 1, DescriptionHash: "abcd"}},
		{"negative expiry", nip47.MakeInvoiceParams{Amount: 1, Expiry: -5}},
		{"expiry beyond a year", nip47.MakeInvoiceParams{Amount: 1, Expiry: 400 * 24 * 3600}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := l.MakeInvoice(t.Context(), "w", tc.in); !errors.Is(err, nip47.ErrOther) {
				t.Fatalf("err = %v, want OTHER", err)
			}
		})
	}
}

// foreignInvoice is a regtest invoice signed by another node.
func foreignInvoice(t *testing.T) string {
	t.Helper()
	other, _ := openIn(t, t.TempDir())
	return invoice(t, other, "someone", nip47.MakeInvoiceParams{Amount: 1000, Description: "elsewhere"}).Invoice
}

// unknownInvoice is signed with l's key but was never stored.
func unknownInvoice(t *testing.T, l *Ledger) string {
	t.Helper()
	inv, err := zpay32.NewInvoice(l.params, sha256.Sum256([]byte("nobody knows")), l.now(),
		zpay32.Amount(lnwire.MilliSatoshi(1000)), zpay32.Description("forged"))
	if err != nil {
		t.Fatal(err)
	}
	s, err := inv.Encode(zpay32.MessageSigner{SignCompact: l.signCompact})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// mainnetInvoice is a well-formed invoice for the wrong network.
func mainnetInvoice(t *testing.T) string {
	t.Helper()
	key, _ := btcec.NewPrivateKey()
	inv, err := zpay32.NewInvoice(&chaincfg.MainNetParams, sha256.Sum256([]byte("main")), time.Now(),
		zpay32.Amount(lnwire.MilliSatoshi(1000)), zpay32.Description("real money"))
	if err != nil {
		t.Fatal(err)
	}
	l := &Ledger{key: key}
	s, err := inv.Encode(zpay32.MessageSigner{SignCompact: l.signCompact})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestPayInvoice(t *testing.T) {
	tests := []struct {
		name    string
		funds   int64
		make    nip47.MakeInvoiceParams
		amount  int64                                            // pay_invoice's amount param
		invoice func(t *testing.T, l *Ledger, own string) string // nil pays the invoice made
		later   time.Duration                                    // clock moves this far before paying
		paid    int64                                            // msats that should move
		wantErr error
	}{
		{name: "pays", funds: 10_000, make: nip47.MakeInvoiceParams{Amount: 4_000, Description: "job"}, paid: 4_000},
		{name: "whole balance", funds: 4_000, make: nip47.MakeInvoiceParams{Amount: 4_000, Description: "job"}, paid: 4_000},
		{name: "insufficient balance", funds: 3_999, make: nip47.MakeInvoiceParams{Amount: 4_000, Description: "job"}, wantErr: nip47.ErrInsufficientBalance},
		{name: "never funded", make: nip47.MakeInvoiceParams{Amount: 1, Description: "job"}, wantErr: nip47.ErrInsufficientBalance},
		{name: "amountless pays the amount param", funds: 10_000, make: nip47.MakeInvoiceParams{Description: "tip"}, amount: 2_500, paid: 2_500},
		{name: "amount param ignored when the invoice has one", funds: 10_000, make: nip47.MakeInvoiceParams{Amount: 1_000, Description: "x"}, amount: 9_000, paid: 1_000},
		{name: "amountless without amount", funds: 10_000, make: nip47.MakeInvoiceParams{Description: "tip"}, wantErr: nip47.ErrPaymentFailed},
		{name: "expired", funds: 10_000, make: nip47.MakeInvoiceParams{Amount: 1_000, Description: "x", Expiry: 60}, later: 61 * time.Second, wantErr: nip47.ErrPaymentFailed},
		{name: "just before expiry", funds: 10_000, make: nip47.MakeInvoiceParams{Amount: 1_000, Description: "x", Expiry: 60}, later: 58 * time.Second, paid: 1_000},
		{name: "another node's invoice", funds: 10_000, invoice: func(t *testing.T, _ *Ledger, _ string) string { return foreignInvoice(t) }, wantErr: nip47.ErrPaymentFailed},
		{name: "unknown invoice", funds: 10_000, invoice: func(t *testing.T, l *Ledger, _ string) string { return unknownInvoice(t, l) }, wantErr: nip47.ErrPaymentFailed},
		{name: "mainnet invoice", funds: 10_000, invoice: func(t *testing.T, _ *Ledger, _ string) string { return mainnetInvoice(t) }, wantErr: nip47.ErrPaymentFailed},
		{name: "garbage", funds: 10_000, invoice: func(*testing.T, *Ledger, string) string { return "lnbcrt1garbage" }, wantErr: nip47.ErrPaymentFailed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l, clk := open(t)
			if tc.funds > 0 {
				fund(t, l, "alice", tc.funds)
			}
			var made nip47.Transaction
			bolt11 := ""
			if tc.invoice != nil {
				bolt11 = tc.invoice(t, l, "bob")
			} else {
				made = invoice(t, l, "bob", tc.make)
				bolt11 = made.Invoice
			}
			clk.add(tc.later)
			res, err := l.PayInvoice(t.Context(), "alice", nip47.PayInvoiceParams{Invoice: bolt11, Amount: tc.amount})
			if !errors.Is(err, tc.wantErr) || (err != nil && tc.wantErr == nil) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			got := balances(t, l, "alice", "bob")
			want := map[string]int64{"alice": tc.funds - tc.paid, "bob": tc.paid}
			if got["alice"] != want["alice"] || got["bob"] != want["bob"] {
				t.Errorf("balances %v, want %v", got, want)
			}
			if err != nil {
				return
			}
			pre, _ := hex.DecodeString(res.Preimage)
			if h := sha256.Sum256(pre); hex.EncodeToString(h[:]) != made.PaymentHash {
				t.Errorf("preimage %s does not hash to %s", res.Preimage, made.PaymentHash)
			}
		})
	}
}

func TestPayTwiceMovesMoneyOnce(t *testing.T) {
	l, _ := open(t)
	ctx := t.Context()
	events, err := l.Subscribe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	fund(t, l, "alice", 10_000)
	fund(t, l, "carol", 10_000)
	inv := invoice(t, l, "bob", nip47.MakeInvoiceParams{Amount: 3_000, Description: "once"})
	first, err := l.PayInvoice(ctx, "alice", nip47.PayInvoiceParams{Invoice: inv.Invoice})
	if err != nil {
		t.Fatal(err)
	}
	again, err := l.PayInvoice(ctx, "alice", nip47.PayInvoiceParams{Invoice: inv.Invoice})
	if err != nil || again.Preimage != first.Preimage {
		t.Fatalf("second payment: %+v, %v; want the first preimage", again, err)
	}
	if _, err := l.PayInvoice(ctx, "carol", nip47.PayInvoiceParams{Invoice: inv.Invoice}); !errors.Is(err, nip47.ErrPaymentFailed) {
		t.Fatalf("another account paying a settled invoice: err = %v, want PAYMENT_FAILED", err)
	}
	if got := balances(t, l, "alice", "bob", "carol"); got["alice"] != 7_000 || got["bob"] != 3_000 || got["carol"] != 10_000 {
		t.Fatalf("balances %v", got)
	}
	// exactly one payment_sent and one payment_received
	want := []Event{
		{Account: "alice", Notification: nip47.Notification{Type: nip47.NotificationPaymentSent}},
		{Account: "bob", Notification: nip47.Notification{Type: nip47.NotificationPaymentReceived}},
	}
	for _, w := range want {
		ev := <-events
		tx := ev.Notification.Transaction
		if ev.Account != w.Account || ev.Notification.Type != w.Notification.Type || tx.PaymentHash != inv.PaymentHash ||
			tx.Preimage != first.Preimage || tx.Amount != 3_000 || tx.State != nip47.StateSettled || tx.SettledAt == 0 {
			t.Errorf("event %+v, want %s for %s", ev, w.Notification.Type, w.Account)
		}
	}
	select {
	case ev := <-events:
		t.Errorf("extra event %+v", ev)
	default:
	}
}

func TestLookupAndList(t *testing.T) {
	l, clk := open(t)
	ctx := t.Context()
	fund(t, l, "alice", 100_000)
	paid := invoice(t, l, "bob", nip47.MakeInvoiceParams{Amount: 1_000, Description: "paid"})
	clk.add(time.Second)
	pending := invoice(t, l, "bob", nip47.MakeInvoiceParams{Amount: 2_000, Description: "open", Expiry: 600})
	clk.add(time.Second)
	res, err := l.PayInvoice(ctx, "alice", nip47.PayInvoiceParams{Invoice: paid.Invoice})
	if err != nil {
		t.Fatal(err)
	}
	clk.add(time.Second)
	mine := invoice(t, l, "alice", nip47.MakeInvoiceParams{Amount: 3_000, Description: "alice's"})

	lookups := []struct {
		name      string
		account   string
		in        nip47.LookupInvoiceParams
		wantType  string
		wantState string
		wantPre   string
		wantErr   error
	}{
		{"payee by hash", "bob", nip47.LookupInvoiceParams{PaymentHash: paid.PaymentHash}, nip47.TypeIncoming, nip47.StateSettled, res.Preimage, nil},
		{"payee by invoice", "bob", nip47.LookupInvoiceParams{Invoice: paid.Invoice}, nip47.TypeIncoming, nip47.StateSettled, res.Preimage, nil},
		{"payer by hash", "alice", nip47.LookupInvoiceParams{PaymentHash: paid.PaymentHash}, nip47.TypeOutgoing, nip47.StateSettled, res.Preimage, nil},
		{"pending hides its preimage", "bob", nip47.LookupInvoiceParams{PaymentHash: pending.PaymentHash}, nip47.TypeIncoming, nip47.StatePending, "", nil},
		{"another account's invoice", "carol", nip47.LookupInvoiceParams{PaymentHash: pending.PaymentHash}, "", "", "", nip47.ErrNotFound},
		{"unknown hash", "bob", nip47.LookupInvoiceParams{PaymentHash: hex.EncodeToString(make([]byte, 32))}, "", "", "", nip47.ErrNotFound},
		{"bad hash", "bob", nip47.LookupInvoiceParams{PaymentHash: "xyz"}, "", "", "", nip47.ErrOther},
		{"nothing", "bob", nip47.LookupInvoiceParams{}, "", "", "", nip47.ErrOther},
	}
	for _, tc := range lookups {
		t.Run("lookup "+tc.name, func(t *testing.T) {
			tx, err := l.LookupInvoice(ctx, tc.account, tc.in)
			if !errors.Is(err, tc.wantErr) || (err != nil && tc.wantErr == nil) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if err != nil {
				return
			}
			if tx.Type != tc.wantType || tx.State != tc.wantState || tx.Preimage != tc.wantPre {
				t.Errorf("got %s %s preimage %q, want %s %s %q", tx.Type, tx.State, tx.Preimage, tc.wantType, tc.wantState, tc.wantPre)
			}
		})
	}

	hashes := func(txs []nip47.Transaction) []string {
		var out []string
		for _, tx := range txs {
			out = append(out, tx.Type[:2]+":"+tx.Description)
		}
		return out
	}
	lists := []struct {
		name    string
		account string
		in      nip47.ListTransactionsParams
		want    string
		wantErr error
	}{
		{"settled only", "bob", nip47.ListTransactionsParams{}, "[in:paid]", nil},
		{"with unpaid, newest first", "bob", nip47.ListTransactionsParams{Unpaid: true}, "[in:open in:paid]", nil},
		{"payer", "alice", nip47.ListTransactionsParams{Unpaid: true}, "[in:alice's ou:paid]", nil},
		{"outgoing only", "alice", nip47.ListTransactionsParams{Unpaid: true, Type: nip47.TypeOutgoing}, "[ou:paid]", nil},
		{"incoming only", "alice", nip47.ListTransactionsParams{Unpaid: true, Type: nip47.TypeIncoming}, "[in:alice's]", nil},
		{"limit", "bob", nip47.ListTransactionsParams{Unpaid: true, Limit: 1}, "[in:open]", nil},
		{"offset", "bob", nip47.ListTransactionsParams{Unpaid: true, Limit: 1, Offset: 1}, "[in:paid]", nil},
		{"from", "bob", nip47.ListTransactionsParams{Unpaid: true, From: pending.CreatedAt}, "[in:open]", nil},
		{"until", "bob", nip47.ListTransactionsParams{Unpaid: true, Until: paid.CreatedAt}, "[in:paid]", nil},
		{"from after everything", "bob", nip47.ListTransactionsParams{Unpaid: true, From: mine.CreatedAt + 10}, "[]", nil},
		{"bad type", "bob", nip47.ListTransactionsParams{Type: "sideways"}, "", nip47.ErrOther},
		{"empty account", "dave", nip47.ListTransactionsParams{Unpaid: true}, "[]", nil},
	}
	for _, tc := range lists {
		t.Run("list "+tc.name, func(t *testing.T) {
			txs, err := l.ListTransactions(ctx, tc.account, tc.in)
			if !errors.Is(err, tc.wantErr) || (err != nil && tc.wantErr == nil) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if err != nil {
				return
			}
			if got := fmt.Sprint(hashes(txs)); got != tc.want {
				t.Errorf("got %s, want %s", got, tc.want)
			}
			for _, tx := range txs {
				if tx.State != nip47.StateSettled && tx.Preimage != "" {
					t.Errorf("unsettled %s shows its preimage", tx.PaymentHash)
				}
			}
		})
	}

	clk.add(time.Hour)
	tx, err := l.LookupInvoice(ctx, "bob", nip47.LookupInvoiceParams{PaymentHash: pending.PaymentHash})
	if err != nil || tx.State != nip47.StateExpired || tx.Preimage != "" {
		t.Errorf("after expiry: %+v, %v; want expired without preimage", tx, err)
	}
}

func TestFund(t *testing.T) {
	l, _ := open(t)
	for _, msat := range []int64{0, -5} {
		if err := l.Fund(t.Context(), "a", msat); !errors.Is(err, ErrInvalidAmount) {
			t.Errorf("Fund(%d) = %v, want ErrInvalidAmount", msat, err)
		}
	}
	fund(t, l, "a", 5)
	fund(t, l, "a", 7)
	if got := balances(t, l, "a")["a"]; got != 12 {
		t.Errorf("balance %d, want 12", got)
	}
}

// A second handle on the same folder (wallet connect while wallet serve runs) shares the
// node key and the balances.
func TestTwoHandles(t *testing.T) {
	dir := t.TempDir()
	a, _ := openIn(t, dir)
	b, _ := openIn(t, dir)
	if a.PubKey() != b.PubKey() {
		t.Fatalf("node keys differ: %s, %s", a.PubKey(), b.PubKey())
	}
	fund(t, b, "alice", 5_000)
	inv := invoice(t, a, "bob", nip47.MakeInvoiceParams{Amount: 5_000, Description: "x"})
	if _, err := a.PayInvoice(t.Context(), "alice", nip47.PayInvoiceParams{Invoice: inv.Invoice}); err != nil {
		t.Fatal(err)
	}
	if got := balances(t, b, "alice", "bob"); got["alice"] != 0 || got["bob"] != 5_000 {
		t.Errorf("second handle sees %v", got)
	}
	info, err := a.Info(t.Context())
	if err != nil || info.Alias != Alias || info.Network != "regtest" || info.Pubkey != a.PubKey() {
		t.Errorf("info %+v, %v", info, err)
	}
}

func TestSubscribeEnds(t *testing.T) {
	l, _ := open(t)
	ctx, cancel := context.WithCancel(t.Context())
	events, err := l.Subscribe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	if _, ok := <-events; ok {
		t.Fatal("event after cancel")
	}
	other, err := l.Subscribe(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
	if _, ok := <-other; ok {
		t.Fatal("event after Close")
	}
	if _, err := l.Subscribe(t.Context()); !errors.Is(err, ErrClosed) {
		t.Fatalf("Subscribe after Close: %v", err)
	}
}

// Two payers race over their own invoices and over shared ones: every shared invoice is paid
// once, and no msat appears or disappears.
func TestConcurrentPayers(t *testing.T) {
	l, _ := open(t)
	ctx := t.Context()
	const n, amt = 10, 1_000
	payers := []string{"alice", "carol"}
	for _, p := range payers {
		fund(t, l, p, 2*n*amt)
	}
	var shared []string
	for range n {
		shared = append(shared, invoice(t, l, "bob", nip47.MakeInvoiceParams{Amount: amt, Description: "shared"}).Invoice)
	}
	own := map[string][]string{}
	for _, p := range payers {
		for range n {
			own[p] = append(own[p], invoice(t, l, "bob", nip47.MakeInvoiceParams{Amount: amt, Description: p}).Invoice)
		}
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	sharedPaid := 0
	for _, p := range payers {
		wg.Go(func() {
			for i := range n {
				for _, inv := range []string{own[p][i], shared[i]} {
					_, err := l.PayInvoice(ctx, p, nip47.PayInvoiceParams{Invoice: inv})
					switch {
					case err == nil && inv == shared[i]:
						mu.Lock()
						sharedPaid++
						mu.Unlock()
					case err == nil:
					case inv == shared[i] && errors.Is(err, nip47.ErrPaymentFailed):
					default:
						t.Errorf("%s paying: %v", p, err)
					}
				}
			}
		})
	}
	wg.Wait()
	got := balances(t, l, "alice", "bob", "carol")
	if sharedPaid != n {
		t.Errorf("%d shared invoices paid, want %d", sharedPaid, n)
	}
	if got["bob"] != 3*n*amt || got["alice"]+got["carol"] != 4*n*amt-3*n*amt {
		t.Errorf("balances %v: bob should hold %d and the payers the rest of %d", got, 3*n*amt, 4*n*amt)
	}
}

// `wallet serve` and `wallet connect` may open a new folder at the same moment: they agree on
// one node key.
func TestConcurrentOpen(t *testing.T) {
	dir := t.TempDir()
	keys := make([]string, 4)
	var wg sync.WaitGroup
	for i := range keys {
		wg.Go(func() {
			l, err := Open(t.Context(), dir)
			if err != nil {
				t.Error(err)
				return
			}
			defer l.Close()
			keys[i] = l.PubKey()
		})
	}
	wg.Wait()
	for _, k := range keys[1:] {
		if k != keys[0] {
			t.Fatalf("node keys %v differ", keys)
		}
	}
}
