package nip47

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nbd-wtf/go-nostr"
)

// DefaultTimeout bounds a call whose context has no deadline: the request expires then and
// the Client stops waiting for its answer.
const DefaultTimeout = 60 * time.Second

// Errors of the Client besides *Error and ErrBadResponse.
var (
	// ErrNoResponse means the wallet did not answer before the context ended: it may be down,
	// or on none of the URI's relays. The error also wraps the context's error, so
	// errors.Is(err, context.DeadlineExceeded) holds after a timeout.
	ErrNoResponse = errors.New("nip47: no response from wallet")
	// ErrSubscriptionEnded means the Transport closed a subscription before its context ended.
	ErrSubscriptionEnded = errors.New("nip47: subscription ended")
)

// Client talks to one wallet. Safe for concurrent use.
type Client struct {
	uri URI
	t   Transport
	pub string // our pubkey; "" when the URI's secret is invalid

	mu   sync.Mutex
	info *Info // cached after the first success
}

// NewClient returns a Client for the wallet of uri, reached through t.
func NewClient(uri URI, t Transport) *Client {
	return &Client{uri: uri, t: t, pub: uri.ClientPubKey()}
}

// Info returns what the wallet's kind 13194 event advertises, fetched from the relays on the
// first call and cached after it succeeds. It waits for the event until ctx ends; errors wrap
// ErrNoResponse (and ctx's error) when none arrived, or ErrSubscriptionEnded.
func (c *Client) Info(ctx context.Context) (Info, error) {
	c.mu.Lock()
	cached := c.info
	c.mu.Unlock()
	if cached != nil {
		return *cached, nil
	}
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	events, err := c.t.Subscribe(sctx, nostr.Filter{
		Kinds: []int{KindInfo}, Authors: []string{c.uri.WalletPubKey}, Limit: 1,
	})
	if err != nil {
		return Info{}, fmt.Errorf("nwc info: subscribe: %w", err)
	}
	for {
		select {
		case evt, open := <-events:
			if !open {
				return Info{}, c.ended(ctx, "no info event")
			}
			if !c.fromWallet(evt, KindInfo) {
				continue
			}
			info, err := ParseInfo(evt)
			if err != nil {
				continue
			}
			c.mu.Lock()
			c.info = &info
			c.mu.Unlock()
			return info, nil
		case <-ctx.Done():
			return Info{}, c.ended(ctx, "no info event")
		}
	}
}

// ended explains why waiting for the wallet stopped.
func (c *Client) ended(ctx context.Context, what string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%w %s: %s (the wallet may be down): %w", ErrNoResponse, c.uri.WalletPubKey, what, err)
	}
	return fmt.Errorf("%w before a response from wallet %s", ErrSubscriptionEnded, c.uri.WalletPubKey)
}

// fromWallet reports whether evt is a verified event of kind by the wallet.
func (c *Client) fromWallet(evt *nostr.Event, kind int) bool {
	return evt != nil && evt.Kind == kind && evt.PubKey == c.uri.WalletPubKey && verified(evt)
}

