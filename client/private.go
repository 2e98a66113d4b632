package client

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nbd-wtf/go-nostr"

	"github.com/sparecycles/sparecycles/nips/escrow"
	"github.com/sparecycles/sparecycles/nips/nip89"
	"github.com/sparecycles/sparecycles/nips/nip90"
)

// Private jobs: a request with Encrypted set and one worker in Providers is posted as a
// NIP-90 encrypted request (nip90.EncryptRequest: its inputs and params encrypted to that
// worker with NIP-44 v2, the other tags in the clear). Do reveals what that worker sends back
// (feedback info, partial and result content; an escrow result is then opened as usual), and
// pays only that worker, as for any request naming one worker alone.

// ErrNoPrivateWorker means no live worker was found to encrypt a private job to.
var ErrNoPrivateWorker = errors.New("client: no live worker for a private job")

// PrivateRequestEvent is the unsigned event of a private req (Encrypted, one provider) as a
// customer with secretKey paying by p posts it: encrypted to the provider, with p's payment
// tag in the clear. The same req gives the same event, so its id is known before posting.
func PrivateRequestEvent(req nip90.JobRequest, p PayBy, secretKey string) (nostr.Event, error) {
	if len(req.Providers) != 1 {
		return nostr.Event{}, fmt.Errorf("a private job names exactly one worker, not %d", len(req.Providers))
	}
	c, err := nip90.NewCipher(secretKey, req.Providers[0])
	if err != nil {
		return nostr.Event{}, fmt.Errorf("private job: %w", err)
	}
	evt, err := nip90.EncryptRequest(&req, c)
	if err != nil {
		return nostr.Event{}, fmt.Errorf("private job: %w", err)
	}
	if t := p.Tag(); t != nil {
		evt.Tags = append(evt.Tags, t)
	}
	return evt, nil
}

// requestEvent is RequestEvent, or PrivateRequestEvent for a private req.
func (c *Client) requestEvent(req nip90.JobRequest) (nostr.Event, error) {
	if req.Encrypted {
		return PrivateRequestEvent(req, c.cfg.Pay, c.cfg.SecretKey)
	}
	return RequestEvent(req, c.cfg.Pay), nil
}

// reveal decrypts an encrypted feedback or result event for this customer with the key it
// shares with the event's author (nip90.RevealResponse). An event in the clear comes back as
// it is; one that does not decrypt is nil: it cannot be read, so it is not taken into account.
func (c *Client) reveal(evt *nostr.Event) *nostr.Event {
	if !nip90.IsEncrypted(evt) || (evt.Kind != nip90.KindFeedback && !nip90.IsResultKind(evt.Kind)) {
		return evt
	}
	cipher, err := nip90.NewCipher(c.cfg.SecretKey, evt.PubKey)
	if err == nil {
		var clear *nostr.Event
		if clear, err = nip90.RevealResponse(evt, cipher); err == nil {
			return clear
		}
	}
	c.log.Debug().Str("event", evt.ID).Str("author", evt.PubKey).Err(err).Msg("encrypted event does not decrypt: ignored")
	return nil
}

// PrivateWorker picks the worker to encrypt a private job of kind to: among the workers
// announced within LiveFor for the kind (not this customer) whose price for it is within bid
// (no bid: free workers only), one that offers escrow for it first (unless Config.Pay is
// prepay; PayByEscrow takes only those), then the cheapest, then the newest announcement.
// Errors: ErrNoPrivateWorker, saying what was found, and those of Workers.
func (c *Client) PrivateWorker(ctx context.Context, kind int, bidMsat int64) (string, error) {
	hs, err := Workers(ctx, c.cfg.Relays, kind, c.log)
	if err != nil {
		return "", err
	}
	since := nostr.Timestamp(time.Now().Add(-LiveFor).Unix())
	type offer struct {
		pubkey string
		escrow bool
		price  int64
	}
	var offers []offer
	live := 0
	for _, h := range hs { // newest first
		if h.CreatedAt < since || h.PubKey == c.pubkey || !slices.Contains(h.Kinds, kind) {
			continue
		}
		live++
		price, hasEscrow, ok := kindOffer(h, kind)
		switch {
		case !ok, price > bidMsat:
			continue
		case c.cfg.Pay == PayByEscrow && !hasEscrow:
			continue
		}
		offers = append(offers, offer{h.PubKey, hasEscrow && c.cfg.Pay != PayByPrepay, price})
	}
	if len(offers) == 0 {
		if live == 0 {
			return "", fmt.Errorf("%w: no worker announced kind %d on %v within %v", ErrNoPrivateWorker, kind, c.cfg.Relays, LiveFor)
		}
		return "", fmt.Errorf("%w: %d live workers serve kind %d, none within the bid of %d msat (no bid: free workers only)%s",
			ErrNoPrivateWorker, live, kind, bidMsat, map[bool]string{true: " by escrow", false: ""}[c.cfg.Pay == PayByEscrow])
	}
	best := offers[0]
	for _, o := range offers[1:] {
		if (o.escrow && !best.escrow) || (o.escrow == best.escrow && o.price < best.price) {
			best = o
		}
	}
	return best.pubkey, nil
}

// kindOffer reads what a worker's announcement asks for a job of kind: the lowest price of its
// models for the kind, as the base price plus one unit (0 only when it is free), whether escrow is offered for that model,
// and false when it announces no model for the kind (a foreign DVM: price unknown, free).
func kindOffer(h *nip89.HandlerInfo, kind int) (price int64, hasEscrow, ok bool) {
	if h.Metadata.Worker == nil {
		return 0, false, true // a plain NIP-89 announcement: nothing said about money
	}
	for _, m := range h.Metadata.Worker.Models {
		if m.Kind != kind {
			continue
		}
		pays := m.Payment
		if len(pays) == 0 {
			pays = h.Payment
		}
		p := m.Price.BaseMsat + m.Price.PerUnitMsat
		if !ok || p < price {
			price, hasEscrow, ok = p, slices.Contains(pays, escrow.SchemeEscrow), true
		}
	}
	return price, hasEscrow, ok
}
