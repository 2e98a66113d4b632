package lnd

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sparecycles/sparecycles/nips/nip47"
	"github.com/sparecycles/sparecycles/wallet"
)

// paymentTimeout is how long lnd may look for a route before it gives a payment up.
const paymentTimeout = 60 * time.Second

// Config says how to reach lnd's REST API.
type Config struct {
	RESTURL      string // https://host:port (lnd's --restlisten)
	MacaroonPath string // admin.macaroon, or one baked with invoices, offchain and info rights
	TLSCertPath  string // lnd's tls.cert; the connection trusts exactly this certificate
	// HoldOwnersPath is the file where the backend records which account made each hold
	// invoice, so that it can still be settled or cancelled after a restart. Empty: memory
	// only (a restarted backend refuses to settle earlier hold invoices: NOT_FOUND).
	HoldOwnersPath string
}

// HoldOwnersFile is the name of the hold invoice owners file in the wallet's --data folder.
const HoldOwnersFile = "lnd-hold-invoices.jsonl"

// Backend is a wallet.Backend over one lnd node.
type Backend struct {
	c   *client
	now func() time.Time

	mu       sync.Mutex
	accounts map[string]string // payment hash (hex) → account, for invoices made by this process
	subs     map[*subscriber]struct{}
	closed   bool
	wg       sync.WaitGroup // subscription goroutines and hold invoice watchers

	ownersPath  string              // Config.HoldOwnersPath
	holds       map[string]string   // payment hash (hex) → account, for hold invoices (persisted)
	watching    map[string]struct{} // hold invoices with a watcher, by payment hash (hex)
	watchCtx    context.Context     // ends at Close: stops the watchers
	watchCancel context.CancelFunc
}

var _ wallet.Backend = (*Backend)(nil)

// New connects to lnd and checks that it answers /v1/getinfo with the macaroon. Errors wrap
// ErrCertMismatch when the server presents another certificate and ErrUnauthorized when lnd
// rejects the macaroon.
func New(ctx context.Context, cfg Config) (*Backend, error) {
	c, err := newClient(cfg)
	if err != nil {
		return nil, err
	}
	var info getInfoReply
	if err := c.call(ctx, http.MethodGet, "/v1/getinfo", nil, &info); err != nil {
		c.close()
		return nil, fmt.Errorf("lnd: getinfo from %s: %w", cfg.RESTURL, err)
	}
	watchCtx, watchCancel := context.WithCancel(context.Background())
	b := &Backend{
		c:           c,
		now:         time.Now,
		accounts:    make(map[string]string),
		subs:        make(map[*subscriber]struct{}),
		ownersPath:  cfg.HoldOwnersPath,
		holds:       make(map[string]string),
		watching:    make(map[string]struct{}),
		watchCtx:    watchCtx,
		watchCancel: watchCancel,
	}
	if err := b.loadHolds(ctx); err != nil {
		b.Close()
		return nil, fmt.Errorf("lnd: %w", err)
	}
	return b, nil
}

// Close ends all subscriptions, waits for their goroutines and closes idle connections.
func (b *Backend) Close() error {
	b.mu.Lock()
	b.closed = true
	for s := range b.subs {
		s.cancel()
	}
	b.watchCancel()
	b.mu.Unlock()
	b.wg.Wait()
	b.c.close()
	return nil
}

// Info describes the node. Methods lists the six NIP-47 methods and the three of hold invoices.
func (b *Backend) Info(ctx context.Context) (nip47.GetInfoResult, error) {
	var r getInfoReply
	if err := b.c.call(ctx, http.MethodGet, "/v1/getinfo", nil, &r); err != nil {
		return nip47.GetInfoResult{}, fmt.Errorf("getinfo: %w", err)
	}
	return nip47.GetInfoResult{
		Alias:       r.Alias,
		Color:       r.Color,
		Pubkey:      r.PubKey,
		Network:     r.network(),
		BlockHeight: int64(r.BlockHeight),
		BlockHash:   r.BlockHash,
		Methods: []string{
			nip47.MethodPayInvoice, nip47.MethodMakeInvoice, nip47.MethodLookupInvoice,
			nip47.MethodGetBalance, nip47.MethodGetInfo, nip47.MethodListTransactions,
			nip47.MethodMakeHoldInvoice, nip47.MethodSettleHoldInvoice, nip47.MethodCancelHoldInvoice,
		},
		Notifications: []string{
			nip47.NotificationPaymentReceived, nip47.NotificationPaymentSent,
			nip47.NotificationHoldInvoiceAccepted,
		},
	}, nil
}