// Call sends a request for method with params (nil for none) and decodes the result into
// result (a pointer, or nil to ignore it). It encrypts with NIP-44 v2 when the wallet's info
// event lists nip44_v2, else with NIP-04. The request expires at ctx's deadline, or after
// DefaultTimeout when ctx has none, and Call waits for the answer until then.
//
// A wallet's error comes back as the *Error itself, so errors.Is(err, ErrPaymentFailed) and
// the like work. No answer in time wraps ErrNoResponse and context.DeadlineExceeded; an
// answer that cannot be read or is for another method wraps ErrBadResponse; a wallet that
// offers no encryption we speak wraps ErrUnsupportedEncryption.
func (c *Client) Call(ctx context.Context, method string, params, result any) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultTimeout)
		defer cancel()
	}
	deadline, _ := ctx.Deadline()
	if c.pub == "" {
		return fmt.Errorf("nwc %s: %w", method, ErrBadSecret)
	}
	info, err := c.Info(ctx)
	if err != nil {
		return fmt.Errorf("nwc %s: %w", method, err)
	}
	scheme := info.encryption()
	if scheme == "" {
		return fmt.Errorf("nwc %s: wallet offers %q: %w", method, info.Encryptions, ErrUnsupportedEncryption)
	}
	req, err := c.request(method, params, scheme, deadline)
	if err != nil {
		return fmt.Errorf("nwc %s: %w", method, err)
	}

	// subscribe before publishing: responses are ephemeral, one sent before we listen is lost
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	events, err := c.t.Subscribe(sctx, nostr.Filter{
		Kinds: []int{KindResponse}, Authors: []string{c.uri.WalletPubKey},
		Tags: nostr.TagMap{"e": []string{req.ID}},
	})
	if err != nil {
		return fmt.Errorf("nwc %s: subscribe: %w", method, err)
	}
	if err := c.t.Publish(ctx, req); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("nwc %s: %w", method, c.ended(ctx, "request "+req.ID+" not sent"))
		}
		return fmt.Errorf("nwc %s: send request %s: %w", method, req.ID, err)
	}
	for {
		select {
		case evt, open := <-events:
			if !open {
				return fmt.Errorf("nwc %s: %w", method, c.ended(ctx, "request "+req.ID+" got no answer"))
			}
			if !c.fromWallet(evt, KindResponse) || evt.Tags.FindWithValue("e", req.ID) == nil {
				continue
			}
			content, err := decrypt(scheme, c.uri.Secret.Hex(), c.uri.WalletPubKey, evt.Content)
			if err != nil {
				continue // not for us to read; the real answer may still come
			}
			err = decodeResponse(content, method, result)
			var werr *Error
			if err != nil && !errors.As(err, &werr) {
				return fmt.Errorf("nwc %s: %w", method, err)
			}
			return err
		case <-ctx.Done():
			return fmt.Errorf("nwc %s: %w", method, c.ended(ctx, "request "+req.ID+" got no answer"))
		}
	}
}

// request builds and signs a request event: encrypted content and the "p", "encryption" and
// "expiration" tags.
func (c *Client) request(method string, params any, scheme string, expires time.Time) (nostr.Event, error) {
	content, err := encodeRequest(method, params)
	if err != nil {
		return nostr.Event{}, err
	}
	ct, err := encrypt(scheme, c.uri.Secret.Hex(), c.uri.WalletPubKey, content)
	if err != nil {
		return nostr.Event{}, err
	}
	exp := expires.Unix()
	if expires.Nanosecond() > 0 {
		exp++ // round up: never expire before the caller gives up
	}
	evt := nostr.Event{
		Kind:      KindRequest,
		CreatedAt: nostr.Now(),
		Tags: nostr.Tags{
			{"p", c.uri.WalletPubKey},
			{"encryption", scheme},
			{"expiration", strconv.FormatInt(exp, 10)},
		},
		Content: ct,
	}
	if err := sign(&evt, c.uri.Secret.Hex()); err != nil {
		return nostr.Event{}, err
	}
	return evt, nil
}

// PayInvoice pays a BOLT11 invoice; amountMsat is for invoices without an amount (0 otherwise).
// Wallet errors include ErrPaymentFailed, ErrInsufficientBalance, ErrQuotaExceeded,
// ErrRestricted and ErrRateLimited.
func (c *Client) PayInvoice(ctx context.Context, invoice string, amountMsat int64) (PayInvoiceResult, error) {
	var res PayInvoiceResult
	err := c.Call(ctx, MethodPayInvoice, PayInvoiceParams{Invoice: invoice, Amount: amountMsat}, &res)
	return res, err
}

// MakeInvoice asks the wallet for an invoice.
func (c *Client) MakeInvoice(ctx context.Context, p MakeInvoiceParams) (Transaction, error) {
	var res Transaction
	err := c.Call(ctx, MethodMakeInvoice, p, &res)
	return res, err
}

// MakeHoldInvoice asks the wallet for a hold invoice for p.PaymentHash: a payment to it is
// held (lookup_invoice state "accepted", a hold_invoice_accepted notification) until
// SettleHoldInvoice or CancelHoldInvoice.
func (c *Client) MakeHoldInvoice(ctx context.Context, p MakeHoldInvoiceParams) (Transaction, error) {
	var tx Transaction
	err := c.Call(ctx, MethodMakeHoldInvoice, p, &tx)
	return tx, err
}

