// Package client is the customer's side of the market: it signs and posts NIP-90 job
// requests to relays, collects the workers' quotes, checks the chosen invoice and pays it
// through the customer's NWC wallet (at most once per payment hash, across restarts), and
// waits for the result. The client CLI is built on it.
package client

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nbd-wtf/go-nostr"
	"github.com/rs/zerolog"

	"github.com/sparecycles/sparecycles/internal/invoice"
	"github.com/sparecycles/sparecycles/internal/relayconn"
	"github.com/sparecycles/sparecycles/nips/nip47"
	"github.com/sparecycles/sparecycles/nips/nip90"
)

// Errors a caller tells apart (the CLI maps them to exit codes).
var (
	ErrNoOffer        = errors.New("client: no acceptable offer")
	ErrRefusedInvoice = errors.New("client: invoice refused")
	ErrPaymentFailed  = errors.New("client: payment failed")
	ErrWalletDown     = errors.New("client: wallet did not answer")
	ErrNoWallet       = errors.New("client: no NWC wallet configured")
	ErrJobFailed      = errors.New("client: the worker reported an error")
	ErrTimeout        = errors.New("client: timed out waiting for the result")
)

// Config configures a Client.
type Config struct {
	Relays      []string
	NWC         string        // nostr+walletconnect:// URI; "" for free jobs only
	Data        string        // state folder: the payment store
	SecretKey   string        // hex; the customer's key
	QuoteWindow time.Duration // how long to collect quotes before choosing
	FirstQuote  bool          // take the first acceptable quote at once instead of waiting the window
	Timeout     time.Duration // overall limit for a job
}

// Client is one customer.
type Client struct {
	cfg     Config
	log     zerolog.Logger
	pubkey  string
	pool    *relayconn.Pool
	wallet  *nip47.Client
	walletP *relayconn.Pool
	store   *payStore

	netOnce sync.Once
	net     string
	netErr  error
}

// Open opens the payment store and prepares the relay and wallet connections (dialled on use).
func Open(ctx context.Context, cfg Config, log zerolog.Logger) (*Client, error) {
	if len(cfg.Relays) == 0 {
		return nil, errors.New("client: no relays")
	}
	pk, err := nostr.GetPublicKey(cfg.SecretKey)
	if err != nil {
		return nil, fmt.Errorf("client: secret key: %w", err)
	}
	store, err := openPayStore(ctx, cfg.Data)
	if err != nil {
		return nil, err
	}
	c := &Client{cfg: cfg, log: log, pubkey: pk, pool: relayconn.NewPool(cfg.Relays), store: store}
	if cfg.NWC != "" {
		uri, err := nip47.ParseURI(cfg.NWC)
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("client: nwc: %w", err)
		}
		c.walletP = relayconn.NewPool(uri.Relays)
		c.wallet = nip47.NewClient(uri, c.walletP)
	}
	if c.cfg.QuoteWindow == 0 {
		c.cfg.QuoteWindow = 3 * time.Second
	}
	if c.cfg.Timeout == 0 {
		c.cfg.Timeout = 5 * time.Minute
	}
	return c, nil
}

// Close closes connections and the store.
func (c *Client) Close() error {
	c.pool.Close()
	if c.walletP != nil {
		c.walletP.Close()
	}
	return c.store.db.Close()
}

// PubKey is the customer's public key.
func (c *Client) PubKey() string { return c.pubkey }

// Wallet is the NWC client, nil without a wallet.
func (c *Client) Wallet() *nip47.Client { return c.wallet }

// network asks the wallet which network it is on, once.
func (c *Client) network(ctx context.Context) (string, error) {
	c.netOnce.Do(func() {
		info, err := c.wallet.GetInfo(ctx)
		c.net, c.netErr = info.Network, err
	})
	if c.netErr != nil {
		c.netOnce = sync.Once{} // try again next time
	}
	return c.net, c.netErr
}

// Post signs and publishes a job request.
func (c *Client) Post(ctx context.Context, req nip90.JobRequest) (nostr.Event, error) {
	if len(req.Relays) == 0 {
		req.Relays = c.cfg.Relays
	}
	evt := req.Event()
	if evt.CreatedAt == 0 {
		evt.CreatedAt = nostr.Now()
	}
	if err := evt.Sign(c.cfg.SecretKey); err != nil {
		return evt, fmt.Errorf("sign job: %w", err)
	}
	if err := c.pool.Publish(ctx, evt); err != nil {
		return evt, fmt.Errorf("post job: %w", err)
	}
	return evt, nil
}

// Stage is a step of Do, for progress displays.
type Stage string

// Stages of a job.
const (
	StagePosted     Stage = "waiting for quotes"
	StagePaying     Stage = "paying"
	StageProcessing Stage = "processing"
	StageDone       Stage = "done"
)

// Outcome is how a job ended.
type Outcome struct {
	Job        string        `json:"job"`
	Worker     string        `json:"worker"`
	AmountMsat int64         `json:"amount_msat"`
	FeeMsat    int64         `json:"fee_msat"`
	Status     string        `json:"status"` // "success" or "error"
	Result     string        `json:"result"`
	Took       time.Duration `json:"-"`
	Preimage   string        `json:"preimage,omitempty"`
}