// MakeInvoice adds an invoice to lnd and remembers that account made it, so that its
// payment_received notification names account. The memory lasts as long as the process: a
// settlement of an invoice made before a restart is notified with account "".
//
// Errors: OTHER for a bad amount or description hash.
func (b *Backend) MakeInvoice(ctx context.Context, account string, p nip47.MakeInvoiceParams) (nip47.Transaction, error) {
	if p.Amount < 0 {
		return nip47.Transaction{}, nip47.Errorf(nip47.CodeOther, "amount %d msat is negative", p.Amount)
	}
	req := struct {
		ValueMsat       int64  `json:"value_msat,string"`
		Memo            string `json:"memo,omitempty"`
		DescriptionHash []byte `json:"description_hash,omitempty"`
		Expiry          int64  `json:"expiry,string"`
	}{ValueMsat: p.Amount, Memo: p.Description, Expiry: p.Expiry}
	if p.DescriptionHash != "" {
		h, err := hex.DecodeString(p.DescriptionHash)
		if err != nil || len(h) != 32 {
			return nip47.Transaction{}, nip47.Errorf(nip47.CodeOther, "description_hash must be 32 bytes of hex")
		}
		req.DescriptionHash = h
	}
	if req.Expiry <= 0 {
		req.Expiry = int64(wallet.DefaultInvoiceExpiry / time.Second)
	}
	if req.DescriptionHash == nil && len(req.Memo) > maxDescription {
		return nip47.Transaction{}, nip47.Errorf(nip47.CodeOther, "description is longer than %d bytes: send description_hash instead", maxDescription)
	}
	var added addInvoiceReply
	if err := b.c.call(ctx, http.MethodPost, "/v1/invoices", req, &added); err != nil {
		if msg, ok := invoiceRejected(err); ok {
			return nip47.Transaction{}, nip47.Errorf(nip47.CodeOther, "%s", msg)
		}
		return nip47.Transaction{}, fmt.Errorf("add invoice: %w", err)
	}
	hash := hex.EncodeToString(added.RHash)
	if account != "" {
		b.mu.Lock()
		b.accounts[hash] = account
		b.mu.Unlock()
	}

	inv, err := b.lookupInvoice(ctx, hash)
	if err != nil {
		return nip47.Transaction{}, fmt.Errorf("look up new invoice %s: %w", hash, err)
	}
	return inv.incoming(b.now()), nil
}

// maxDescription is the longest description a BOLT11 invoice can carry (its tagged fields
// hold up to 1023 five-bit groups).
const maxDescription = 639

// invoiceRejected reports whether lnd refused to add an invoice because of what was asked
// (too large an amount, too long a memo or expiry), and lnd's reason. lnd gives these as plain
// errors, so they are known by their text.
func invoiceRejected(err error) (string, bool) {
	var e *apiError
	if !errors.As(err, &e) {
		return "", false
	}
	if e.Code == codeInvalidArgument {
		return e.Message, true
	}
	for _, prefix := range []string{"memo too large", "invoice amount", "payments of negative value", "expiry of", "description hash is"} {
		if strings.HasPrefix(e.Message, prefix) {
			return e.Message, true
		}
	}
	return "", false
}

