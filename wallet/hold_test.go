package wallet

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/url"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nbd-wtf/go-nostr"
	"github.com/nbd-wtf/go-nostr/nip44"

	"github.com/sparecycles/sparecycles/internal/testrelay"
)

// rawRelay is a plain websocket to a relay spoken with go-nostr's connection and envelopes:
// one reader hands EVENTs to their subscription and OKs to their publisher. (go-nostr's Relay
// type races with itself when it closes, which -race reports.)
type rawRelay struct {
	conn *nostr.Connection
	wmu  sync.Mutex // one writer at a time

	mu   sync.Mutex
	seq  int
	subs map[string]chan *nostr.Event
	eose map[string]chan struct{}
	oks  map[string]chan nostr.OKEnvelope
}

func dialRelay(t *testing.T, url string) *rawRelay {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	conn, err := nostr.NewConnection(ctx, url, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	r := &rawRelay{conn: conn, subs: map[string]chan *nostr.Event{}, eose: map[string]chan struct{}{}, oks: map[string]chan nostr.OKEnvelope{}}
	read, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	t.Cleanup(func() { stop(); conn.Close(); <-done })
	go func() {
		defer close(done)
		var buf bytes.Buffer
		for {
			buf.Reset()
			if err := conn.ReadMessage(read, &buf); err != nil {
				return
			}
			r.mu.Lock()
			switch env := nostr.ParseMessage(buf.String()).(type) {
			case *nostr.EventEnvelope:
				if ch, ok := r.subs[*env.SubscriptionID]; ok {
					select {
					case ch <- &env.Event:
					default: // the test reads far fewer than the buffer holds
					}
				}
			case *nostr.EOSEEnvelope:
				if ch, ok := r.eose[string(*env)]; ok {
					close(ch)
					delete(r.eose, string(*env))
				}
			case *nostr.OKEnvelope:
				if ch, ok := r.oks[env.EventID]; ok {
					ch <- *env
					delete(r.oks, env.EventID)
				}
			}
			r.mu.Unlock()
		}
	}()
	return r
}

func (r *rawRelay) write(ctx context.Context, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	r.wmu.Lock()
	defer r.wmu.Unlock()
	return r.conn.WriteMessage(ctx, b)
}

// subscribe sends a REQ and returns its events once the relay has answered EOSE.
func (r *rawRelay) subscribe(ctx context.Context, f nostr.Filter) (<-chan *nostr.Event, error) {
	r.mu.Lock()
	r.seq++
	id := "s" + strconv.Itoa(r.seq)
	events, eose := make(chan *nostr.Event, 64), make(chan struct{})
	r.subs[id], r.eose[id] = events, eose
	r.mu.Unlock()
	if err := r.write(ctx, nostr.ReqEnvelope{SubscriptionID: id, Filters: nostr.Filters{f}}); err != nil {
		return nil, err
	}
	select {
	case <-eose:
		return events, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// publish sends an EVENT and waits for the relay's OK.
func (r *rawRelay) publish(ctx context.Context, evt nostr.Event) error {
	ok := make(chan nostr.OKEnvelope, 1)
	r.mu.Lock()
	r.oks[evt.ID] = ok
	r.mu.Unlock()
	if err := r.write(ctx, nostr.EventEnvelope{Event: evt}); err != nil {
		return err
	}
	select {
	case env := <-ok:
		if !env.OK {
			return fmt.Errorf("relay refused %s: %s", evt.ID, env.Reason)
		}
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// rawNWC is a NWC client written as a third party would, from the spec: go-nostr events,
// go-nostr's NIP-44 and a plain go-nostr websocket connection, none of our nips/nip47 client.
type rawNWC struct {
	t      *testing.T
	relay  *rawRelay
	sk, pk string
	wallet string
	key    [32]byte // NIP-44 conversation key with the wallet
}

// rawResponse is a decoded kind 23195 event.
type rawResponse struct {
	ResultType string `json:"result_type"`
	Error      *struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
	Result json.RawMessage `json:"result"`
}

// dialRaw reads a connection string (nostr+walletconnect://<wallet>?relay=...&secret=...)
// and connects to its first relay.
func dialRaw(t *testing.T, connection string) *rawNWC {
	t.Helper()
	u, err := url.Parse(connection)
	if err != nil {
		t.Fatal(err)
	}
	c := &rawNWC{t: t, sk: u.Query().Get("secret"), wallet: u.Host}
	if c.pk, err = nostr.GetPublicKey(c.sk); err != nil {
		t.Fatal(err)
	}
	if c.key, err = nip44.GenerateConversationKey(c.wallet, c.sk); err != nil {
		t.Fatal(err)
	}
	c.relay = dialRelay(t, u.Query().Get("relay"))
	return c
}

// send publishes a request (with an "expiration" tag unless expiration is 0) and returns where
// its one answer arrives.
func (c *rawNWC) send(ctx context.Context, method string, params any, expiration int64) <-chan rawResponse {
	c.t.Helper()
	content, err := json.Marshal(map[string]any{"method": method, "params": params})
	if err != nil {
		c.t.Fatal(err)
	}
	ct, err := nip44.Encrypt(string(content), c.key)
	if err != nil {
		c.t.Fatal(err)
	}
	req := nostr.Event{Kind: 23194, CreatedAt: nostr.Now(), Content: ct,
		Tags: nostr.Tags{{"p", c.wallet}, {"encryption", "nip44_v2"}}}
	if expiration != 0 {
		req.Tags = append(req.Tags, nostr.Tag{"expiration", strconv.FormatInt(expiration, 10)})
	}
	if err := req.Sign(c.sk); err != nil {
		c.t.Fatal(err)
	}
	events, err := c.relay.subscribe(ctx, nostr.Filter{Kinds: []int{23195}, Authors: []string{c.wallet},
		Tags: nostr.TagMap{"e": {req.ID}, "p": {c.pk}}})
	if err != nil {
		c.t.Fatal(err)
	}
	if err := c.relay.publish(ctx, req); err != nil {
		c.t.Fatal(err)
	}
	out := make(chan rawResponse, 1)
	go func() {
		for {
			select {
			case evt := <-events:
				plain, err := nip44.Decrypt(evt.Content, c.key)
				var r rawResponse
				if err != nil || json.Unmarshal([]byte(plain), &r) != nil || !evt.CheckID() {
					continue
				}
				out <- r
				return
			case <-ctx.Done():
				return
			}
		}
	}()
	return out
}

// call sends a request and waits for its answer.
func (c *rawNWC) call(ctx context.Context, method string, params any) rawResponse {
	c.t.Helper()
	return answer(ctx, c.t, c.send(ctx, method, params, 0))
}

func answer(ctx context.Context, t *testing.T, ch <-chan rawResponse) rawResponse {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-ctx.Done():
		t.Fatal("no answer")
	}
	panic("unreachable")
}

// rawNotification is a decoded kind 23197 event.
type rawNotification struct {
	Type        string `json:"notification_type"`
	Transaction struct {
		State          string `json:"state"`
		PaymentHash    string `json:"payment_hash"`
		Amount         int64  `json:"amount"`
		SettleDeadline int64  `json:"settle_deadline"`
	} `json:"notification"`
}

// notifications subscribes to the client's NIP-44 notifications.
func (c *rawNWC) notifications(ctx context.Context) <-chan rawNotification {
	c.t.Helper()
	events, err := c.relay.subscribe(ctx, nostr.Filter{Kinds: []int{23197}, Authors: []string{c.wallet}, Tags: nostr.TagMap{"p": {c.pk}}})
	if err != nil {
		c.t.Fatal(err)
	}
	out := make(chan rawNotification, 16)
	go func() {
		for {
			select {
			case evt := <-events:
				plain, err := nip44.Decrypt(evt.Content, c.key)
				var n rawNotification
				if err != nil || json.Unmarshal([]byte(plain), &n) != nil || !evt.CheckID() {
					continue
				}
				select {
				case out <- n:
				case <-ctx.Done():
					return
				}
			case <-ctx.Done():
				return
			}
		}
	}()
	return out
}

// want checks an answer: an error with code, or (code "") a result, decoded into into.
func (r rawResponse) want(t *testing.T, what, code string, into any) {
	t.Helper()
	switch {
	case code != "" && (r.Error == nil || r.Error.Code != code):
		t.Fatalf("%s: %+v, want error %s", what, r, code)
	case code == "" && r.Error != nil:
		t.Fatalf("%s: error %s: %s", what, r.Error.Code, r.Error.Message)
	case code == "" && into != nil:
		if err := json.Unmarshal(r.Result, into); err != nil {
			t.Fatalf("%s: result %s: %v", what, r.Result, err)
		}
	}
}

func (c *rawNWC) balance(ctx context.Context) int64 {
	c.t.Helper()
	var b struct {
		Balance int64 `json:"balance"`
	}
	c.call(ctx, "get_balance", map[string]any{}).want(c.t, "get_balance", "", &b)
	return b.Balance
}

func newPreimage(t *testing.T) (preimage, hash string) {
	t.Helper()
	var p [32]byte
	if _, err := rand.Read(p[:]); err != nil {
		t.Fatal(err)
	}
	h := sha256.Sum256(p[:])
	return hex.EncodeToString(p[:]), hex.EncodeToString(h[:])
}

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

type holdInvoiceResult struct {
	Invoice     string `json:"invoice"`
	PaymentHash string `json:"payment_hash"`
	State       string `json:"state"`
}

func makeHold(ctx context.Context, t *testing.T, c *rawNWC, hash string, msat int64) holdInvoiceResult {
	t.Helper()
	var inv holdInvoiceResult
	c.call(ctx, "make_hold_invoice", map[string]any{"amount": msat, "description": "job", "payment_hash": hash, "min_cltv_expiry_delta": 10}).
		want(t, "make_hold_invoice", "", &inv)
	if inv.PaymentHash != hash || inv.Invoice == "" {
		t.Fatalf("make_hold_invoice: %+v, want an invoice for %s", inv, hash)
	}
	return inv
}

// accepted waits for the hold_invoice_accepted notification of hash.
func accepted(ctx context.Context, t *testing.T, notes <-chan rawNotification, hash string, msat int64) {
	t.Helper()
	for {
		n := next(ctx, t, notes)
		if n.Type != "hold_invoice_accepted" {
			continue
		}
		if tx := n.Transaction; tx.PaymentHash != hash || tx.State != "accepted" || tx.Amount != msat || tx.SettleDeadline <= 0 {
			t.Fatalf("hold_invoice_accepted %+v, want %s accepted for %d msat with a settle_deadline", n, hash, msat)
		}
		return
	}
}

// Hold invoices through `wallet serve`, driven by an independent NWC client: the payer's
// pay_invoice is answered only once the payee settles (with the preimage) or cancels
// (PAYMENT_FAILED, the money and the budget back); only the payee may settle or cancel.
func TestHoldInvoicesOverNWC(t *testing.T) {
	f := newHoldFixture(t)
	ctx := serve(t, f.cfg)
	worker, buyer, other := dialRaw(t, f.worker), dialRaw(t, f.buyer), dialRaw(t, f.other)
	st := openTestStore(t, f.dir)
	notes := worker.notifications(ctx)

	var info struct {
		Methods       []string `json:"methods"`
		Notifications []string `json:"notifications"`
	}
	worker.call(ctx, "get_info", map[string]any{}).want(t, "get_info", "", &info)
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
		preimage, hash := newPreimage(t)
		inv := makeHold(ctx, t, worker, hash, 21_000)
		// the request expires long before the answer: the answer still goes out
		expiration := time.Now().Unix() + 2
		paid := buyer.send(ctx, "pay_invoice", map[string]any{"invoice": inv.Invoice}, expiration)
		accepted(ctx, t, notes, hash, 21_000)
		var got holdInvoiceResult
		worker.call(ctx, "lookup_invoice", map[string]any{"payment_hash": hash}).want(t, "lookup_invoice", "", &got)
		if got.State != "accepted" {
			t.Errorf("lookup_invoice: %+v, want accepted", got)
		}
		if b, w := buyer.balance(ctx), worker.balance(ctx); b != 79_000 || w != 0 {
			t.Errorf("held: buyer %d, worker %d msat; want 79000 and 0", b, w)
		}
		if s := spent(t, st, f.buyerPubKey); s != 21_000 {
			t.Errorf("budget spent %d msat, want 21000", s)
		}
		for who, c := range map[string]*rawNWC{"other": other, "buyer": buyer} {
			c.call(ctx, "settle_hold_invoice", map[string]any{"preimage": preimage}).want(t, who+" settles", "NOT_FOUND", nil)
			c.call(ctx, "cancel_hold_invoice", map[string]any{"payment_hash": hash}).want(t, who+" cancels", "NOT_FOUND", nil)
		}
		select {
		case r := <-paid:
			t.Fatalf("pay_invoice answered before settle: %+v", r)
		default:
		}
		eventually(t, "the pay_invoice request expired", func() bool { return time.Now().Unix() > expiration })

		r := worker.call(ctx, "settle_hold_invoice", map[string]any{"preimage": preimage})
		r.want(t, "settle_hold_invoice", "", nil)
		if string(r.Result) != "{}" {
			t.Errorf("settle_hold_invoice result %s, want {}", r.Result)
		}
		var res struct {
			Preimage string `json:"preimage"`
		}
		answer(ctx, t, paid).want(t, "pay_invoice", "", &res)
		pre, _ := hex.DecodeString(res.Preimage)
		if h := sha256.Sum256(pre); hex.EncodeToString(h[:]) != hash {
			t.Fatalf("pay_invoice preimage %q does not hash to %s", res.Preimage, hash)
		}
		if b, w := buyer.balance(ctx), worker.balance(ctx); b != 79_000 || w != 21_000 {
			t.Errorf("settled: buyer %d, worker %d msat; want 79000 and 21000", b, w)
		}
		if s, state := spent(t, st, f.buyerPubKey), paymentState(t, st, hash); s != 21_000 || state != statePaid {
			t.Errorf("budget spent %d msat, payment %s; want 21000, paid", s, state)
		}
		worker.call(ctx, "settle_hold_invoice", map[string]any{"preimage": preimage}).want(t, "settle again", "", nil)
	})

	t.Run("cancel", func(t *testing.T) {
		_, hash := newPreimage(t)
		inv := makeHold(ctx, t, worker, hash, 30_000)
		paid := buyer.send(ctx, "pay_invoice", map[string]any{"invoice": inv.Invoice}, 0)
		accepted(ctx, t, notes, hash, 30_000)
		if b := buyer.balance(ctx); b != 49_000 {
			t.Errorf("held: buyer %d msat, want 49000", b)
		}
		if s := spent(t, st, f.buyerPubKey); s != 51_000 {
			t.Errorf("budget spent %d msat, want 51000", s)
		}
		worker.call(ctx, "cancel_hold_invoice", map[string]any{"payment_hash": hash}).want(t, "cancel_hold_invoice", "", nil)
		answer(ctx, t, paid).want(t, "pay_invoice of a cancelled hold invoice", "PAYMENT_FAILED", nil)
		if b, w := buyer.balance(ctx), worker.balance(ctx); b != 79_000 || w != 21_000 {
			t.Errorf("cancelled: buyer %d, worker %d msat; want 79000 and 21000", b, w)
		}
		if s := spent(t, st, f.buyerPubKey); s != 21_000 {
			t.Errorf("budget spent %d msat after cancel, want 21000", s)
		}
		worker.call(ctx, "cancel_hold_invoice", map[string]any{"payment_hash": hash}).want(t, "cancel again", "", nil)
		buyer.call(ctx, "pay_invoice", map[string]any{"invoice": inv.Invoice}).want(t, "pay a cancelled invoice", "PAYMENT_FAILED", nil)
		if b := buyer.balance(ctx); b != 79_000 {
			t.Errorf("buyer %d msat, want 79000", b)
		}
	})
}

// A restart of `wallet serve` while payments are held neither loses nor doubles money, and a
// settle or a cancel after the restart resolves the payment the first run left in flight.
func TestHeldPaymentsSurviveRestart(t *testing.T) {
	f := newHoldFixture(t)
	st := openTestStore(t, f.dir)
	settleP, settleH := newPreimage(t)
	_, cancelH := newPreimage(t)
	t.Run("first run", func(t *testing.T) {
		ctx := serve(t, f.cfg)
		worker, buyer := dialRaw(t, f.worker), dialRaw(t, f.buyer)
		notes := worker.notifications(ctx)
		for _, h := range []string{settleH, cancelH} {
			inv := makeHold(ctx, t, worker, h, 20_000)
			buyer.send(ctx, "pay_invoice", map[string]any{"invoice": inv.Invoice}, 0)
			accepted(ctx, t, notes, h, 20_000)
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
	worker, buyer := dialRaw(t, f.worker), dialRaw(t, f.buyer)
	if b, w, s := buyer.balance(ctx), worker.balance(ctx), spent(t, st, f.buyerPubKey); b != 60_000 || w != 0 || s != 40_000 {
		t.Fatalf("after restart: buyer %d, worker %d, spent %d msat; want 60000, 0, 40000", b, w, s)
	}
	buyer.call(ctx, "pay_invoice", map[string]any{"invoice": mustInvoice(ctx, t, worker, settleH)}).
		want(t, "paying a held invoice again", "OTHER", nil) // payment in progress

	worker.call(ctx, "settle_hold_invoice", map[string]any{"preimage": settleP}).want(t, "settle", "", nil)
	worker.call(ctx, "cancel_hold_invoice", map[string]any{"payment_hash": cancelH}).want(t, "cancel", "", nil)
	eventually(t, "the settled payment recorded paid", func() bool { return paymentState(t, st, settleH) == statePaid })
	eventually(t, "the cancelled payment recorded failed", func() bool { return paymentState(t, st, cancelH) == stateFailed })
	if b, w, s := buyer.balance(ctx), worker.balance(ctx), spent(t, st, f.buyerPubKey); b != 80_000 || w != 20_000 || s != 20_000 {
		t.Errorf("resolved: buyer %d, worker %d, spent %d msat; want 80000, 20000, 20000", b, w, s)
	}
	var res struct {
		Preimage string `json:"preimage"`
	}
	buyer.call(ctx, "pay_invoice", map[string]any{"invoice": mustInvoice(ctx, t, worker, settleH)}).want(t, "pay again", "", &res)
	if res.Preimage != settleP {
		t.Errorf("pay again: preimage %q, want the settled one", res.Preimage)
	}
	if b, w := buyer.balance(ctx), worker.balance(ctx); b != 80_000 || w != 20_000 {
		t.Errorf("after paying again: buyer %d, worker %d msat; want 80000, 20000", b, w)
	}
}

// mustInvoice is the bolt11 of worker's invoice for hash.
func mustInvoice(ctx context.Context, t *testing.T, worker *rawNWC, hash string) string {
	t.Helper()
	var got holdInvoiceResult
	worker.call(ctx, "lookup_invoice", map[string]any{"payment_hash": hash}).want(t, "lookup_invoice", "", &got)
	return got.Invoice
}
