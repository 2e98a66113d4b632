package wallet

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/sparecycles/sparecycles/internal/testrelay"
	"github.com/sparecycles/sparecycles/nips/nip47"
	"github.com/sparecycles/sparecycles/wallet/ledger"
)

func openTestStore(t *testing.T, dir string) *store {
	t.Helper()
	st, err := openStore(t.Context(), dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func spent(t *testing.T, st *store, client string) int64 {
	t.Helper()
	var msat int64
	if err := st.db.QueryRowContext(t.Context(), `SELECT spent_msat FROM connections WHERE client_pubkey = ?`, client).Scan(&msat); err != nil {
		t.Fatal(err)
	}
	return msat
}

// One payment hash through its states, with the budget charged and given back as it goes.
func TestPaymentRecords(t *testing.T) {
	st := openTestStore(t, t.TempDir())
	ctx := t.Context()
	const alice, bob = "a1", "b2"
	if err := st.addConnection(ctx, alice, "alice", 10_000); err != nil {
		t.Fatal(err)
	}
	if err := st.addConnection(ctx, bob, "bob", 0); err != nil {
		t.Fatal(err)
	}
	if err := st.addConnection(ctx, "c3", "alice", 0); !errors.Is(err, ErrNameTaken) {
		t.Fatalf("duplicate name: %v, want ErrNameTaken", err)
	}
	begin := func(client, hash string, msat int64) func() (string, error) {
		return func() (string, error) { return st.beginPayment(ctx, client, hash, msat) }
	}
	steps := []struct {
		name       string
		do         func() (string, error)
		wantPre    string
		wantErr    error
		wantSpentA int64
	}{
		{"begin", begin(alice, "h1", 6_000), "", nil, 6_000},
		{"repeat while in flight", begin(alice, "h1", 6_000), "", nip47.ErrOther, 6_000},
		{"over budget", begin(alice, "h2", 5_000), "", nip47.ErrQuotaExceeded, 6_000},
		{"failure frees the budget", func() (string, error) { return "", st.failPayment(ctx, "h1") }, "", nil, 0},
		{"retry after failure", begin(alice, "h1", 6_000), "", nil, 6_000},
		{"success charges fees", func() (string, error) { return "", st.finishPayment(ctx, "h1", "pre1", 10) }, "", nil, 6_010},
		{"repeat after success", begin(alice, "h1", 6_000), "pre1", nil, 6_010},
		{"another connection", begin(bob, "h1", 6_000), "", nip47.ErrPaymentFailed, 6_010},
		{"exactly the budget", begin(alice, "h2", 3_990), "", nil, 10_000},
		{"no budget, no limit", begin(bob, "h3", 1<<40), "", nil, 10_000},
		{"finish twice", func() (string, error) { return "", st.finishPayment(ctx, "h1", "pre1", 10) }, "", errAny, 10_000},
	}
	for _, s := range steps {
		pre, err := s.do()
		switch {
		case s.wantErr == errAny && err == nil, s.wantErr != errAny && !errors.Is(err, s.wantErr), s.wantErr == nil && err != nil:
			t.Fatalf("%s: err = %v, want %v", s.name, err, s.wantErr)
		case pre != s.wantPre:
			t.Fatalf("%s: preimage %q, want %q", s.name, pre, s.wantPre)
		}
		if got := spent(t, st, alice); got != s.wantSpentA {
			t.Fatalf("%s: alice spent %d, want %d", s.name, got, s.wantSpentA)
		}
	}
}

var errAny = errors.New("any error")

func TestSeen(t *testing.T) {
	st := openTestStore(t, t.TempDir())
	for i, want := range []bool{true, false} {
		if first, err := st.seen(t.Context(), "req1"); err != nil || first != want {
			t.Fatalf("seen #%d = %v, %v; want %v", i, first, err, want)
		}
	}
}

// A crash left two payments in flight: one the ledger made, one it never saw. The next start
// records the first as paid and frees the second for a retry.
func TestSettleInFlight(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	st := openTestStore(t, dir)
	l, err := ledger.Open(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	h := &handler{st: st, backend: &ledgerBackend{Ledger: l, stop: make(chan struct{})}, log: zerolog.New(zerolog.NewTestWriter(t))}
	if err := st.addConnection(ctx, "a1", "alice", 0); err != nil {
		t.Fatal(err)
	}
	if err := l.Fund(ctx, "alice", 10_000); err != nil {
		t.Fatal(err)
	}
	var invs []nip47.Transaction
	for range 2 {
		inv, err := l.MakeInvoice(ctx, "bob", nip47.MakeInvoiceParams{Amount: 1_000})
		if err != nil {
			t.Fatal(err)
		}
		invs = append(invs, inv)
		if _, err := st.beginPayment(ctx, "a1", inv.PaymentHash, 1_000); err != nil {
			t.Fatal(err)
		}
	}
	paid, err := l.PayInvoice(ctx, "alice", nip47.PayInvoiceParams{Invoice: invs[0].Invoice})
	if err != nil {
		t.Fatal(err)
	}

	h.settleInFlight(ctx, zerolog.WarnLevel)

	if pre, err := st.beginPayment(ctx, "a1", invs[0].PaymentHash, 1_000); err != nil || pre != paid.Preimage {
		t.Errorf("the paid one: %q, %v; want its preimage", pre, err)
	}
	if pre, err := st.beginPayment(ctx, "a1", invs[1].PaymentHash, 1_000); err != nil || pre != "" {
		t.Errorf("the unpaid one: %q, %v; want it free to pay", pre, err)
	}
	if got := spent(t, st, "a1"); got != 2_000 {
		t.Errorf("spent %d, want 2000", got)
	}
}

// A restarted wallet answers a paid invoice from its records and pays nothing.
func TestRestartNeverPaysTwice(t *testing.T) {
	relay := testrelay.Start(t)
	dir := t.TempDir()
	cfg := Config{Relays: []string{relay}, Data: dir, Backend: BackendLedger}
	workerURI := connect(t, ConnectConfig{Data: dir, Relays: []string{relay}, Name: "worker"})
	buyerURI := connect(t, ConnectConfig{Data: dir, Relays: []string{relay}, Name: "buyer", FundSats: 50})
	var inv nip47.Transaction
	var first nip47.PayInvoiceResult
	t.Run("first run", func(t *testing.T) {
		ctx := serve(t, cfg)
		inv = makeInvoice(ctx, t, client(t, workerURI), 21_000, "job")
		var err error
		if first, err = client(t, buyerURI).PayInvoice(ctx, inv.Invoice, 0); err != nil {
			t.Fatal(err)
		}
	})
	if t.Failed() {
		return
	}
	ctx := serve(t, cfg)
	buyer := client(t, buyerURI)
	again, err := buyer.PayInvoice(ctx, inv.Invoice, 0)
	if err != nil || again.Preimage != first.Preimage {
		t.Fatalf("after restart: %+v, %v; want the first preimage", again, err)
	}
	wantBalances(ctx, t, map[*nip47.Client]int64{buyer: 29_000, client(t, workerURI): 21_000})
}

func TestServeRefusesLNDWithoutOpener(t *testing.T) {
	cfg := Config{Relays: []string{"ws://127.0.0.1:1"}, Data: t.TempDir(), Backend: BackendLND, LNDRest: "https://127.0.0.1:1", LNDMacaroon: "m"}
	if err := Serve(t.Context(), cfg, zerolog.Nop()); err == nil {
		t.Fatal("Serve with --backend lnd and no OpenLND succeeded")
	}
}

// Request ids are remembered while a replay of their request could still be answered, and
// forgotten after: a pruned id is new again, which is safe because nip47.Service refuses the
// request by its date (MaxAge) by then.
func TestPruneSeen(t *testing.T) {
	st := openTestStore(t, t.TempDir())
	t0 := time.Unix(1_700_000_000, 0)
	st.now = func() time.Time { return t0 }
	for _, id := range []string{"old", "older"} {
		if first, err := st.seen(t.Context(), id); err != nil || !first {
			t.Fatalf("seen(%s) = %v %v", id, first, err)
		}
	}
	st.now = func() time.Time { return t0.Add(requestMaxAge) }
	if first, err := st.seen(t.Context(), "recent"); err != nil || !first {
		t.Fatalf("seen(recent) = %v %v", first, err)
	}
	now := t0.Add(requestMaxAge + nip47.FutureSkew + time.Second)
	st.now = func() time.Time { return now }
	n, err := st.pruneSeen(t.Context(), now.Add(-requestMaxAge-nip47.FutureSkew))
	if err != nil || n != 2 {
		t.Fatalf("pruneSeen forgot %d (%v), want the 2 seen at t0", n, err)
	}
	for id, wantFirst := range map[string]bool{"old": true, "recent": false} {
		if first, err := st.seen(t.Context(), id); err != nil || first != wantFirst {
			t.Errorf("after pruning, seen(%s) first = %v %v, want %v", id, first, err, wantFirst)
		}
	}
}

// A notification the backend cannot attribute (lnd after a restart: account "") goes to the
// connection recorded as having made the invoice; invoices are forgotten a day after expiry.
func TestInvoiceAccount(t *testing.T) {
	st := openTestStore(t, t.TempDir())
	t0 := time.Unix(1_700_000_000, 0)
	st.now = func() time.Time { return t0 }
	h := &handler{st: st, log: zerolog.New(zerolog.NewTestWriter(t))}
	hash := strings.Repeat("ab", 32)
	if err := st.recordInvoice(t.Context(), hash, "worker", t0.Add(time.Hour).Unix()); err != nil {
		t.Fatal(err)
	}
	event := func(account, hash string) BackendEvent {
		var ev BackendEvent
		ev.Account = account
		ev.Notification.Transaction.PaymentHash = hash
		return ev
	}
	for _, tc := range []struct {
		name string
		ev   BackendEvent
		want string
	}{
		{"the backend knows", event("buyer", hash), "buyer"},
		{"the backend forgot", event("", hash), "worker"},
		{"an invoice made elsewhere", event("", strings.Repeat("cd", 32)), ""},
		{"no hash", event("", ""), ""},
	} {
		if got := h.accountOf(t.Context(), tc.ev); got != tc.want {
			t.Errorf("%s: accountOf = %q, want %q", tc.name, got, tc.want)
		}
	}
	if n, err := st.pruneInvoices(t.Context(), t0.Add(time.Hour)); err != nil || n != 0 {
		t.Fatalf("pruned %d (%v) before expiry", n, err)
	}
	if n, err := st.pruneInvoices(t.Context(), t0.Add(time.Hour+time.Second)); err != nil || n != 1 {
		t.Fatalf("pruned %d (%v) after expiry, want 1", n, err)
	}
	if got := h.accountOf(t.Context(), event("", hash)); got != "" {
		t.Fatalf("after pruning, accountOf = %q", got)
	}
}

// The wallet's SQLite file holds its NWC key: it is 0600 in a 0700 folder also when --data
// already existed, world-readable, from an earlier run or a mkdir.
func TestStoreFileModes(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "wallet-data")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o755)
	db := filepath.Join(dir, "wallet.sqlite")
	os.WriteFile(db, nil, 0o644)
	os.Chmod(db, 0o644)
	st := openTestStore(t, dir)
	if _, err := st.walletKey(t.Context()); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]os.FileMode{dir: 0o700, db: 0o600, db + "-wal": 0o600, db + "-shm": 0o600} {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != want {
			t.Fatalf("%s: mode %v, want %v", path, fi.Mode().Perm(), want)
		}
	}
}