// PayInvoice pays a BOLT11 invoice through lnd's router and waits for the outcome. lnd keys
// payments by hash and refuses a second one while the first is in flight or settled, so a
// repeated call never pays twice: it waits for and returns the first payment's outcome.
// payment_sent is notified only for a payment this call made. If ctx ends first, lnd carries
// on with the payment, and a later call with the same invoice reports how it ended. A payment
// to a hold invoice waits while the recipient holds it (see heldPaymentWait): the answer comes
// with the preimage when it settles, PAYMENT_FAILED when it is cancelled.
//
// Errors: OTHER for an invoice lnd cannot decode or a wrong amount; INSUFFICIENT_BALANCE;
// PAYMENT_FAILED when no route works or the payment fails.
func (b *Backend) PayInvoice(ctx context.Context, account string, p nip47.PayInvoiceParams) (nip47.PayInvoiceResult, error) {
	pr, err := b.decode(ctx, p.Invoice)
	if err != nil {
		return nip47.PayInvoiceResult{}, err
	}
	req := sendRequest{
		PaymentRequest: p.Invoice,
		TimeoutSeconds: int32(paymentTimeout / time.Second),
	}
	amount := int64(pr.NumMsat)
	switch {
	case amount == 0 && p.Amount <= 0:
		return nip47.PayInvoiceResult{}, nip47.Errorf(nip47.CodeOther, "the invoice has no amount: give one")
	case amount == 0:
		req.AmtMsat, amount = p.Amount, p.Amount
	case p.Amount != 0 && p.Amount != amount:
		return nip47.PayInvoiceResult{}, nip47.Errorf(nip47.CodeOther, "amount %d msat differs from the invoice's %d msat", p.Amount, amount)
	}
	req.FeeLimitMsat = feeLimitMsat(amount)

	pay, err := b.send(ctx, req)
	repeat := isCode(err, codeAlreadyExists)
	if repeat {
		// Paid or in flight already: report that payment instead of making another.
		pay, err = b.track(ctx, pr.PaymentHash)
	}
	if err != nil && ctx.Err() != nil {
		// The stream ended because ctx did, whatever lnd said as it went (a failure here
		// would tell the client its money is free while an HTLC of it may be held).
		return nip47.PayInvoiceResult{}, fmt.Errorf("pay %s: outcome unknown: %w (lnd: %v)", pr.PaymentHash, context.Cause(ctx), err)
	}
	if err != nil {
		return nip47.PayInvoiceResult{}, err
	}
	switch pay.Status {
	case "SUCCEEDED":
	case "FAILED":
		return nip47.PayInvoiceResult{}, paymentError(pay.FailureReason)
	default:
		return nip47.PayInvoiceResult{}, fmt.Errorf("pay %s: still %s when lnd's stream ended", pay.PaymentHash, pay.Status)
	}
	tx := pay.outgoing(&pr)
	if !repeat {
		b.notify(wallet.BackendEvent{
			Account:      account,
			Notification: nip47.Notification{Type: nip47.NotificationPaymentSent, Transaction: tx},
		})
	}
	return nip47.PayInvoiceResult{Preimage: tx.Preimage, FeesPaid: tx.FeesPaid}, nil
}

// send starts a payment and reads its stream to the final update.
func (b *Backend) send(ctx context.Context, req sendRequest) (payment, error) {
	pay, err := followPayment(ctx, func(ctx context.Context) (*stream, error) {
		return b.c.openStream(ctx, http.MethodPost, "/v2/router/send", req)
	})
	switch {
	case err == nil:
		return pay, nil
	case isCode(err, codeAlreadyExists):
		return payment{}, err // PayInvoice follows the existing payment instead
	default:
		return payment{}, fmt.Errorf("pay: %w", sendError(err))
	}
}

// track follows an existing payment to its final state.
func (b *Backend) track(ctx context.Context, hash string) (payment, error) {
	raw, err := hex.DecodeString(hash)
	if err != nil {
		return payment{}, fmt.Errorf("track payment: hash %q: %w", hash, err)
	}
	// Bytes in a path are base64; the URL-safe alphabet keeps '/' out of the path.
	path := "/v2/router/track/" + base64.URLEncoding.EncodeToString(raw)
	pay, err := followPayment(ctx, func(ctx context.Context) (*stream, error) {
		return b.c.openStream(ctx, http.MethodGet, path, nil)
	})
	if err != nil {
		return payment{}, fmt.Errorf("track payment %s: %w", hash, err)
	}
	return pay, nil
}

// heldPaymentWait is how long a payment may go without an update once an HTLC of it is in
// flight. The recipient may hold it (a hold invoice, while its job runs) until it settles or
// cancels, and lnd resolves it at the latest near the HTLC's CLTV expiry (hours on mainnet):
// this is only a safety net, far beyond that.
const heldPaymentWait = 48 * time.Hour

// followPayment opens a payment stream (with in-flight updates) and reads it to the final
// update. It gives up after paymentTimeout+requestTimeout while lnd looks for a route; once
// an HTLC is in flight, after heldPaymentWait without an update.
func followPayment(ctx context.Context, open func(context.Context) (*stream, error)) (payment, error) {
	return followPaymentUntil(ctx, open, func(d time.Duration, f func()) deadline { return time.AfterFunc(d, f) })
}

