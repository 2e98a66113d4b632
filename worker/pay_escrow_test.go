package worker

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nbd-wtf/go-nostr"

	"github.com/sparecycles/sparecycles/internal/relayconn"
	"github.com/sparecycles/sparecycles/internal/testimage"
	"github.com/sparecycles/sparecycles/internal/testrelay"
	"github.com/sparecycles/sparecycles/nips/escrow"
	"github.com/sparecycles/sparecycles/nips/nip47"
	"github.com/sparecycles/sparecycles/nips/nip89"
	"github.com/sparecycles/sparecycles/nips/nip90"
	"github.com/sparecycles/sparecycles/relay"
	"github.com/sparecycles/sparecycles/wallet"
)

// escrowPrice is the OCR model's price in the escrow tests.
const escrowPrice = 4000

// escrowEnv is a relay, a ledger wallet service on it with a worker account and a funded
// customer account, and a worker config paid through it.
type escrowEnv struct {
	relay     string
	conn      *relayconn.Conn
	workerURI nip47.URI
	custURI   nip47.URI
	cust      customer
	cfg       Config
}

func newEscrowEnv(t *testing.T) *escrowEnv {
	t.Helper()
	return newEscrowEnvOn(t, testrelay.Start(t))
}

// startLeaseRelay serves this repo's relay, which coordinates leases (nips/lease.md): the
// worker's home relay.
func startLeaseRelay(t *testing.T) (*relay.Relay, string) {
	t.Helper()
	return startLeaseRelayWith(t, nil)
}

// startLeaseRelayWith is startLeaseRelay with mut adjusting the config.
func startLeaseRelayWith(t *testing.T, mut func(*relay.Config)) (*relay.Relay, string) {
	t.Helper()
	cfg := relay.DefaultConfig()
	cfg.Data = t.TempDir()
	cfg.IPRate, cfg.PubkeyRate = 0, 0
	cfg.ReqRate, cfg.MaxConnsPerIP = 0, 0 // every test client shares 127.0.0.1
	if mut != nil {
		mut(&cfg)
	}
	r, err := relay.New(cfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); r.Serve(ctx, ln) }()
	t.Cleanup(func() { cancel(); <-done; r.Close() })
	return r, "ws://" + ln.Addr().String()
}

func newEscrowEnvOn(t *testing.T, relay string) *escrowEnv {
	t.Helper()
	data := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	done, ready := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		cfg := wallet.Config{Relays: []string{relay}, Data: data, Backend: "ledger", OnReady: func() { close(ready) }}
		if err := wallet.Serve(ctx, cfg, testLogger(t)); err != nil && ctx.Err() == nil {
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
	e := &escrowEnv{relay: relay, conn: testrelay.Dial(t, relay), workerURI: connect("worker", 0), custURI: connect("customer", 100), cust: newCustomer()}
	e.cfg = testConfig(t, relay)
	e.cfg.NWC = e.workerURI.Encode()
	e.cfg.Models = pricedOCR(t, escrowPrice)
	e.cfg.PaymentPoll = time.Second
	e.cfg.SettleWindow = 5 * time.Minute
	return e
}

// pricedOCR copies the models folder's manifests with the OCR model priced at msat a job,
// linking the model files.
func pricedOCR(t *testing.T, msat int64) string {
	t.Helper()
	src, dst := modelsDir(t), t.TempDir()
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		from, _ := filepath.Abs(filepath.Join(src, e.Name()))
		if filepath.Ext(e.Name()) != ".json" {
			if err := os.Symlink(from, filepath.Join(dst, e.Name())); err != nil {
				t.Fatal(err)
			}
			continue
		}
		var m map[string]any
		b, _ := os.ReadFile(from)
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		if m["task"] == TaskOCR {
			m["price"] = map[string]any{"base_msat": msat, "per_unit_msat": 0, "unit": "megapixel"}
		}
		b, _ = json.Marshal(m)
		if err := os.WriteFile(filepath.Join(dst, e.Name()), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

// run starts a worker on cfg, its wallet wrapped by wrap when given, and waits until it has
// announced itself. stop stops and closes it (also at cleanup).
func (e *escrowEnv) run(t *testing.T, cfg Config, wrap func(walletAPI) walletAPI) (w *Worker, stop func()) {
	t.Helper()
	w, err := New(cfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	if wrap != nil {
		w.wallet = wrap(w.wallet)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); w.Run(ctx) }()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); <-done; w.Close() }) }
	t.Cleanup(stop)
	wctx, wcancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer wcancel()
	sub, err := e.conn.Subscribe(wctx, nostr.Filter{Kinds: []int{nip89.KindHandlerInfo}, Authors: []string{w.PubKey()}})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	select {
	case evt := <-sub.Events:
		h, err := nip89.ParseHandlerInfo(evt)
		if err != nil || len(h.Payment) == 0 || h.Payment[0] != escrow.SchemeEscrow {
			t.Fatalf("announcement payment %v (%v), want escrow first", h.Payment, err)
		}
	case <-wctx.Done():
		t.Fatal("worker never announced itself")
	}
	return w, stop
}

