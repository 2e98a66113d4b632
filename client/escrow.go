package client

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/nbd-wtf/go-nostr"

	"github.com/sparecycles/sparecycles/nips/escrow"
	"github.com/sparecycles/sparecycles/nips/nip90"
)

// PayBy is how the customer pays: what its request asks for (the ["payment", ...] tag) and
// which quotes it accepts.
type PayBy string

// Ways to pay.
const (
	// PayByAny prefers escrow quotes and accepts plain quotes (prepay) and post-pay offers.
	PayByAny PayBy = "any"
	// PayByEscrow accepts escrow quotes only (nips/escrow): the funds are locked, not paid,
	// until the worker hands over the key to its result.
	PayByEscrow PayBy = "escrow"
	// PayByPrepay is plain NIP-90: no "payment" tag; plain quotes and post-pay offers.
	PayByPrepay PayBy = "prepay"
)

// Schemes an Outcome names: escrow.SchemeEscrow, escrow.SchemePrepay, escrow.SchemeAfter, or
// SchemeFree for a result nobody was paid for.
const SchemeFree = "free"

// ErrUnreadable means the worker was paid (the escrow settled) for a result the preimage does
// not open. An honest worker never causes it; the payment's preimage is the proof.
var ErrUnreadable = errors.New("client: paid for a result that cannot be opened")

// escrowMargin is how much longer than a quote's settle window the client waits for the
// wallet to answer an escrow payment: relay and wallet round trips.
const escrowMargin = 30 * time.Second

// failureGrace bounds the wait for the worker's error feedback after an escrow payment failed
// without one: the worker publishes it around the time it cancels.
const failureGrace = 5 * time.Second

// ParsePayBy reads --pay: "any" (or ""), "escrow" or "prepay".
func ParsePayBy(s string) (PayBy, error) {
	switch p := PayBy(strings.ToLower(strings.TrimSpace(s))); p {
	case "", PayByAny:
		return PayByAny, nil
	case PayByEscrow, PayByPrepay:
		return p, nil
	}
	return "", fmt.Errorf("%q is not a way to pay: want any, escrow or prepay", s)
}

// Tag is the request's ["payment", <scheme>...] tag, in order of preference; nil for prepay
// (a plain NIP-90 request).
func (p PayBy) Tag() nostr.Tag {
	switch p {
	case PayByEscrow:
		return escrow.PaymentSchemesTag(escrow.SchemeEscrow)
	case PayByPrepay:
		return nil
	}
	return escrow.PaymentSchemesTag(escrow.SchemeEscrow, escrow.SchemePrepay, escrow.SchemeAfter)
}

// RequestEvent is the unsigned event of req as a customer paying by p posts it: req's tags and
// p's payment tag. (A private req, Encrypted, is posted as PrivateRequestEvent builds it: this
// one would carry its inputs in the clear.)
func RequestEvent(req nip90.JobRequest, p PayBy) nostr.Event {
	evt := req.Event()
	if t := p.Tag(); t != nil {
		evt.Tags = append(evt.Tags, t)
	}
	return evt
}

// checkEscrow refuses an escrow quote whose invoice is not for the payment hash its escrow tag
// names: settling would then not hand over the key to the result.
func checkEscrow(q Quote, invoiceHash string) error {
	if q.Escrow == nil {
		return nil
	}
	if invoiceHash != q.Escrow.PaymentHash {
		return fmt.Errorf("%w: the invoice's payment hash %s is not the escrow tag's %s", escrow.ErrBadTag, invoiceHash, q.Escrow.PaymentHash)
	}
	return nil
}

// openResult opens the chosen worker's result with the payment's preimage: a sealed result
// must name the payment's hash and open under the preimage; a plain result (the worker did not
// seal it) is read as it is.
func openResult(preimage, paymentHash, jobID string, res *nostr.Event) (string, error) {
	p, err := escrow.ParsePreimage(preimage)
	if err != nil {
		return "", err
	}
	if p.Hash() != paymentHash {
		return "", fmt.Errorf("the preimage is not for payment hash %s", paymentHash)
	}
	hash, sealed, err := escrow.ParseResult(res.Tags)
	switch {
	case err != nil:
		return "", err
	case !sealed:
		return res.Content, nil
	case hash != paymentHash:
		return "", fmt.Errorf("the result is sealed for payment hash %s, the payment's is %s", hash, paymentHash)
	}
	text, err := escrow.OpenContent(p, jobID, res.Content)
	if err != nil {
		return "", err
	}
	return string(text), nil
}

// sealedFor reports whether res is sealed for paymentHash.
func sealedFor(res *nostr.Event, paymentHash string) bool {
	h, ok, err := escrow.ParseResult(res.Tags)
	return ok && err == nil && h == paymentHash
}

// payResult is what an escrow payment's goroutine hands back.
type payResult struct {
	p   Payment
	err error
}

// held is an escrow payment in flight: pay_invoice answers only once the worker settles
// (after it published the result) or cancels.
type held struct {
	quote    Quote
	hash     string         // the payment hash
	done     chan payResult // the payment's answer, once
	result   *nostr.Event   // the chosen worker's result, kept until the preimage opens it
	locked   bool           // the worker said it is processing: the funds are locked
	failInfo string         // the worker's error feedback
	paid     *Payment       // the payment, once settled
	failed   error          // the payment's error, once it failed
}

// startEscrow pays q in a goroutine (wg tracks it) and returns at once: the wallet answers
// when the worker settles or cancels, within the quote's settle window (plus a margin, bounded
// by ctx).
func (c *Client) startEscrow(ctx context.Context, q Quote, wg *sync.WaitGroup) *held {
	h := &held{quote: q, hash: q.Escrow.PaymentHash, done: make(chan payResult, 1)}
	wg.Go(func() {
		pctx, cancel := context.WithTimeout(ctx, q.Escrow.SettleWindow+escrowMargin)
		defer cancel()
		p, err := c.Pay(pctx, q)
		h.done <- payResult{p, err}
	})
	return h
}

// keep holds a result of the chosen worker: one sealed for the payment wins over one that is
// not.
func (h *held) keep(res *nostr.Event) {
	if h.result == nil || sealedFor(res, h.hash) || !sealedFor(h.result, h.hash) {
		h.result = res
	}
}

// open opens the held result with the settled payment's preimage; the error names the job, the
// worker, the result and the payment when it cannot be opened.
func (h *held) open(jobID string) (string, error) {
	text, err := openResult(h.paid.Preimage, h.hash, jobID, h.result)
	if err != nil {
		return "", fmt.Errorf("job %s: %w: worker %s was paid (payment hash %s, preimage %s) for result %s: %v",
			jobID, ErrUnreadable, h.quote.Worker, h.hash, h.paid.Preimage, h.result.ID, err)
	}
	return text, nil
}

// refunded is the error of an escrow job whose payment came back.
func (h *held) refunded(jobID string) error {
	info := h.failInfo
	if info == "" {
		info = "the worker cancelled the payment without saying why"
	}
	return fmt.Errorf("job %s: %w: %s (the locked payment was refunded)", jobID, ErrJobFailed, info)
}