// deadline is the part of *time.Timer that followPaymentUntil uses.
type deadline interface {
	Stop() bool
	Reset(d time.Duration) bool
}

// followPaymentUntil is followPayment with the timer made by startDeadline.
func followPaymentUntil(ctx context.Context, open func(context.Context) (*stream, error), startDeadline func(time.Duration, func()) deadline) (payment, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	deadline := startDeadline(paymentTimeout+requestTimeout, cancel)
	defer deadline.Stop()
	s, err := open(ctx)
	if err != nil {
		return payment{}, err
	}
	defer s.close()
	var last payment
	for {
		var p payment
		err := s.next(&p)
		if errors.Is(err, io.EOF) && last.Status != "" {
			return last, nil
		}
		if err != nil {
			return payment{}, err
		}
		if p.Status == "SUCCEEDED" || p.Status == "FAILED" {
			return p, nil
		}
		if p.inFlight() && deadline.Stop() {
			deadline.Reset(heldPaymentWait)
		}
		last = p
	}
}

// decode asks lnd to decode a BOLT11 invoice, which also checks it is for lnd's network.
//
// Errors: OTHER when lnd cannot decode it.
func (b *Backend) decode(ctx context.Context, bolt11 string) (payReq, error) {
	if bolt11 == "" {
		return payReq{}, nip47.Errorf(nip47.CodeOther, "no invoice")
	}
	var pr payReq
	err := b.c.call(ctx, http.MethodGet, "/v1/payreq/"+url.PathEscape(bolt11), nil, &pr)
	var e *apiError
	if errors.As(err, &e) && !errors.Is(err, ErrUnauthorized) {
		return payReq{}, nip47.Errorf(nip47.CodeOther, "invalid invoice: %s", e.Message)
	}
	if err != nil {
		return payReq{}, fmt.Errorf("decode invoice: %w", err)
	}
	return pr, nil
}

// LookupInvoice finds an invoice of this node, or else a payment it made, by payment hash or
// by invoice.
//
// Errors: NOT_FOUND; OTHER for a malformed hash or invoice.
func (b *Backend) LookupInvoice(ctx context.Context, account string, p nip47.LookupInvoiceParams) (nip47.Transaction, error) {
	hash := p.PaymentHash
	if p.Invoice != "" {
		pr, err := b.decode(ctx, p.Invoice)
		if err != nil {
			return nip47.Transaction{}, err
		}
		if hash != "" && hash != pr.PaymentHash {
			return nip47.Transaction{}, nip47.Errorf(nip47.CodeOther, "payment_hash does not match the invoice")
		}
		hash = pr.PaymentHash
	}
	if raw, err := hex.DecodeString(hash); err != nil || len(raw) != 32 {
		return nip47.Transaction{}, nip47.Errorf(nip47.CodeOther, "payment_hash must be 32 bytes of hex")
	}
	inv, err := b.lookupInvoice(ctx, hash)
	if err == nil {
		return inv.incoming(b.now()), nil
	}
	if !invoiceNotFound(err) {
		return nip47.Transaction{}, fmt.Errorf("look up invoice %s: %w", hash, err)
	}
	pay, found, err := b.findPayment(ctx, hash)
	if err != nil {
		return nip47.Transaction{}, err
	}
	if !found {
		return nip47.Transaction{}, nip47.Errorf(nip47.CodeNotFound, "no invoice or payment with hash %s", hash)
	}
	return pay.outgoing(b.decodeQuietly(ctx, pay.PaymentRequest)), nil
}

// invoiceNotFound reports whether lnd says it has no invoice for the hash: NotFound, or, on a
// node that has made no invoices at all, a plain error.
func invoiceNotFound(err error) bool {
	var e *apiError
	return errors.As(err, &e) && (e.Code == codeNotFound || strings.Contains(e.Message, "no existing invoices"))
}

func (b *Backend) lookupInvoice(ctx context.Context, hash string) (invoice, error) {
	var inv invoice
	err := b.c.call(ctx, http.MethodGet, "/v1/invoice/"+hash, nil, &inv)
	return inv, err
}

