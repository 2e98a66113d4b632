package nip47

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nbd-wtf/go-nostr"

	"github.com/sparecycles/sparecycles/internal/relayconn"
	"github.com/sparecycles/sparecycles/internal/testrelay"
)

// relayTransport adapts one relayconn connection to Transport.
type relayTransport struct{ conn *relayconn.Conn }

func (r relayTransport) Publish(ctx context.Context, evt nostr.Event) error {
	ok, err := r.conn.Publish(ctx, evt)
	if err != nil {
		return err
	}
	if !ok.Accepted {
		return fmt.Errorf("relay refused %s: %s", evt.ID, ok.Reason)
	}
	return nil
}

func (r relayTransport) Subscribe(ctx context.Context, f nostr.Filter) (<-chan *nostr.Event, error) {
	sub, err := r.conn.Subscribe(ctx, f)
	if err != nil {
		return nil, err
	}
	out := make(chan *nostr.Event)
	go func() { // ends with the subscription, which ends with ctx
		defer close(out)
		for {
			select {
			case evt := <-sub.Events:
				select {
				case out <- evt:
				case <-sub.Done():
					return
				}
			case <-sub.Done():
				return
			}
		}
	}()
	select { // live once the relay has sent what it stores
	case <-sub.EOSE:
		return out, nil
	case <-sub.Done():
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		return nil, fmt.Errorf("subscription closed: %s", sub.Reason())
	}
}

// recorder is a Transport that remembers what it published.
type recorder struct {
	Transport
	mu        sync.Mutex
	published []nostr.Event
}

func (r *recorder) Publish(ctx context.Context, evt nostr.Event) error {
	r.mu.Lock()
	r.published = append(r.published, evt)
	r.mu.Unlock()
	return r.Transport.Publish(ctx, evt)
}

func (r *recorder) requests() []nostr.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []nostr.Event
	for _, evt := range r.published {
		if evt.Kind == KindRequest {
			out = append(out, evt)
		}
	}
	return out
}

// fakeWallet is an in-memory wallet behind a Service's Handle.
type fakeWallet struct {
	mu       sync.Mutex
	balance  int64
	txs      []Transaction
	calls    map[string]int
	started  chan string   // when not nil, receives each method as Handle starts
	release  chan struct{} // when not nil, pay_invoice waits for it
	lastConn Connection
}