// post publishes an OCR job on input whose customer accepts escrow, then prepay.
func (e *escrowEnv) post(t *testing.T, input string) nostr.Event {
	t.Helper()
	return e.cust.post(t, 5000, nostr.Tags{{"i", input, "url"}, {"output", "text/plain"}, escrow.PaymentSchemesTag(escrow.SchemeEscrow, escrow.SchemePrepay)}, e.conn)
}

// quote waits for the job's escrow quote.
func (e *escrowEnv) quote(t *testing.T, job nostr.Event) (nip90.Amount, escrow.Quote) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	sub, err := e.conn.Subscribe(ctx, nostr.Filter{Kinds: []int{nip90.KindFeedback}, Tags: nostr.TagMap{"e": {job.ID}}})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	for {
		select {
		case evt := <-sub.Events:
			fb, err := nip90.ParseJobFeedback(evt)
			if err != nil {
				t.Fatalf("malformed feedback: %v", err)
			}
			if fb.Status == nip90.StatusError {
				t.Fatalf("job refused: %s", fb.Info)
			}
			if fb.Status != nip90.StatusPaymentRequired {
				continue
			}
			q, ok, err := escrow.ParseQuote(evt.Tags)
			if !ok || err != nil || fb.Amount == nil || fb.Amount.Bolt11 == "" {
				t.Fatalf("quote without an escrow tag and an invoice: %v %v", evt.Tags, err)
			}
			return *fb.Amount, q
		case <-ctx.Done():
			t.Fatal("no quote within 2 minutes")
		}
	}
}

// pay pays bolt11 from the customer's wallet; the answer comes when the hold settles or is
// cancelled.
func (e *escrowEnv) pay(t *testing.T, bolt11 string) <-chan payOutcome {
	t.Helper()
	out := make(chan payOutcome, 1)
	pool := relayconn.NewPool(e.custURI.Relays)
	t.Cleanup(pool.Close)
	c := nip47.NewClient(e.custURI, pool)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
		defer cancel()
		res, err := c.PayInvoice(ctx, bolt11, 0)
		out <- payOutcome{res, err}
	}()
	return out
}

type payOutcome struct {
	res nip47.PayInvoiceResult
	err error
}

func awaitPay(t *testing.T, ch <-chan payOutcome) payOutcome {
	t.Helper()
	select {
	case p := <-ch:
		return p
	case <-time.After(4 * time.Minute):
		t.Fatal("pay_invoice never answered")
	}
	return payOutcome{}
}

// balances are the worker's and the customer's wallet balances.
func (e *escrowEnv) balances(t *testing.T) [2]int64 {
	t.Helper()
	return [2]int64{walletBalance(t, e.workerURI), walletBalance(t, e.custURI)}
}

// movedBy checks that since before the worker's balance rose, and the customer's fell, by sum
// exactly.
func (e *escrowEnv) movedBy(t *testing.T, before [2]int64, sum int64) {
	t.Helper()
	if got := e.balances(t); got != [2]int64{before[0] + sum, before[1] - sum} {
		t.Fatalf("balances %v → %v, want both to move by %d once", before, got, sum)
	}
}

func walletBalance(t *testing.T, uri nip47.URI) int64 {
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

// gatedInput serves a PNG of text. The worker fetches it twice, to price the job and, once
// paid, to run it; the second fetch waits for release (held is closed when it arrives), and
// with fail set, answers 404 instead of the image.
func gatedInput(t *testing.T, text string, fail bool) (url string, held <-chan struct{}, release func()) {
	t.Helper()
	png, err := testimage.Render(28, text)
	if err != nil {
		t.Fatal(err)
	}
	var fetches atomic.Int32
	h, rel := make(chan struct{}), make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if n := fetches.Add(1); n >= 2 {
			if n == 2 {
				close(h)
			}
			select {
			case <-rel:
			case <-r.Context().Done():
				return
			}
			if fail {
				http.NotFound(rw, r)
				return
			}
		}
		rw.Header().Set("Content-Type", "image/png")
		rw.Write(png)
	}))
	var once sync.Once
	release = func() { once.Do(func() { close(rel) }) }
	t.Cleanup(srv.Close)
	t.Cleanup(release)
	return srv.URL + "/page.png", h, release
}