// decodeQuietly decodes an invoice for its description, or returns nil: a payment is worth
// reporting without one.
func (b *Backend) decodeQuietly(ctx context.Context, bolt11 string) *payReq {
	if bolt11 == "" {
		return nil
	}
	pr, err := b.decode(ctx, bolt11)
	if err != nil {
		return nil
	}
	return &pr
}

// paymentsPage is how many payments or invoices one list call asks lnd for.
const paymentsPage = 500

// findPayment scans this node's payments, newest first, for one with hash. lnd offers no
// lookup of a single payment that returns without waiting for an in-flight one.
func (b *Backend) findPayment(ctx context.Context, hash string) (payment, bool, error) {
	offset := int64(0)
	for {
		page, next, err := b.listPayments(ctx, listQuery{offset: offset, incomplete: true})
		if err != nil {
			return payment{}, false, err
		}
		for _, p := range page {
			if p.PaymentHash == hash {
				return p, true, nil
			}
		}
		if len(page) == 0 || next <= 0 || (offset != 0 && next >= offset) {
			return payment{}, false, nil
		}
		offset = next
	}
}

// listQuery is one page request, newest first, going back from offset (0: the newest).
type listQuery struct {
	offset      int64
	incomplete  bool
	from, until int64 // creation time bounds, inclusive; 0 for none
}

func (q listQuery) values(limitKey string) url.Values {
	v := url.Values{}
	v.Set("reversed", "true")
	v.Set(limitKey, strconv.Itoa(paymentsPage))
	if q.offset > 0 {
		v.Set("index_offset", strconv.FormatInt(q.offset, 10))
	}
	if q.from > 0 {
		v.Set("creation_date_start", strconv.FormatInt(q.from, 10))
	}
	if q.until > 0 {
		v.Set("creation_date_end", strconv.FormatInt(q.until, 10))
	}
	return v
}

// listPayments returns one page of payments, newest first, and the offset of the next page.
func (b *Backend) listPayments(ctx context.Context, q listQuery) ([]payment, int64, error) {
	v := q.values("max_payments")
	v.Set("include_incomplete", strconv.FormatBool(q.incomplete))
	var r listPaymentsReply
	if err := b.c.call(ctx, http.MethodGet, "/v1/payments?"+v.Encode(), nil, &r); err != nil {
		return nil, 0, fmt.Errorf("list payments: %w", err)
	}
	ps := r.Payments
	for i, j := 0, len(ps)-1; i < j; i, j = i+1, j-1 {
		ps[i], ps[j] = ps[j], ps[i]
	}
	return ps, int64(r.FirstIndexOffset), nil
}

// listInvoices returns one page of invoices, newest first, and the offset of the next page.
func (b *Backend) listInvoices(ctx context.Context, q listQuery) ([]invoice, int64, error) {
	var r listInvoicesReply
	if err := b.c.call(ctx, http.MethodGet, "/v1/invoices?"+q.values("num_max_invoices").Encode(), nil, &r); err != nil {
		return nil, 0, fmt.Errorf("list invoices: %w", err)
	}
	in := r.Invoices
	for i, j := 0, len(in)-1; i < j; i, j = i+1, j-1 {
		in[i], in[j] = in[j], in[i]
	}
	return in, int64(r.FirstIndexOffset), nil
}

// Balance is the node's spendable balance in its channels, in msats. lnd has one balance for
// all accounts.
func (b *Backend) Balance(ctx context.Context, account string) (int64, error) {
	var r channelBalanceReply
	if err := b.c.call(ctx, http.MethodGet, "/v1/balance/channels", nil, &r); err != nil {
		return 0, fmt.Errorf("channel balance: %w", err)
	}
	return int64(r.LocalBalance.Msat), nil
}

// Open opens the lnd backend a wallet.Config names (--lnd-rest, --lnd-macaroon,
// --lnd-tlscert): the value of wallet.Config.OpenLND.
func Open(ctx context.Context, cfg wallet.Config) (wallet.Backend, error) {
	b, err := New(ctx, Config{
		RESTURL:        cfg.LNDRest,
		MacaroonPath:   cfg.LNDMacaroon,
		TLSCertPath:    cfg.LNDTLSCert,
		HoldOwnersPath: filepath.Join(cfg.Data, HoldOwnersFile),
	})
	if err != nil {
		return nil, err // not b: a nil *Backend is a non-nil wallet.Backend
	}
	return b, nil
}
