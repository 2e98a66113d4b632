// Package rawnwc is a NIP-47 (Nostr Wallet Connect) client for tests, written as a third
// party would, from the spec: go-nostr events, go-nostr's NIP-44 and a plain go-nostr websocket
// connection, none of our nips/nip47 code. Tests drive `wallet serve` with it, whatever the
// backend, so that our client and our service cannot agree on a mistake.
package rawnwc

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

func dialRelay(t testing.TB, url string) *rawRelay {
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

// Client is a NWC client written as a third party would, from the spec: go-nostr events,
// go-nostr's NIP-44 and a plain go-nostr websocket connection, none of our nips/nip47 client.
type Client struct {
	t      testing.TB
	relay  *rawRelay
	sk, pk string
	wallet string
	key    [32]byte // NIP-44 conversation key with the wallet
}

// Response is a decoded kind 23195 event.
type Response struct {
	ResultType string `json:"result_type"`
	Error      *struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
	Result json.RawMessage `json:"result"`
}

// Dial reads a connection string (nostr+walletconnect://<wallet>?relay=...&secret=...)
// and connects to its first relay.
func Dial(t testing.TB, connection string) *Client {
	t.Helper()
	u, err := url.Parse(connection)
	if err != nil {
		t.Fatal(err)
	}
	c := &Client{t: t, sk: u.Query().Get("secret"), wallet: u.Host}
	if c.pk, err = nostr.GetPublicKey(c.sk); err != nil {
		t.Fatal(err)
	}
	if c.key, err = nip44.GenerateConversationKey(c.wallet, c.sk); err != nil {
		t.Fatal(err)
	}
	c.relay = dialRelay(t, u.Query().Get("relay"))
	return c
}

// Send publishes a request (with an "expiration" tag unless expiration is 0) and returns where
// its one answer arrives.
func (c *Client) Send(ctx context.Context, method string, params any, expiration int64) <-chan Response {
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
	out := make(chan Response, 1)
	go func() {
		for {
			select {
			case evt := <-events:
				plain, err := nip44.Decrypt(evt.Content, c.key)
				var r Response
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

// Call sends a request and waits for its answer.
func (c *Client) Call(ctx context.Context, method string, params any) Response {
	c.t.Helper()
	return Answer(ctx, c.t, c.Send(ctx, method, params, 0))
}

// Answer waits for the answer on ch until ctx ends.
func Answer(ctx context.Context, t testing.TB, ch <-chan Response) Response {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-ctx.Done():
		t.Fatal("no answer")
	}
	panic("unreachable")
}

// Notification is a decoded kind 23197 event.
type Notification struct {
	Type        string `json:"notification_type"`
	Transaction struct {
		State          string `json:"state"`
		PaymentHash    string `json:"payment_hash"`
		Amount         int64  `json:"amount"`
		SettleDeadline int64  `json:"settle_deadline"`
	} `json:"notification"`
}

// Notifications subscribes to the client's NIP-44 notifications.
func (c *Client) Notifications(ctx context.Context) <-chan Notification {
	c.t.Helper()
	events, err := c.relay.subscribe(ctx, nostr.Filter{Kinds: []int{23197}, Authors: []string{c.wallet}, Tags: nostr.TagMap{"p": {c.pk}}})
	if err != nil {
		c.t.Fatal(err)
	}
	out := make(chan Notification, 16)
	go func() {
		for {
			select {
			case evt := <-events:
				plain, err := nip44.Decrypt(evt.Content, c.key)
				var n Notification
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

// Want checks an answer: an error with code, or (code "") a result, decoded into into.
func (r Response) Want(t testing.TB, what, code string, into any) {
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

// Balance is get_balance's balance, in msat.
func (c *Client) Balance(ctx context.Context) int64 {
	c.t.Helper()
	var b struct {
		Balance int64 `json:"balance"`
	}
	c.Call(ctx, "get_balance", map[string]any{}).Want(c.t, "get_balance", "", &b)
	return b.Balance
}

// PubKey is the client's public key (the connection's in the wallet's store).
func (c *Client) PubKey() string { return c.pk }

// AwaitBalance polls get_balance until it is want, for at most within: lnd updates a
// channel's balance a moment after a payment resolves.
func (c *Client) AwaitBalance(ctx context.Context, what string, want int64, within time.Duration) {
	c.t.Helper()
	deadline := time.Now().Add(within)
	for {
		got := c.Balance(ctx)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("%s: balance %d msat, want %d (waited %s)", what, got, want, within)
		}
		select {
		case <-ctx.Done():
			c.t.Fatalf("%s: %v", what, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// NewPreimage is a random preimage and its payment hash, both hex.
func NewPreimage(t testing.TB) (preimage, hash string) {
	t.Helper()
	var p [32]byte
	if _, err := rand.Read(p[:]); err != nil {
		t.Fatal(err)
	}
	h := sha256.Sum256(p[:])
	return hex.EncodeToString(p[:]), hex.EncodeToString(h[:])
}

// HoldInvoice is the result of make_hold_invoice or lookup_invoice.
type HoldInvoice struct {
	Invoice     string `json:"invoice"`
	PaymentHash string `json:"payment_hash"`
	State       string `json:"state"`
}

// MakeHoldInvoice asks for a hold invoice of msat for hash, whose HTLCs must expire at least
// cltvDelta blocks out, and fails the test unless one comes back.
func (c *Client) MakeHoldInvoice(ctx context.Context, hash string, msat, cltvDelta int64) HoldInvoice {
	c.t.Helper()
	var inv HoldInvoice
	c.Call(ctx, "make_hold_invoice", map[string]any{"amount": msat, "description": "job", "payment_hash": hash, "min_cltv_expiry_delta": cltvDelta}).
		Want(c.t, "make_hold_invoice", "", &inv)
	if inv.PaymentHash != hash || inv.Invoice == "" {
		c.t.Fatalf("make_hold_invoice: %+v, want an invoice for %s", inv, hash)
	}
	return inv
}

// AwaitHoldAccepted waits for the hold_invoice_accepted notification of hash, skipping other
// notifications, and checks it: state accepted, amount msat and a settle_deadline.
func AwaitHoldAccepted(ctx context.Context, t testing.TB, notes <-chan Notification, hash string, msat int64) Notification {
	t.Helper()
	for {
		var n Notification
		select {
		case n = <-notes:
		case <-ctx.Done():
			t.Fatalf("no hold_invoice_accepted for %s", hash)
		}
		if n.Type != "hold_invoice_accepted" {
			continue
		}
		if tx := n.Transaction; tx.PaymentHash != hash || tx.State != "accepted" || tx.Amount != msat || tx.SettleDeadline <= 0 {
			t.Fatalf("hold_invoice_accepted %+v, want %s accepted for %d msat with a settle_deadline", n, hash, msat)
		}
		return n
	}
}