func awaitClosed(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(3 * time.Minute):
		t.Fatalf("%s never happened", what)
	}
}

// storedState polls the worker's store (in dir) until job is in state want.
func storedState(t *testing.T, s *jobStore, id, want string) storedJob {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		st, err := s.get(context.Background(), id)
		if err == nil && st.State == want {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s is %q (%v), want %q", id, st.State, err, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// An escrow job: quoted with a hold invoice, the payment held (the customer's funds locked,
// the worker's balance untouched) while it runs, the result sealed, and the invoice settled
// once: then the worker's balance moves by exactly the price, the customer's preimage opens
// the result, and no other preimage does.
func TestEscrowJobSettlesOnce(t *testing.T) {
	t.Run("plain NIP-90 relay", func(t *testing.T) { testEscrowJobSettlesOnce(t, newEscrowEnv(t)) })
	t.Run("lease relay", func(t *testing.T) {
		r, url := startLeaseRelay(t)
		w, id := testEscrowJobSettlesOnce(t, newEscrowEnvOn(t, url))
		if j, ok := r.Jobs().Lookup(id); !ok || j.ResultBy != w.PubKey() {
			t.Fatalf("relay job table: %+v", j)
		}
	})
}

func testEscrowJobSettlesOnce(t *testing.T, e *escrowEnv) (*Worker, string) {
	w, _ := e.run(t, e.cfg, nil)
	before := e.balances(t)
	input, held, release := gatedInput(t, "sealed work", false)
	job := e.post(t, input)
	amount, q := e.quote(t, job)
	if amount.Msat != escrowPrice || q.SettleWindow != e.cfg.SettleWindow {
		t.Fatalf("quote %+v %+v", amount, q)
	}
	paid := e.pay(t, amount.Bolt11)
	awaitClosed(t, held, "the paid run's fetch")
	st := storedState(t, w.store, job.ID, StatePaid)
	if st.AcceptedAt.IsZero() || st.PaymentHash != q.PaymentHash {
		t.Fatalf("stored %+v", st)
	}
	if got := e.balances(t); got != [2]int64{before[0], before[1] - escrowPrice} {
		t.Fatalf("balances while held %v, want the worker's untouched and the customer's locked: %v", got, [2]int64{before[0], before[1] - escrowPrice})
	}
	release()
	res, info := testrelay.JobOutcome(t, e.conn, job)
	if res == nil {
		t.Fatalf("job failed: %s", info)
	}
	p := awaitPay(t, paid)
	if p.err != nil {
		t.Fatalf("pay: %v", p.err)
	}
	hash, ok, err := escrow.ParseResult(res.Tags)
	if !ok || err != nil || hash != q.PaymentHash || res.Tags.Find("amount") != nil {
		t.Fatalf("result tags %v (%v)", res.Tags, err)
	}
	pre, err := escrow.ParsePreimage(p.res.Preimage)
	if err != nil || pre.Hash() != q.PaymentHash {
		t.Fatalf("preimage %q does not hash to %s", p.res.Preimage, q.PaymentHash)
	}
	plain, err := escrow.OpenContent(pre, job.ID, res.Content)
	if err != nil || normalize(string(plain)) != "sealed work" {
		t.Fatalf("opened %q, %v", plain, err)
	}
	if normalize(res.Content) == "sealed work" {
		t.Fatal("the result was published in the clear")
	}
	other, _ := escrow.NewPreimage()
	if _, err := escrow.OpenContent(other, job.ID, res.Content); !errors.Is(err, escrow.ErrSealed) {
		t.Fatalf("another preimage opened the result: %v", err)
	}
	storedState(t, w.store, job.ID, StateSettled)
	e.movedBy(t, before, int64(escrowPrice))
	return w, job.ID
}

// settleRecorder is the worker's wallet, checking at each settle that the result it pays for
// is already on the relay.
type settleRecorder struct {
	walletAPI
	check   func()
	settles atomic.Int32
}

func (r *settleRecorder) SettleHoldInvoice(ctx context.Context, preimage string) error {
	r.settles.Add(1)
	r.check()
	return r.walletAPI.SettleHoldInvoice(ctx, preimage)
}

// The worker settles only once its home relay (one that coordinates leases) has stored the
// sealed result.
func TestEscrowSettlesAfterResultStored(t *testing.T) {
	_, url := startLeaseRelay(t)
	e := newEscrowEnvOn(t, url)
	var job nostr.Event
	var jobMu sync.Mutex
	var rec *settleRecorder
	checker := testrelay.Dial(t, e.relay)
	e.run(t, e.cfg, func(api walletAPI) walletAPI {
		rec = &settleRecorder{walletAPI: api, check: func() {
			jobMu.Lock()
			id := job.ID
			jobMu.Unlock()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			evs, err := checker.Query(ctx, nostr.Filter{Kinds: []int{6000}, Tags: nostr.TagMap{"e": {id}}})
			if err != nil || len(evs) == 0 {
				t.Errorf("settle before the result was stored (query: %v)", err)
			}
		}}
		return rec
	})
	input, _, release := gatedInput(t, "stored first", false)
	release()
	jobMu.Lock()
	job = e.post(t, input)
	jobMu.Unlock()
	amount, _ := e.quote(t, job)
	paid := e.pay(t, amount.Bolt11)
	if p := awaitPay(t, paid); p.err != nil {
		t.Fatalf("pay: %v", p.err)
	}
	if n := rec.settles.Load(); n != 1 {
		t.Fatalf("%d settles, want 1", n)
	}
}

// silentSettles is the worker's wallet with its settles getting no answer (a transport
// error, as when the wallet service or its relay is down) while down is set.
type silentSettles struct {
	walletAPI
	down  atomic.Bool
	calls atomic.Int32
}

func (s *silentSettles) SettleHoldInvoice(ctx context.Context, preimage string) error {
	s.calls.Add(1)
	if s.down.Load() {
		return errors.New("wallet: no answer")
	}
	return s.walletAPI.SettleHoldInvoice(ctx, preimage)
}

// A delivered job whose settle got no answer however often the job retried it is settled by
// the payment poll once the wallet answers again, without waiting for the worker's next
// start: the customer's payment is not left locked, and it is settled once.
func TestEscrowSettleRetriedAfterWalletSilence(t *testing.T) {
	e := newEscrowEnv(t)
	silent := &silentSettles{}
	silent.down.Store(true)
	w, _ := e.run(t, e.cfg, func(api walletAPI) walletAPI { silent.walletAPI = api; return silent })
	before := walletBalance(t, e.workerURI)
	input, _, release := gatedInput(t, "settled later", false)
	release()
	job := e.post(t, input)
	amount, _ := e.quote(t, job)
	paid := e.pay(t, amount.Bolt11)
	if res, info := testrelay.JobOutcome(t, e.conn, job); res == nil {
		t.Fatalf("job failed: %s", info)
	}
	storedState(t, w.store, job.ID, StateDelivered)
	// the job's own settle tries five times over 15 s, then leaves the job delivered
	deadline := time.Now().Add(time.Minute)
	for silent.calls.Load() < 5 {
		if time.Now().After(deadline) {
			t.Fatalf("%d settle attempts in a minute, want 5", silent.calls.Load())
		}
		time.Sleep(50 * time.Millisecond)
	}
	silent.down.Store(false)
	if p := awaitPay(t, paid); p.err != nil {
		t.Fatalf("pay: %v", p.err)
	}
	storedState(t, w.store, job.ID, StateSettled)
	if got := walletBalance(t, e.workerURI); got != before+escrowPrice {
		t.Fatalf("worker balance %d → %d, want one settle of %d", before, got, escrowPrice)
	}
}

// A job that fails after its payment is held is refunded: the hold invoice is cancelled, the
// customer's balance is back to the msat, the worker's untouched, and the error says so.
func TestEscrowFailureRefunds(t *testing.T) {
	e := newEscrowEnv(t)
	w, _ := e.run(t, e.cfg, nil)
	before := e.balances(t)
	input, _, release := gatedInput(t, "never read", true)
	release()
	job := e.post(t, input)
	amount, _ := e.quote(t, job)
	paid := e.pay(t, amount.Bolt11)
	res, info := testrelay.JobOutcome(t, e.conn, job)
	if res != nil || !strings.Contains(info, "your payment was refunded") {
		t.Fatalf("outcome %v %q, want error feedback saying the payment was refunded", res, info)
	}
	if p := awaitPay(t, paid); !errors.Is(p.err, nip47.ErrPaymentFailed) {
		t.Fatalf("pay: %+v, want PAYMENT_FAILED", p)
	}
	storedState(t, w.store, job.ID, StateRefunded)
	if got := e.balances(t); got != before {
		t.Fatalf("balances %v → %v, want both as before", before, got)
	}
}

// stopWhileHeld posts a job, pays it, and stops the worker while the paid run waits for its
// input: the job is held (paid) in the store.
func (e *escrowEnv) stopWhileHeld(t *testing.T, cfg Config) (job nostr.Event, paid <-chan payOutcome, release func()) {
	t.Helper()
	w, stop := e.run(t, cfg, nil)
	input, held, release := gatedInput(t, "after a restart", false)
	job = e.post(t, input)
	amount, _ := e.quote(t, job)
	paid = e.pay(t, amount.Bolt11)
	awaitClosed(t, held, "the paid run's fetch")
	storedState(t, w.store, job.ID, StatePaid)
	stop()
	return job, paid, release
}

// A worker stopped while a held job runs finishes it when it starts again on the same store,
// and settles it exactly once.
func TestEscrowSurvivesRestart(t *testing.T) {
	e := newEscrowEnv(t)
	before := walletBalance(t, e.workerURI)
	job, paid, release := e.stopWhileHeld(t, e.cfg)
	release()
	w, _ := e.run(t, e.cfg, nil)
	res, info := testrelay.JobOutcome(t, e.conn, job)
	if res == nil {
		t.Fatalf("job failed: %s", info)
	}
	p := awaitPay(t, paid)
	if p.err != nil {
		t.Fatalf("pay: %v", p.err)
	}
	pre, _ := escrow.ParsePreimage(p.res.Preimage)
	if plain, err := escrow.OpenContent(pre, job.ID, res.Content); err != nil || normalize(string(plain)) != "after a restart" {
		t.Fatalf("opened %q, %v", plain, err)
	}
	storedState(t, w.store, job.ID, StateSettled)
	if got := walletBalance(t, e.workerURI); got != before+escrowPrice {
		t.Fatalf("worker balance %d → %d, want one settle of %d", before, got, escrowPrice)
	}
}

// A held job whose settle window closed while the worker was down is refunded at start.
func TestEscrowPastWindowRefunds(t *testing.T) {
	e := newEscrowEnv(t)
	before := e.balances(t)
	job, paid, release := e.stopWhileHeld(t, e.cfg)
	release()
	// the window closed: move the payment's arrival back by two windows
	s, err := openJobStore(context.Background(), e.cfg.Data)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.db.Exec(`UPDATE escrow SET accepted_at = ? WHERE job_id = ?`, time.Now().Add(-2*e.cfg.SettleWindow).Unix(), job.ID); err != nil {
		t.Fatal(err)
	}
	s.Close()
	w, _ := e.run(t, e.cfg, nil)
	if p := awaitPay(t, paid); !errors.Is(p.err, nip47.ErrPaymentFailed) {
		t.Fatalf("pay: %+v, want PAYMENT_FAILED", p)
	}
	res, info := testrelay.JobOutcome(t, e.conn, job)
	if res != nil || !strings.Contains(info, "your payment was refunded") {
		t.Fatalf("outcome %v %q, want error feedback saying the payment was refunded", res, info)
	}
	storedState(t, w.store, job.ID, StateRefunded)
	if got := e.balances(t); got != before {
		t.Fatalf("balances %v → %v, want both as before", before, got)
	}
}

// A quote the wallet reports expired unpaid fails, and its hold invoice is cancelled: paying
// it afterwards moves nothing.
func TestEscrowQuoteExpiredCancels(t *testing.T) {
	e := newEscrowEnv(t)
	w, _ := e.run(t, e.cfg, nil)
	before := walletBalance(t, e.custURI)
	input, _, release := gatedInput(t, "never paid", false)
	release()
	job := e.post(t, input)
	amount, q := e.quote(t, job)
	// what pollPayments hands on when lookup_invoice says the invoice expired
	w.funds(context.Background(), nip47.Transaction{PaymentHash: q.PaymentHash, State: nip47.StateExpired})
	storedState(t, w.store, job.ID, StateFailed)
	if p := awaitPay(t, e.pay(t, amount.Bolt11)); p.err == nil {
		t.Fatalf("paid a cancelled quote: %+v", p.res)
	}
	if got := walletBalance(t, e.custURI); got != before {
		t.Fatalf("customer balance %d → %d, want untouched", before, got)
	}
}

// A held job whose lease another pubkey holds on the home relay is not run: its payment is
// returned at once (no debt, as prepay would record), and the error says so.
func TestEscrowClaimRefusedRefunds(t *testing.T) {
	_, url := startLeaseRelay(t)
	e := newEscrowEnvOn(t, url)
	w, _ := e.run(t, e.cfg, nil)
	before := walletBalance(t, e.custURI)
	input, _, release := gatedInput(t, "leased elsewhere", false)
	release()
	job := e.post(t, input)
	amount, _ := e.quote(t, job)
	// another worker leases the job before the customer pays
	other := newCustomer()
	claim := (&nip90.JobFeedback{CreatedAt: nostr.Now(), JobID: job.ID, Customer: job.PubKey, Status: nip90.StatusProcessing,
		Extra: nostr.Tags{leaseTag(5 * time.Minute)}}).Event()
	if err := claim.Sign(other.sk); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if ok, err := e.conn.Publish(ctx, claim); err != nil || !ok.Accepted {
		t.Fatalf("the other worker's claim: %+v %v", ok, err)
	}
	paid := e.pay(t, amount.Bolt11)
	res, info := testrelay.JobOutcome(t, e.conn, job)
	if res != nil || !strings.Contains(info, "claim refused") || !strings.Contains(info, "your payment was refunded") {
		t.Fatalf("outcome %v %q, want error feedback saying the claim was refused and the payment refunded", res, info)
	}
	if p := awaitPay(t, paid); !errors.Is(p.err, nip47.ErrPaymentFailed) {
		t.Fatalf("pay: %+v, want PAYMENT_FAILED", p)
	}
	storedState(t, w.store, job.ID, StateRefunded)
	if debts, _ := w.Debts(context.Background()); len(debts) != 0 {
		t.Fatalf("debts %+v, want none", debts)
	}
	if got := walletBalance(t, e.custURI); got != before {
		t.Fatalf("customer balance %d → %d, want as before", before, got)
	}
}

// flakySettle is the worker's wallet with settle_hold_invoice failing as a wallet that does not
// answer: the first `drop` calls are not sent; with `lose` set the next one reaches the wallet
// but its answer is lost; with `forget` every call settles but is answered NOT_FOUND (as lnd
// answers a settle of an invoice it settled before a restart).
type flakySettle struct {
	walletAPI
	drop   int32
	lose   bool
	forget bool
	calls  atomic.Int32
}

var errNoAnswer = errors.New("nwc settle_hold_invoice: no answer")

func (f *flakySettle) SettleHoldInvoice(ctx context.Context, preimage string) error {
	n := f.calls.Add(1)
	if n <= f.drop {
		return errNoAnswer
	}
	err := f.walletAPI.SettleHoldInvoice(ctx, preimage)
	switch {
	case err == nil && f.forget:
		return nip47.Errorf(nip47.CodeNotFound, "no hold invoice for that preimage")
	case err != nil || (f.lose && n == f.drop+1):
		return errors.Join(errNoAnswer, err)
	}
	return nil
}

// A delivered job whose settle gets no answer stays delivered and is settled by the payment
// poll once the wallet answers; a settle whose answer was lost is recorded from the wallet's
// lookup, and the customer is paid for, exactly once.
func TestEscrowSettleRetried(t *testing.T) {
	for _, tc := range []struct {
		name string
		f    *flakySettle
	}{
		{"answer to the settle lost", &flakySettle{lose: true}},
		{"wallet forgot it settled", &flakySettle{forget: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEscrowEnv(t)
			w, _ := e.run(t, e.cfg, func(api walletAPI) walletAPI { tc.f.walletAPI = api; return tc.f })
			before := e.balances(t)
			input, _, release := gatedInput(t, "settled late", false)
			release()
			job := e.post(t, input)
			amount, q := e.quote(t, job)
			paid := e.pay(t, amount.Bolt11)
			if p := awaitPay(t, paid); p.err != nil {
				t.Fatalf("pay: %v", p.err)
			} else if pre, _ := escrow.ParsePreimage(p.res.Preimage); pre.Hash() != q.PaymentHash {
				t.Fatalf("preimage %q", p.res.Preimage)
			}
			storedState(t, w.store, job.ID, StateSettled)
			e.movedBy(t, before, int64(escrowPrice))
		})
	}
}