func (w *fakeWallet) handle(ctx context.Context, c Connection, method string, params json.RawMessage) (any, error) {
	w.mu.Lock()
	w.calls[method]++
	w.lastConn = c
	w.mu.Unlock()
	if w.started != nil {
		w.started <- method
	}
	switch method {
	case MethodPayInvoice:
		var p PayInvoiceParams
		if err := json.Unmarshal(params, &p); err != nil {
			return nil, Errorf(CodeOther, "bad params")
		}
		if w.release != nil {
			select {
			case <-w.release:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		switch p.Invoice {
		case "lnfail":
			return nil, Errorf(CodePaymentFailed, "no route")
		case "lnboom":
			return nil, errors.New("lnd exploded at 10.0.0.7")
		}
		w.mu.Lock()
		defer w.mu.Unlock()
		if p.Amount > w.balance {
			return nil, Errorf(CodeInsufficientBalance, "balance %d msat", w.balance)
		}
		w.balance -= p.Amount + 1000
		w.txs = append(w.txs, Transaction{Type: TypeOutgoing, State: StateSettled, Invoice: p.Invoice,
			PaymentHash: fmt.Sprintf("%064x", len(w.txs)+1), Amount: p.Amount, FeesPaid: 1000, CreatedAt: int64(100 + len(w.txs))})
		return PayInvoiceResult{Preimage: strings.Repeat("ab", 32), FeesPaid: 1000}, nil
	case MethodMakeInvoice:
		var p MakeInvoiceParams
		if err := json.Unmarshal(params, &p); err != nil {
			return nil, Errorf(CodeOther, "bad params")
		}
		w.mu.Lock()
		defer w.mu.Unlock()
		tx := Transaction{Type: TypeIncoming, State: StatePending, Invoice: fmt.Sprintf("lnbcrt%dn1fake%d", p.Amount/1000, len(w.txs)),
			Description: p.Description, PaymentHash: fmt.Sprintf("%064x", len(w.txs)+1), Amount: p.Amount,
			CreatedAt: int64(100 + len(w.txs)), ExpiresAt: int64(100+len(w.txs)) + p.Expiry, Metadata: json.RawMessage(`{"k":"v"}`)}
		w.txs = append(w.txs, tx)
		return tx, nil
	case MethodLookupInvoice:
		var p LookupInvoiceParams
		if err := json.Unmarshal(params, &p); err != nil {
			return nil, Errorf(CodeOther, "bad params")
		}
		w.mu.Lock()
		defer w.mu.Unlock()
		for _, tx := range w.txs {
			if (p.PaymentHash != "" && tx.PaymentHash == p.PaymentHash) || (p.Invoice != "" && tx.Invoice == p.Invoice) {
				return tx, nil
			}
		}
		return nil, Errorf(CodeNotFound, "no such invoice")
	case MethodGetBalance:
		w.mu.Lock()
		defer w.mu.Unlock()
		return GetBalanceResult{Balance: w.balance}, nil
	case MethodGetInfo:
		return GetInfoResult{Alias: "fake", Pubkey: strings.Repeat("02", 33), Network: "regtest", BlockHeight: 7,
			Methods: []string{MethodPayInvoice, MethodGetInfo}, Notifications: []string{NotificationPaymentReceived}}, nil
	case MethodListTransactions:
		var p ListTransactionsParams
		if err := json.Unmarshal(params, &p); err != nil {
			return nil, Errorf(CodeOther, "bad params")
		}
		w.mu.Lock()
		defer w.mu.Unlock()
		var out []Transaction
		for _, tx := range w.txs {
			if p.Type == "" || tx.Type == p.Type {
				out = append(out, tx)
			}
		}
		sort.Slice(out, func(i, j int) bool { return out[i].CreatedAt > out[j].CreatedAt })
		return ListTransactionsResult{Transactions: out}, nil
	}
	return nil, Errorf(CodeNotImplemented, "fake wallet has no %s", method)
}

var allMethods = []string{MethodPayInvoice, MethodMakeInvoice, MethodLookupInvoice, MethodGetBalance, MethodGetInfo, MethodListTransactions}

// nwc is a relay, a Service with a fakeWallet on it, and a Client it knows.
type nwc struct {
	url    string
	svc    *Service
	wallet *fakeWallet
	uri    URI
	client *Client
	rec    *recorder // the client's transport
	stop   func()    // stops Serve and waits for it; the test's end does too

	mu   sync.Mutex
	errs []error // OnError's
}

// startNWC serves a wallet on a fresh relay; configure may change the Service and the fake
// wallet before Serve starts.
// It returns once the client has read the wallet's info event, so the Service is listening.
func startNWC(t *testing.T, configure func(*nwc)) *nwc {
	t.Helper()
	n := &nwc{url: testrelay.Start(t), wallet: &fakeWallet{balance: 50_000_000, calls: map[string]int{}}}
	walletKey := NewSecret()
	n.uri = URI{WalletPubKey: walletKey.PubKey(), Relays: []string{n.url}, Secret: NewSecret()}
	known := n.uri.ClientPubKey()
	n.svc = &Service{
		WalletKey:     walletKey,
		Transport:     relayTransport{testrelay.Dial(t, n.url)},
		Methods:       allMethods,
		Notifications: []string{NotificationPaymentReceived, NotificationPaymentSent},
		Lookup: func(ctx context.Context, pk string) (Connection, bool, error) {
			return Connection{ClientPubKey: pk, Name: "test app"}, pk == known, nil
		},
		Handle: n.wallet.handle,
		OnError: func(err error) {
			n.mu.Lock()
			n.errs = append(n.errs, err)
			n.mu.Unlock()
		},
	}
	if configure != nil {
		configure(n)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.svc.Serve(ctx) }()
	n.stop = sync.OnceFunc(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	t.Cleanup(n.stop)
	n.rec = &recorder{Transport: relayTransport{testrelay.Dial(t, n.url)}}
	n.client = NewClient(n.uri, n.rec)
	if _, err := n.client.Info(callCtx(t)); err != nil {
		t.Fatalf("wallet info: %v (Serve: %v)", err, n.errors())
	}
	return n
}

func (n *nwc) errors() []error {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Clone(n.errs)
}

func (n *nwc) calls(method string) int {
	n.wallet.mu.Lock()
	defer n.wallet.mu.Unlock()
	return n.wallet.calls[method]
}

// callCtx bounds one exchange with the relay; a test that hangs fails instead.
func callCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// exchange publishes a hand-made request as the client of uri and returns the raw response
// event and its decrypted content, read with scheme.
func exchange(t *testing.T, url string, uri URI, req nostr.Event, scheme string) (*nostr.Event, Response) {
	t.Helper()
	tr := relayTransport{testrelay.Dial(t, url)}
	ctx := callCtx(t)
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	events, err := tr.Subscribe(sctx, nostr.Filter{Kinds: []int{KindResponse}, Authors: []string{uri.WalletPubKey}, Tags: nostr.TagMap{"e": {req.ID}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := tr.Publish(ctx, req); err != nil {
		t.Fatal(err)
	}
	select {
	case evt, open := <-events:
		if !open {
			t.Fatal("response subscription ended")
		}
		content, err := decrypt(scheme, uri.Secret.Hex(), uri.WalletPubKey, evt.Content)
		if err != nil {
			t.Fatalf("decrypt %s response: %v", scheme, err)
		}
		var r Response
		if err := json.Unmarshal([]byte(content), &r); err != nil {
			t.Fatal(err)
		}
		return evt, r
	case <-ctx.Done():
		t.Fatal("no response")
		return nil, Response{}
	}
}

func TestMethods(t *testing.T) {
	n := startNWC(t, nil)
	c := n.client
	ctx := callCtx(t)

	info, err := c.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := append(slices.Clone(allMethods), "notifications"); !slices.Equal(info.Methods, want) ||
		!slices.Equal(info.Encryptions, []string{EncryptionNIP44, EncryptionNIP04}) ||
		!slices.Equal(info.Notifications, []string{NotificationPaymentReceived, NotificationPaymentSent}) {
		t.Errorf("info = %+v", info)
	}

	inv, err := c.MakeInvoice(ctx, MakeInvoiceParams{Amount: 21_000, Description: "ocr job", Expiry: 600})
	if err != nil {
		t.Fatal(err)
	}
	if inv.Type != TypeIncoming || inv.Amount != 21_000 || inv.Description != "ocr job" || inv.ExpiresAt != inv.CreatedAt+600 || string(inv.Metadata) != `{"k":"v"}` {
		t.Errorf("MakeInvoice = %+v", inv)
	}
	for _, p := range []LookupInvoiceParams{{PaymentHash: inv.PaymentHash}, {Invoice: inv.Invoice}} {
		got, err := c.LookupInvoice(ctx, p)
		if err != nil || got.PaymentHash != inv.PaymentHash || got.Invoice != inv.Invoice {
			t.Errorf("LookupInvoice(%+v) = %+v, %v", p, got, err)
		}
	}
	if _, err := c.LookupInvoice(ctx, LookupInvoiceParams{PaymentHash: strings.Repeat("0", 64)}); !errors.Is(err, ErrNotFound) {
		t.Errorf("LookupInvoice(unknown) err = %v, want NOT_FOUND", err)
	}

	paid, err := c.PayInvoice(ctx, "lnbcrt5u1fake", 5_000_000)
	if err != nil || paid.Preimage != strings.Repeat("ab", 32) || paid.FeesPaid != 1000 {
		t.Errorf("PayInvoice = %+v, %v", paid, err)
	}
	if bal, err := c.GetBalance(ctx); err != nil || bal != 50_000_000-5_000_000-1000 {
		t.Errorf("GetBalance = %d, %v", bal, err)
	}
	if _, err := c.PayInvoice(ctx, "lnbcrt1fake", 1e12); !errors.Is(err, ErrInsufficientBalance) {
		t.Errorf("PayInvoice(too much) err = %v", err)
	}
	_, err = c.PayInvoice(ctx, "lnfail", 0)
	var werr *Error
	if !errors.Is(err, ErrPaymentFailed) || !errors.As(err, &werr) || werr.Message != "no route" {
		t.Errorf("PayInvoice(lnfail) err = %v, want PAYMENT_FAILED: no route", err)
	}

	gi, err := c.GetInfo(ctx)
	if err != nil || gi.Alias != "fake" || gi.Network != "regtest" || gi.BlockHeight != 7 || !slices.Equal(gi.Methods, []string{MethodPayInvoice, MethodGetInfo}) {
		t.Errorf("GetInfo = %+v, %v", gi, err)
	}

	txs, err := c.ListTransactions(ctx, ListTransactionsParams{})
	if err != nil || len(txs) != 2 || txs[0].Type != TypeOutgoing || txs[1].PaymentHash != inv.PaymentHash {
		t.Errorf("ListTransactions = %+v, %v", txs, err)
	}
	txs, err = c.ListTransactions(ctx, ListTransactionsParams{Type: TypeIncoming})
	if err != nil || len(txs) != 1 || txs[0].PaymentHash != inv.PaymentHash {
		t.Errorf("ListTransactions(incoming) = %+v, %v", txs, err)
	}

	// a method the Service does not list
	if err := c.Call(ctx, "sign_message", map[string]string{"message": "hi"}, nil); !errors.Is(err, ErrNotImplemented) {
		t.Errorf("sign_message err = %v, want NOT_IMPLEMENTED", err)
	}
	if n.calls("sign_message") != 0 {
		t.Error("Handle ran an unlisted method")
	}
	n.wallet.mu.Lock()
	if conn := n.wallet.lastConn; conn.Name != "test app" || conn.ClientPubKey != n.uri.ClientPubKey() {
		t.Errorf("Handle got connection %+v", conn)
	}
	n.wallet.mu.Unlock()

	// the client spoke NIP-44 v2 to a wallet that offers it
	reqs := n.rec.requests()
	if len(reqs) == 0 {
		t.Fatal("no requests recorded")
	}
	for _, r := range reqs {
		if v, _ := tagValue(&r, "encryption"); v != EncryptionNIP44 || strings.Contains(r.Content, "?iv=") {
			t.Errorf("request %s: encryption %q, content %.40q", r.ID, v, r.Content)
		}
		if v, _ := tagValue(&r, "p"); v != n.uri.WalletPubKey {
			t.Errorf("request %s: p %q", r.ID, v)
		}
	}
	if errs := n.errors(); len(errs) != 0 {
		t.Errorf("OnError got %v", errs)
	}
}

func TestInternalError(t *testing.T) {
	n := startNWC(t, nil)
	_, err := n.client.PayInvoice(callCtx(t), "lnboom", 0)
	if !errors.Is(err, ErrInternal) || strings.Contains(err.Error(), "10.0.0.7") {
		t.Fatalf("err = %v, want an INTERNAL error that hides the cause", err)
	}
	errs := n.errors()
	if len(errs) != 1 || !strings.Contains(errs[0].Error(), "lnd exploded at 10.0.0.7") || !strings.Contains(errs[0].Error(), "test app") {
		t.Errorf("OnError got %v, want the cause once", errs)
	}
}

func TestNIP04Wallet(t *testing.T) {
	n := startNWC(t, func(n *nwc) { n.svc.Encryptions = []string{EncryptionNIP04} })
	ctx := callCtx(t)
	info, err := n.client.Info(ctx)
	if err != nil || !slices.Equal(info.Encryptions, []string{EncryptionNIP04}) {
		t.Fatalf("info = %+v, %v", info, err)
	}
	if bal, err := n.client.GetBalance(ctx); err != nil || bal != 50_000_000 {
		t.Fatalf("GetBalance = %d, %v", bal, err)
	}
	if _, err := n.client.PayInvoice(ctx, "lnfail", 0); !errors.Is(err, ErrPaymentFailed) {
		t.Errorf("PayInvoice(lnfail) err = %v", err)
	}
	for _, r := range n.rec.requests() {
		if v, _ := tagValue(&r, "encryption"); v != EncryptionNIP04 || !wellFormed04(r.Content) {
			t.Errorf("request %s: encryption %q, content %.40q", r.ID, v, r.Content)
		}
	}

	// a NIP-44 request to it is refused, in NIP-04
	req, err := n.client.request(MethodGetBalance, nil, EncryptionNIP44, time.Now().Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	_, resp := exchange(t, n.url, n.uri, req, EncryptionNIP04)
	if resp.Error == nil || resp.Error.Code != CodeUnsupportedEncryption {
		t.Errorf("response %+v, want UNSUPPORTED_ENCRYPTION", resp)
	}

	notes, err := n.client.Notifications(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := Notification{Type: NotificationPaymentSent, Transaction: Transaction{Type: TypeOutgoing, PaymentHash: "ab", Amount: 7}}
	if err := n.svc.Notify(ctx, n.uri.ClientPubKey(), want); err != nil {
		t.Fatal(err)
	}
	select {
	case got := <-notes:
		if !notificationsEqual(got, want) {
			t.Errorf("notification %+v, want %+v", got, want)
		}
	case <-ctx.Done():
		t.Fatal("no notification")
	}
}

func TestNIP04RequestToDualWallet(t *testing.T) {
	n := startNWC(t, nil)
	deadline := time.Now().Add(time.Minute)

	req, err := n.client.request(MethodGetBalance, nil, EncryptionNIP04, deadline)
	if err != nil {
		t.Fatal(err)
	}
	evt, resp := exchange(t, n.url, n.uri, req, EncryptionNIP04)
	if !wellFormed04(evt.Content) || resp.ResultType != MethodGetBalance || resp.Error != nil || string(resp.Result) != `{"balance":50000000}` {
		t.Errorf("nip04 answer %+v (content %.40q)", resp, evt.Content)
	}
	if v := evt.Tags.FindWithValue("p", n.uri.ClientPubKey()); v == nil || evt.Tags.FindWithValue("e", req.ID) == nil {
		t.Errorf("response tags %v", evt.Tags)
	}

	// an old client sends no encryption tag at all: NIP-04
	legacy := nostr.Event{Kind: KindRequest, CreatedAt: nostr.Now(), Content: req.Content, Tags: nostr.Tags{{"p", n.uri.WalletPubKey}}}
	if err := sign(&legacy, n.uri.Secret.Hex()); err != nil {
		t.Fatal(err)
	}
	evt, resp = exchange(t, n.url, n.uri, legacy, EncryptionNIP04)
	if !wellFormed04(evt.Content) || resp.ResultType != MethodGetBalance || resp.Error != nil {
		t.Errorf("legacy answer %+v", resp)
	}

	// an encryption nobody knows: refused, in NIP-04
	odd, err := n.client.request(MethodGetBalance, nil, EncryptionNIP44, deadline)
	if err != nil {
		t.Fatal(err)
	}
	odd.Tags[1] = nostr.Tag{"encryption", "nip99"}
	if err := sign(&odd, n.uri.Secret.Hex()); err != nil {
		t.Fatal(err)
	}
	_, resp = exchange(t, n.url, n.uri, odd, EncryptionNIP04)
	if resp.Error == nil || resp.Error.Code != CodeUnsupportedEncryption || resp.ResultType != "" {
		t.Errorf("nip99 answer %+v", resp)
	}
	if got := n.calls(MethodGetBalance); got != 2 {
		t.Errorf("Handle ran get_balance %d times, want 2", got)
	}
}

func TestUnauthorized(t *testing.T) {
	n := startNWC(t, nil)
	stranger := n.uri
	stranger.Secret = NewSecret()
	c := NewClient(stranger, relayTransport{testrelay.Dial(t, n.url)})
	if _, err := c.GetBalance(callCtx(t)); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("err = %v, want UNAUTHORIZED", err)
	}
	if n.calls(MethodGetBalance) != 0 {
		t.Error("Handle ran for an unknown client")
	}
}

func TestNotImplemented(t *testing.T) {
	n := startNWC(t, func(n *nwc) { n.svc.Methods = []string{MethodGetBalance} })
	ctx := callCtx(t)
	if _, err := n.client.ListTransactions(ctx, ListTransactionsParams{}); !errors.Is(err, ErrNotImplemented) {
		t.Fatalf("err = %v, want NOT_IMPLEMENTED", err)
	}
	if _, err := n.client.GetBalance(ctx); err != nil {
		t.Fatal(err)
	}
	if n.calls(MethodListTransactions) != 0 {
		t.Error("Handle ran an unlisted method")
	}
}

func TestDuplicateRequest(t *testing.T) {
	for _, persistent := range []bool{false, true} {
		t.Run(fmt.Sprintf("persistent=%v", persistent), func(t *testing.T) {
			var (
				mu        sync.Mutex
				seenCalls int
			)
			n := startNWC(t, func(n *nwc) {
				if persistent {
					ids := map[string]bool{}
					n.svc.Seen = func(ctx context.Context, id string) (bool, error) {
						mu.Lock()
						defer mu.Unlock()
						seenCalls++
						first := !ids[id]
						ids[id] = true
						return first, nil
					}
				}
			})
			req, err := n.client.request(MethodMakeInvoice, MakeInvoiceParams{Amount: 1000}, EncryptionNIP44, time.Now().Add(time.Minute))
			if err != nil {
				t.Fatal(err)
			}
			_, first := exchange(t, n.url, n.uri, req, EncryptionNIP44)
			if first.Error != nil || first.ResultType != MethodMakeInvoice {
				t.Fatalf("first answer %+v", first)
			}
			_, second := exchange(t, n.url, n.uri, req, EncryptionNIP44)
			if second.Error == nil || second.Error.Code != CodeOther || second.Error.Message != "duplicate request" {
				t.Errorf("second answer %+v, want OTHER duplicate request", second)
			}
			if got := n.calls(MethodMakeInvoice); got != 1 {
				t.Errorf("Handle ran %d times, want 1", got)
			}
			mu.Lock()
			defer mu.Unlock()
			if persistent && seenCalls != 2 {
				t.Errorf("Seen called %d times, want 2", seenCalls)
			}
		})
	}
}

func TestExpiredRequestDropped(t *testing.T) {
	dropped := make(chan string, 8)
	n := startNWC(t, func(n *nwc) {
		n.svc.onDrop = func(evt *nostr.Event, reason string) { dropped <- evt.ID + " " + reason }
	})
	ctx := callCtx(t)
	req, err := n.client.request(MethodGetBalance, nil, EncryptionNIP44, time.Now().Add(-2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	// the listening wallet makes the relay accept it; the wallet then drops it
	if err := (relayTransport{testrelay.Dial(t, n.url)}).Publish(ctx, req); err != nil {
		t.Fatal(err)
	}
	select {
	case got := <-dropped:
		if got != req.ID+" expired" {
			t.Errorf("dropped %q, want %s expired", got, req.ID)
		}
	case <-ctx.Done():
		t.Fatal("expired request not dropped")
	}
	if n.calls(MethodGetBalance) != 0 {
		t.Error("Handle ran an expired request")
	}
}

func TestRateLimited(t *testing.T) {
	started := make(chan string)
	release := make(chan struct{})
	n := startNWC(t, func(n *nwc) { n.wallet.started, n.wallet.release = started, release })
	ctx := callCtx(t)

	var wg sync.WaitGroup
	errs := make(chan error, MaxHandling)
	for range MaxHandling {
		wg.Go(func() {
			_, err := n.client.PayInvoice(ctx, "lnbcrt1fake", 1)
			errs <- err
		})
	}
	for range MaxHandling { // all slots taken
		select {
		case <-started:
		case <-ctx.Done():
			t.Fatal("handlers did not start")
		}
	}
	if _, err := n.client.PayInvoice(ctx, "lnbcrt1fake", 1); !errors.Is(err, ErrRateLimited) {
		t.Errorf("17th concurrent payment err = %v, want RATE_LIMITED", err)
	}
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
}

func TestNotifications(t *testing.T) {
	n := startNWC(t, nil)
	ctx := callCtx(t)
	notes, err := n.client.Notifications(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// an old client listening for NIP-04 notifications alongside
	old := relayTransport{testrelay.Dial(t, n.url)}
	raw, err := old.Subscribe(ctx, nostr.Filter{Kinds: []int{KindNotification, KindNotification04}, Authors: []string{n.uri.WalletPubKey}})
	if err != nil {
		t.Fatal(err)
	}

	want := Notification{Type: NotificationPaymentReceived, Transaction: Transaction{Type: TypeIncoming, State: StateSettled,
		Invoice: "lnbcrt1fake", PaymentHash: strings.Repeat("cd", 32), Amount: 21_000, SettledAt: 1700000000, Metadata: json.RawMessage(`{"job":"x"}`)}}
	if err := n.svc.Notify(ctx, n.uri.ClientPubKey(), want); err != nil {
		t.Fatal(err)
	}
	select {
	case got := <-notes:
		if !notificationsEqual(got, want) {
			t.Errorf("notification %+v, want %+v", got, want)
		}
	case <-ctx.Done():
		t.Fatal("no notification")
	}

	kinds := map[int]bool{}
	for len(kinds) < 2 {
		select {
		case evt := <-raw:
			scheme := EncryptionNIP44
			if evt.Kind == KindNotification04 {
				scheme = EncryptionNIP04
			}
			content, err := decrypt(scheme, n.uri.Secret.Hex(), n.uri.WalletPubKey, evt.Content)
			var got Notification
			if err != nil || json.Unmarshal([]byte(content), &got) != nil || !notificationsEqual(got, want) {
				t.Errorf("kind %d: %q, %v", evt.Kind, content, err)
			}
			if evt.Tags.FindWithValue("p", n.uri.ClientPubKey()) == nil {
				t.Errorf("kind %d not p-tagged to the client: %v", evt.Kind, evt.Tags)
			}
			kinds[evt.Kind] = true
		case <-ctx.Done():
			t.Fatalf("got kinds %v, want %d and %d", kinds, KindNotification, KindNotification04)
		}
	}

	if err := n.svc.Notify(ctx, n.uri.ClientPubKey(), Notification{Type: "hold_invoice_accepted"}); err == nil {
		t.Error("Notify sent an unadvertised type")
	}
}

func notificationsEqual(a, b Notification) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return string(ja) == string(jb)
}

func TestWalletDown(t *testing.T) {
	t.Run("no info event", func(t *testing.T) {
		url := testrelay.Start(t)
		uri := URI{WalletPubKey: NewSecret().PubKey(), Relays: []string{url}, Secret: NewSecret()}
		c := NewClient(uri, relayTransport{testrelay.Dial(t, url)})
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		defer cancel()
		_, err := c.GetBalance(ctx)
		if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, ErrNoResponse) || !strings.Contains(err.Error(), "may be down") {
			t.Fatalf("err = %v, want no response, deadline exceeded", err)
		}
		if ctx.Err() == nil {
			t.Error("returned before the deadline")
		}
	})
	t.Run("no answer", func(t *testing.T) {
		url := testrelay.Start(t)
		walletKey := NewSecret()
		// a wallet that advertised itself and listens but never answers
		svc := &Service{WalletKey: walletKey, Methods: allMethods}
		info, err := svc.InfoEvent()
		if err != nil {
			t.Fatal(err)
		}
		wallet := relayTransport{testrelay.Dial(t, url)}
		ctx := callCtx(t)
		if err := wallet.Publish(ctx, info); err != nil {
			t.Fatal(err)
		}
		requests, err := wallet.Subscribe(ctx, nostr.Filter{Kinds: []int{KindRequest}, Tags: nostr.TagMap{"p": {walletKey.PubKey()}}})
		if err != nil {
			t.Fatal(err)
		}

		uri := URI{WalletPubKey: walletKey.PubKey(), Relays: []string{url}, Secret: NewSecret()}
		c := NewClient(uri, relayTransport{testrelay.Dial(t, url)})
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		deadline, _ := cctx.Deadline()
		_, err = c.PayInvoice(cctx, "lnbcrt1fake", 0)
		if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, ErrNoResponse) || !strings.Contains(err.Error(), "got no answer") {
			t.Fatalf("err = %v, want no answer, deadline exceeded", err)
		}
		select {
		case req := <-requests:
			exp, _ := tagValue(req, "expiration")
			if want := fmt.Sprint(deadline.Unix() + 1); exp != want && exp != fmt.Sprint(deadline.Unix()) {
				t.Errorf("expiration %s, want the deadline %s", exp, want)
			}
		case <-ctx.Done():
			t.Fatal("the request never reached the wallet")
		}
	})
}

func TestServiceConfig(t *testing.T) {
	ctx := t.Context()
	for _, tc := range []struct {
		name string
		svc  Service
	}{
		{"no transport", Service{WalletKey: NewSecret()}},
		{"no lookup", Service{WalletKey: NewSecret(), Transport: &recorder{}}},
		{"no handle", Service{WalletKey: NewSecret(), Transport: &recorder{}, Lookup: func(context.Context, string) (Connection, bool, error) { return Connection{}, false, nil }}},
		{"bad key", Service{WalletKey: "x", Transport: &recorder{}, Lookup: func(context.Context, string) (Connection, bool, error) { return Connection{}, false, nil },
			Handle: func(context.Context, Connection, string, json.RawMessage) (any, error) { return nil, nil }}},
		{"bad encryption", Service{WalletKey: NewSecret(), Transport: &recorder{}, Encryptions: []string{"nip99"},
			Lookup: func(context.Context, string) (Connection, bool, error) { return Connection{}, false, nil },
			Handle: func(context.Context, Connection, string, json.RawMessage) (any, error) { return nil, nil }}},
	} {
		if err := tc.svc.Serve(ctx); err == nil {
			t.Errorf("%s: Serve accepted it", tc.name)
		} else if strings.Contains(err.Error(), string(tc.svc.WalletKey)) && tc.svc.WalletKey != "x" {
			t.Errorf("%s: error quotes the key: %v", tc.name, err)
		}
	}
}

// Held payments (SlowMethods) do not take the MaxHandling slots: with one client holding all
// its MaxSlowPerClient slots, more than MaxHandling payments wait at once, its next payment is
// RATE_LIMITED, and its other requests and another client's payment are still served.
func TestSlowMethodsDoNotStarve(t *testing.T) {
	started := make(chan string, 4*MaxSlowPerClient)
	release := make(chan struct{})
	second := NewSecret()
	n := startNWC(t, func(n *nwc) {
		n.wallet.started, n.wallet.release = started, release
		n.svc.SlowMethods = []string{MethodPayInvoice}
		known := n.uri.ClientPubKey()
		n.svc.Lookup = func(ctx context.Context, pk string) (Connection, bool, error) {
			return Connection{ClientPubKey: pk, Name: "test app"}, pk == known || pk == second.PubKey(), nil
		}
	})
	ctx := callCtx(t)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer close(release)
	for range MaxSlowPerClient {
		wg.Go(func() {
			if _, err := n.client.PayInvoice(ctx, "lnbcrt1fake", 1); err != nil {
				t.Errorf("held payment: %v", err)
			}
		})
	}
	for i := 0; i < MaxSlowPerClient; {
		select {
		case m := <-started:
			if m == MethodPayInvoice {
				i++
			}
		case <-ctx.Done():
			t.Fatalf("%d of %d payments started", i, MaxSlowPerClient)
		}
	}
	if _, err := n.client.PayInvoice(ctx, "lnbcrt1fake", 1); !errors.Is(err, ErrRateLimited) {
		t.Errorf("payment beyond MaxSlowPerClient: %v, want RATE_LIMITED", err)
	}
	if _, err := n.client.GetBalance(ctx); err != nil {
		t.Errorf("get_balance while payments are held: %v", err)
	}
	other := NewClient(URI{WalletPubKey: n.uri.WalletPubKey, Relays: n.uri.Relays, Secret: second}, n.rec)
	wg.Go(func() {
		if _, err := other.PayInvoice(ctx, "lnbcrt1fake", 1); err != nil {
			t.Errorf("another client's payment: %v", err)
		}
	})
	for {
		select {
		case m := <-started:
			if m == MethodPayInvoice {
				return // the other client's payment is being handled
			}
		case <-ctx.Done():
			t.Fatal("another client's payment was not handled")
		}
	}
}

// A request whose Handle fails because Serve is stopping gets no answer: its outcome is
// unknown (a held payment may yet settle), and an INTERNAL answer would tell the client that
// the payment failed.
func TestStoppingLeavesRequestUnanswered(t *testing.T) {
	started, dropped := make(chan string, 1), make(chan string, 1)
	var published *recorder // what the wallet publishes
	n := startNWC(t, func(n *nwc) {
		published = &recorder{Transport: n.svc.Transport}
		n.svc.Transport = published
		n.wallet.started, n.wallet.release = started, make(chan struct{}) // never released
		n.svc.SlowMethods = []string{MethodPayInvoice}
		n.svc.onDrop = func(evt *nostr.Event, reason string) { dropped <- reason }
	})
	ctx := callCtx(t)
	payCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() { _, _ = n.client.PayInvoice(payCtx, "lnbcrt1fake", 1) }() // never answered
	select {
	case <-started:
	case <-ctx.Done():
		t.Fatal("pay_invoice did not reach Handle")
	}
	n.stop()
	select {
	case reason := <-dropped:
		if reason != "stopping: unanswered" {
			t.Errorf("dropped: %q, want stopping: unanswered", reason)
		}
	default:
		t.Error("the request was not dropped when Serve stopped")
	}
	published.mu.Lock()
	defer published.mu.Unlock()
	for _, evt := range published.published {
		if evt.Kind == KindResponse {
			t.Errorf("answered while stopping: %v", evt)
		}
	}
	if errs := n.errors(); len(errs) != 0 {
		t.Errorf("OnError got %v, want nothing", errs)
	}
}