// SettleHoldInvoice settles the held payment whose hash is sha256(preimage): the funds become
// the wallet's and the payer learns the preimage.
func (c *Client) SettleHoldInvoice(ctx context.Context, preimage string) error {
	return c.Call(ctx, MethodSettleHoldInvoice, SettleHoldInvoiceParams{Preimage: preimage}, nil)
}

// CancelHoldInvoice cancels a hold invoice: a held payment returns to its payer at once and
// the invoice can no longer be paid.
func (c *Client) CancelHoldInvoice(ctx context.Context, paymentHash string) error {
	return c.Call(ctx, MethodCancelHoldInvoice, CancelHoldInvoiceParams{PaymentHash: paymentHash}, nil)
}

// LookupInvoice looks an invoice or payment up by payment hash or invoice. Wallet errors
// include ErrNotFound.
func (c *Client) LookupInvoice(ctx context.Context, p LookupInvoiceParams) (Transaction, error) {
	var res Transaction
	err := c.Call(ctx, MethodLookupInvoice, p, &res)
	return res, err
}

// GetBalance returns the wallet's balance in msats.
func (c *Client) GetBalance(ctx context.Context) (int64, error) {
	var res GetBalanceResult
	err := c.Call(ctx, MethodGetBalance, nil, &res)
	return res.Balance, err
}

// GetInfo returns the wallet node's description and this connection's methods.
func (c *Client) GetInfo(ctx context.Context) (GetInfoResult, error) {
	var res GetInfoResult
	err := c.Call(ctx, MethodGetInfo, nil, &res)
	return res, err
}

// ListTransactions lists invoices and payments, newest first.
func (c *Client) ListTransactions(ctx context.Context, p ListTransactionsParams) ([]Transaction, error) {
	var res ListTransactionsResult
	err := c.Call(ctx, MethodListTransactions, p, &res)
	return res.Transactions, err
}

// Notifications subscribes to the wallet's notifications to us and delivers them decrypted
// until ctx ends; then the channel closes. It reads kind 23197 (NIP-44 v2) when the wallet's
// info event lists nip44_v2, else kind 23196 (NIP-04), so each notification arrives once.
// Errors are Info's and the Transport's.
func (c *Client) Notifications(ctx context.Context) (<-chan Notification, error) {
	if c.pub == "" {
		return nil, fmt.Errorf("nwc notifications: %w", ErrBadSecret)
	}
	info, err := c.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("nwc notifications: %w", err)
	}
	kind, scheme := KindNotification04, EncryptionNIP04
	if slices.Contains(info.Encryptions, EncryptionNIP44) {
		kind, scheme = KindNotification, EncryptionNIP44
	}
	events, err := c.t.Subscribe(ctx, nostr.Filter{
		Kinds: []int{kind}, Authors: []string{c.uri.WalletPubKey}, Tags: nostr.TagMap{"p": []string{c.pub}},
	})
	if err != nil {
		return nil, fmt.Errorf("nwc notifications: subscribe: %w", err)
	}
	out := make(chan Notification)
	go func() { // ends when ctx does: the Transport closes events then
		defer close(out)
		var recent recentIDs // the same event from several relays is delivered once
		for evt := range events {
			if !c.fromWallet(evt, kind) || evt.Tags.FindWithValue("p", c.pub) == nil || !recent.add(evt.ID) {
				continue
			}
			content, err := decrypt(scheme, c.uri.Secret.Hex(), c.uri.WalletPubKey, evt.Content)
			if err != nil {
				continue
			}
			var n Notification
			if json.Unmarshal([]byte(content), &n) != nil || strings.TrimSpace(n.Type) == "" {
				continue
			}
			select {
			case out <- n:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out, nil
}

// recentIDs remembers the last few event ids seen.
type recentIDs struct {
	ids  [64]string
	next int
}

// add reports whether id is new, remembering it.
func (r *recentIDs) add(id string) bool {
	if slices.Contains(r.ids[:], id) {
		return false
	}
	r.ids[r.next] = id
	r.next = (r.next + 1) % len(r.ids)
	return true
}
