package wallet

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/nbd-wtf/go-nostr"
	"github.com/rs/zerolog"

	"github.com/sparecycles/sparecycles/internal/relayconn"
	"github.com/sparecycles/sparecycles/internal/testrelay"
	"github.com/sparecycles/sparecycles/nips/nip47"
	"github.com/sparecycles/sparecycles/wallet/ledger"
)

// serve runs Serve until the test ends, then checks it returned nil. It returns once the
// wallet listens for requests (its info event goes out then). The context it returns ends
// with the test or as soon as Serve stops early, so that nothing waits for a dead wallet.
func serve(t *testing.T, cfg Config) context.Context {
	t.Helper()
	st := openTestStore(t, cfg.Data)
	key, err := st.walletKey(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	info, err := testrelay.Dial(t, cfg.Relays[0]).Subscribe(t.Context(), nostr.Filter{Kinds: []int{nip47.KindInfo}, Authors: []string{key.PubKey()}})
	if err != nil {
		t.Fatal(err)
	}
	defer info.Close()
	<-info.EOSE
	for len(info.Events) > 0 { // a previous run's info event
		<-info.Events
	}

	ctx, cancel := context.WithCancel(context.Background())
	live, died := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		err := Serve(ctx, cfg, zerolog.New(zerolog.NewTestWriter(t)))
		died()
		done <- err
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	select {
	case <-info.Events:
	case <-live.Done():
		t.Fatal("Serve stopped before publishing its info event")
	}
	return live
}

func connect(t *testing.T, cfg ConnectConfig) nip47.URI {
	t.Helper()
	uri, err := Connect(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return uri
}

// client is an NWC client of uri over its own relay pool.
func client(t *testing.T, uri nip47.URI) *nip47.Client {
	t.Helper()
	pool := relayconn.NewPool(uri.Relays)
	t.Cleanup(pool.Close)
	return nip47.NewClient(uri, pool)
}

func balance(ctx context.Context, t *testing.T, c *nip47.Client) int64 {
	t.Helper()
	b, err := c.GetBalance(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func wantBalances(ctx context.Context, t *testing.T, want map[*nip47.Client]int64) {
	t.Helper()
	for c, w := range want {
		if got := balance(ctx, t, c); got != w {
			t.Errorf("balance %d msat, want %d", got, w)
		}
	}
}

func makeInvoice(ctx context.Context, t *testing.T, c *nip47.Client, msat int64, desc string) nip47.Transaction {
	t.Helper()
	inv, err := c.MakeInvoice(ctx, nip47.MakeInvoiceParams{Amount: msat, Description: desc})
	if err != nil {
		t.Fatal(err)
	}
	return inv
}

func next[T any](ctx context.Context, t *testing.T, ch <-chan T) T {
	t.Helper()
	select {
	case v, ok := <-ch:
		if !ok {
			t.Fatal("channel closed")
		}
		return v
	case <-ctx.Done():
		t.Fatal("wallet stopped")
	}
	panic("unreachable")
}

// A worker's and a buyer's connections on one ledger wallet, over a real relay: invoices,
// payments, notifications, budgets and never paying twice.
func TestEndToEnd(t *testing.T) {
	relay := testrelay.Start(t)
	dir := t.TempDir()
	conn := func(name string, budget, fund int64) ConnectConfig {
		return ConnectConfig{Data: dir, Relays: []string{relay}, Name: name, BudgetSats: budget, FundSats: fund}
	}
	workerURI := connect(t, conn("worker", 0, 0)) // before Serve
	ctx := serve(t, Config{Relays: []string{relay}, Data: dir, Backend: BackendLedger})
	worker := client(t, workerURI)
	buyer := client(t, connect(t, conn("buyer", 50, 100))) // while serving

	if _, err := Connect(t.Context(), conn("buyer", 0, 0)); !errors.Is(err, ErrNameTaken) {
		t.Errorf("second connection named buyer: %v, want ErrNameTaken", err)
	}
	received, err := worker.Notifications(ctx)
	if err != nil {
		t.Fatal(err)
	}
	sent, err := buyer.Notifications(ctx)
	if err != nil {
		t.Fatal(err)
	}
	wantBalances(ctx, t, map[*nip47.Client]int64{worker: 0, buyer: 100_000})

	inv := makeInvoice(ctx, t, worker, 21_000, "job 1")
	res, err := buyer.PayInvoice(ctx, inv.Invoice, 0)
	if err != nil {
		t.Fatal(err)
	}
	pre, _ := hex.DecodeString(res.Preimage)
	if h := sha256.Sum256(pre); hex.EncodeToString(h[:]) != inv.PaymentHash {
		t.Fatalf("preimage %s is not the invoice's", res.Preimage)
	}
	wantBalances(ctx, t, map[*nip47.Client]int64{worker: 21_000, buyer: 79_000})

	for _, tc := range []struct {
		got      nip47.Notification
		wantType string
	}{
		{next(ctx, t, received), nip47.NotificationPaymentReceived},
		{next(ctx, t, sent), nip47.NotificationPaymentSent},
	} {
		tx := tc.got.Transaction
		if tc.got.Type != tc.wantType || tx.PaymentHash != inv.PaymentHash || tx.Amount != 21_000 || tx.Preimage != res.Preimage || tx.State != nip47.StateSettled {
			t.Errorf("notification %+v, want %s of the invoice", tc.got, tc.wantType)
		}
	}

	got, err := worker.LookupInvoice(ctx, nip47.LookupInvoiceParams{PaymentHash: inv.PaymentHash})
	if err != nil || got.State != nip47.StateSettled || got.Preimage != res.Preimage || got.Type != nip47.TypeIncoming {
		t.Errorf("lookup_invoice: %+v, %v; want it settled", got, err)
	}

	again, err := buyer.PayInvoice(ctx, inv.Invoice, 0)
	if err != nil || again.Preimage != res.Preimage {
		t.Errorf("paying again: %+v, %v; want the same preimage", again, err)
	}
	wantBalances(ctx, t, map[*nip47.Client]int64{worker: 21_000, buyer: 79_000})

	// 21 + 30 sats spent would pass the 50 sat budget
	big := makeInvoice(ctx, t, worker, 30_000, "job 2")
	if _, err := buyer.PayInvoice(ctx, big.Invoice, 0); !errors.Is(err, nip47.ErrQuotaExceeded) {
		t.Errorf("over budget: %v, want QUOTA_EXCEEDED", err)
	}
	wantBalances(ctx, t, map[*nip47.Client]int64{worker: 21_000, buyer: 79_000})

	txs, err := buyer.ListTransactions(ctx, nip47.ListTransactionsParams{})
	if err != nil || len(txs) != 1 || txs[0].Type != nip47.TypeOutgoing || txs[0].PaymentHash != inv.PaymentHash {
		t.Errorf("buyer's transactions: %+v, %v; want the one payment", txs, err)
	}
	info, err := buyer.GetInfo(ctx)
	if err != nil || info.Alias != ledger.Alias || info.Network != "regtest" || !slices.Equal(info.Methods, methods) {
		t.Errorf("get_info: %+v, %v", info, err)
	}

	stranger := client(t, nip47.URI{WalletPubKey: workerURI.WalletPubKey, Relays: []string{relay}, Secret: nip47.NewSecret()})
	if _, err := stranger.GetBalance(ctx); !errors.Is(err, nip47.ErrUnauthorized) {
		t.Errorf("unknown client key: %v, want UNAUTHORIZED", err)
	}
}

// A payment the backend refuses frees the budget and the hash: once funded, the same invoice
// can be paid.
func TestPaymentRetryAfterFailure(t *testing.T) {
	relay := testrelay.Start(t)
	dir := t.TempDir()
	worker := client(t, connect(t, ConnectConfig{Data: dir, Relays: []string{relay}, Name: "worker"}))
	buyer := client(t, connect(t, ConnectConfig{Data: dir, Relays: []string{relay}, Name: "buyer", FundSats: 10, BudgetSats: 30}))
	ctx := serve(t, Config{Relays: []string{relay}, Data: dir, Backend: BackendLedger})

	inv := makeInvoice(ctx, t, worker, 21_000, "job")
	if _, err := buyer.PayInvoice(ctx, inv.Invoice, 0); !errors.Is(err, nip47.ErrInsufficientBalance) {
		t.Fatalf("underfunded: %v, want INSUFFICIENT_BALANCE", err)
	}
	if _, err := buyer.PayInvoice(ctx, inv.Invoice, 0); !errors.Is(err, nip47.ErrInsufficientBalance) {
		t.Fatalf("underfunded again: %v, want INSUFFICIENT_BALANCE (not in progress, not over budget)", err)
	}
	l, err := ledger.Open(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := l.Fund(ctx, "buyer", 20_000); err != nil {
		t.Fatal(err)
	}
	if _, err := buyer.PayInvoice(ctx, inv.Invoice, 0); err != nil {
		t.Fatalf("after funding: %v", err)
	}
	wantBalances(ctx, t, map[*nip47.Client]int64{worker: 21_000, buyer: 9_000})
}

func TestConnectRefusals(t *testing.T) {
	relay := []string{"ws://127.0.0.1:1"}
	tests := []struct {
		name    string
		cfg     ConnectConfig
		wantErr error
	}{
		{"fund on lnd", ConnectConfig{Relays: relay, Name: "a", FundSats: 10, Backend: BackendLND}, ErrFundNeedsLedger},
		{"no name", ConnectConfig{Relays: relay}, nil},
		{"no relay", ConnectConfig{Name: "a"}, nil},
		{"negative budget", ConnectConfig{Relays: relay, Name: "a", BudgetSats: -1}, nil},
		{"unknown backend", ConnectConfig{Relays: relay, Name: "a", Backend: "bank"}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg.Data = t.TempDir()
			_, err := Connect(t.Context(), tc.cfg)
			if err == nil || (tc.wantErr != nil && !errors.Is(err, tc.wantErr)) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			st, err := openStore(t.Context(), tc.cfg.Data)
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			if _, ok, _ := st.clientOf(t.Context(), "a"); ok {
				t.Error("a refused connection was stored")
			}
		})
	}
}

// A wallet service started before its relay waits for it, and serves once it is up: the
// relay's address refuses connections at first, and a relay appears there a little later.
func TestServeWaitsForRelay(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	dir := t.TempDir()
	ready := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Serve(ctx, Config{Relays: []string{"ws://" + addr}, Data: dir, Backend: BackendLedger,
			OnReady: func() { close(ready) }}, zerolog.New(zerolog.NewTestWriter(t)))
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	}()
	select {
	case <-ready:
		t.Fatal("ready with no relay")
	case err := <-done:
		t.Fatalf("Serve gave up without a relay: %v", err)
	case <-time.After(1500 * time.Millisecond): // at least one attempt has failed by now
	}
	relay := testrelay.StartAt(t, addr)
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("Serve stopped: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("not serving 30 s after the relay came up")
	}
	// and it answers
	uri := connect(t, ConnectConfig{Data: dir, Relays: []string{relay}, Name: "late", FundSats: 5})
	c := client(t, uri)
	bal, err := c.GetBalance(t.Context())
	if err != nil || bal != 5000 {
		t.Fatalf("balance %d %v, want 5000 msat", bal, err)
	}
}