// Do posts req, waits QuoteWindow for offers, pays the best acceptable one (cheapest, then
// first) and waits for its result. A free job's first result wins. progress, if set, hears each
// stage.
func (c *Client) Do(ctx context.Context, req nip90.JobRequest, progress func(Stage)) (Outcome, error) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	say := func(s Stage) {
		if progress != nil {
			progress(s)
		}
	}
	start := time.Now()
	// subscribe before posting so nothing is missed
	events, err := c.pool.Subscribe(ctx, nostr.Filter{Kinds: []int{nip90.KindFeedback, nip90.ResultKind(req.Kind)}, Tags: nostr.TagMap{"p": {c.pubkey}}, Since: ptr(nostr.Now() - 5)})
	if err != nil {
		return Outcome{}, fmt.Errorf("subscribe: %w", err)
	}
	job, err := c.Post(ctx, req)
	if err != nil {
		return Outcome{}, err
	}
	say(StagePosted)
	out := Outcome{Job: job.ID}
	w := &watch{job: job.ID, bid: req.BidMsat}
	window := time.NewTimer(c.cfg.QuoteWindow)
	defer window.Stop()
	var chosen *Quote
	for {
		select {
		case <-ctx.Done():
			if chosen == nil && len(w.quotes) == 0 {
				return out, fmt.Errorf("job %s: %w", job.ID, ErrNoOffer)
			}
			return out, fmt.Errorf("job %s: %w", job.ID, ErrTimeout)
		case evt, ok := <-events:
			if !ok {
				return out, fmt.Errorf("job %s: %w", job.ID, ErrTimeout)
			}
			res, errInfo := w.see(evt)
			if c.cfg.FirstQuote && chosen == nil && len(w.quotes) > 0 && window.Stop() {
				window.Reset(0) // choose now
			}
			if res != nil && (chosen == nil || res.PubKey == chosen.Worker) {
				if chosen == nil {
					if r, err := nip90.ParseJobResult(res); err == nil && r.Amount != nil && r.Amount.Msat > 0 {
						// post-pay: pay what the result asks, within the bid, once
						q := Quote{JobID: job.ID, Worker: res.PubKey, AmountMsat: r.Amount.Msat, Bolt11: r.Amount.Bolt11, BidMsat: req.BidMsat}
						say(StagePaying)
						p, err := c.Pay(ctx, q)
						if err != nil {
							return out, err
						}
						out.AmountMsat, out.FeeMsat, out.Preimage = p.AmountMsat, p.FeeMsat, p.Preimage
					}
				}
				out.Worker, out.Status, out.Result, out.Took = res.PubKey, "success", res.Content, time.Since(start)
				say(StageDone)
				return out, nil
			}
			if errInfo != "" && chosen != nil && evt.PubKey == chosen.Worker {
				out.Worker, out.Status, out.Result = evt.PubKey, "error", errInfo
				return out, fmt.Errorf("job %s: %w: %s", job.ID, ErrJobFailed, errInfo)
			}
		case <-window.C:
			if chosen != nil {
				continue
			}
			q, refusals := w.best()
			if q == nil {
				if len(refusals) > 0 {
					return out, fmt.Errorf("job %s: %w: %s", job.ID, ErrNoOffer, strings.Join(refusals, "; "))
				}
				window.Reset(c.cfg.QuoteWindow) // nobody quoted yet (a free worker may still answer)
				continue
			}
			chosen = q
			say(StagePaying)
			p, err := c.Pay(ctx, *q)
			if err != nil {
				return out, err
			}
			out.Worker, out.AmountMsat, out.FeeMsat, out.Preimage = q.Worker, p.AmountMsat, p.FeeMsat, p.Preimage
			say(StageProcessing)
		}
	}
}

// watch follows one job's feedback.
type watch struct {
	job    string
	bid    int64
	quotes []Quote
	errors map[string]string // worker → error info
}

// see takes one event; it returns the result, or an error feedback's info.
func (w *watch) see(evt *nostr.Event) (*nostr.Event, string) {
	if nip90.JobID(evt) != w.job {
		return nil, ""
	}
	if nip90.IsResultKind(evt.Kind) {
		return evt, ""
	}
	fb, err := nip90.ParseJobFeedback(evt)
	if err != nil {
		return nil, ""
	}
	switch fb.Status {
	case nip90.StatusPaymentRequired:
		if fb.Amount != nil && fb.Amount.Bolt11 != "" && !slices.ContainsFunc(w.quotes, func(q Quote) bool { return q.Worker == evt.PubKey }) {
			w.quotes = append(w.quotes, Quote{JobID: w.job, Worker: evt.PubKey, AmountMsat: fb.Amount.Msat, Bolt11: fb.Amount.Bolt11, BidMsat: w.bid})
		}
	case nip90.StatusError:
		if w.errors == nil {
			w.errors = map[string]string{}
		}
		w.errors[evt.PubKey] = fb.Info
		return nil, fb.Info
	}
	return nil, ""
}

// best picks the cheapest quote within the bid whose invoice passes the offline checks
// (first come wins a tie); refusals say why the others were passed over.
func (w *watch) best() (*Quote, []string) {
	var best *Quote
	var refusals []string
	for i, q := range w.quotes {
		if _, err := invoice.Check(q.Bolt11, invoice.Expect{JobID: q.JobID, BidMsat: q.BidMsat, QuotedMsat: q.AmountMsat}); err != nil {
			refusals = append(refusals, fmt.Sprintf("%s: %v", short(q.Worker), err))
			continue
		}
		if best == nil || q.AmountMsat < best.AmountMsat {
			best = &w.quotes[i]
		}
	}
	for worker, info := range w.errors {
		refusals = append(refusals, fmt.Sprintf("%s: %s", short(worker), info))
	}
	slices.Sort(refusals)
	return best, refusals
}

func short(pk string) string {
	if len(pk) > 12 {
		return pk[:12]
	}
	return pk
}

func ptr[T any](v T) *T { return &v }
