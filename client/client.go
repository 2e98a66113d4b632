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
	"github.com/sparecycles/sparecycles/nips/escrow"
	"github.com/sparecycles/sparecycles/nips/nip47"
	"github.com/sparecycles/sparecycles/nips/nip90"
	"github.com/sparecycles/sparecycles/nips/postpay"
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
	QuoteWindow time.Duration // the longest Do collects quotes before choosing (less once every live worker answered)
	FirstQuote  bool          // take the first acceptable quote at once instead of waiting for the others
	Timeout     time.Duration // overall limit for a job
	Pay         PayBy         // how the customer pays; "" is PayByAny
	// MaxSpendMsat, when positive, caps what a stream (a request with 2+ inputs) pays: it
	// stops before the part that would pass it (Stream).
	MaxSpendMsat int64
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
	if c.cfg.Pay, err = ParsePayBy(string(cfg.Pay)); err != nil {
		c.Close()
		return nil, fmt.Errorf("client: %w", err)
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

// Post signs and publishes a job request, with the payment tag of Config.Pay (RequestEvent;
// a private request, Encrypted with one provider, as PrivateRequestEvent).
func (c *Client) Post(ctx context.Context, req nip90.JobRequest) (nostr.Event, error) {
	if len(req.Relays) == 0 {
		req.Relays = c.cfg.Relays
	}
	if req.CreatedAt == 0 {
		req.CreatedAt = nostr.Now()
	}
	evt, err := c.requestEvent(req)
	if err != nil {
		return evt, err
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
	// Escrow: the worker runs while the payment is locked; settling hands over the key to the
	// result; a cancelled payment comes back.
	StageLocked   Stage = "locked"
	StageSettled  Stage = "settled"
	StageRefunded Stage = "refunded"
)

// Outcome is how a job ended.
type Outcome struct {
	Job        string        `json:"job"`
	Worker     string        `json:"worker"`
	AmountMsat int64         `json:"amount_msat"`
	FeeMsat    int64         `json:"fee_msat"`
	Status     string        `json:"status"` // "success" or "error"; a stream's also "stopped"
	Result     string        `json:"result"`
	Took       time.Duration `json:"-"`
	Preimage   string        `json:"preimage,omitempty"` // the payment's proof
	// Scheme is how the worker was paid: escrow.SchemeEscrow, SchemePrepay, SchemeAfter, or
	// SchemeFree; "" when nothing was chosen.
	Scheme string `json:"scheme,omitempty"`
	// IgnoredResults counts results from workers the client did not choose: never read as the
	// job's result, never paid.
	IgnoredResults int `json:"ignored_results"`
	// Parts are a stream's parts received, in order (Stream); AmountMsat is then the total
	// paid for its parts.
	Parts []Part `json:"parts,omitempty"`
}

// LiveFor is how fresh a worker's NIP-89 announcement for a kind must be for Do to count the
// worker as live (workers refresh theirs every few minutes; 900 s is the DVM heartbeat
// convention). Do stops collecting quotes once every live worker has answered.
const LiveFor = 15 * time.Minute

// Do posts req and pays only a worker it chose. It collects quotes (pay first), escrow quotes
// (nips/escrow) and post-pay offers (nips/postpay.md) for QuoteWindow, or less: until every
// worker live for the kind (liveWorkers; or every worker req names in its "p" tags) has quoted,
// offered or refused, or with FirstQuote at the first acceptable quote. It then takes the best
// acceptable one: an escrow quote over any other (unless Config.Pay is PayByPrepay, which
// refuses them; PayByEscrow refuses all others), then the cheapest (first come wins a tie). A
// quote is paid at once; an offer is accepted, and the worker's result is paid when its
// invoice asks no more than the offer and the bid. A worker req names alone is chosen by the
// request itself. No bid means free workers only: every priced quote is refused.
//
// An escrow quote's payment is started at once and answers only when the worker settles or
// cancels: meanwhile the worker's processing feedback means the funds are locked
// (StageLocked), and its sealed result is held. The preimage the settled payment returns
// opens the result (StageSettled); a result it cannot open is ErrUnreadable. A payment that
// fails after the worker cancelled is StageRefunded and ErrJobFailed, with the worker's reason.
//
// Results from workers not chosen are ignored and counted (Outcome.IgnoredResults): arriving
// first decides nothing. The one exception moves no money: a result without an invoice, while
// nothing has been chosen yet, wins as a free job's result. progress, if set, hears each stage.
//
// A private request (Encrypted, one provider: see private.go) is posted encrypted to that
// worker, and what it sends back is decrypted before it is read; an event that does not
// decrypt is ignored.
//
// A request with two or more inputs is a stream: Do hands it to Stream.
func (c *Client) Do(ctx context.Context, req nip90.JobRequest, progress func(Stage)) (Outcome, error) {
	if IsStream(req) {
		return c.Stream(ctx, req, progress, nil)
	}
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	var paying sync.WaitGroup // an escrow payment's goroutine: done before Do returns
	defer func() {
		cancel()
		paying.Wait()
	}()
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
	// who is live is asked while the job is posted: it costs no wait
	liveCh := make(chan []string, 1)
	if len(req.Providers) == 0 {
		go func() { liveCh <- c.liveWorkers(ctx, req.Kind) }()
	}
	job, err := c.Post(ctx, req)
	if err != nil {
		return Outcome{}, err
	}
	say(StagePosted)
	out := Outcome{Job: job.ID}
	w := &watch{job: job.ID, bid: req.BidMsat, named: req.Providers, by: c.cfg.Pay, answered: map[string]bool{}}
	window := time.NewTimer(c.cfg.QuoteWindow)
	defer window.Stop()
	var chosen *candidate
	early := false               // the choice was tried before the window ended
	var esc *held                // the escrow payment, when an escrow quote was chosen
	var payDone <-chan payResult // esc's answer, until it came
	var grace <-chan time.Time   // after an escrow payment failed without the worker's reason

	// payAfter pays a post-pay result's invoice: no more than the offer (when one was made)
	// and the bid
	payAfter := func(worker string, a *nip90.Amount, offered int64) error {
		if offered > 0 && a.Msat > offered {
			return fmt.Errorf("job %s: %w: the result asks %d msat, the offer was %d msat", job.ID, ErrRefusedInvoice, a.Msat, offered)
		}
		say(StagePaying)
		p, err := c.Pay(ctx, Quote{JobID: job.ID, Worker: worker, AmountMsat: a.Msat, Bolt11: a.Bolt11, BidMsat: req.BidMsat})
		if err != nil {
			return err
		}
		out.AmountMsat, out.FeeMsat, out.Preimage, out.Scheme = p.AmountMsat, p.FeeMsat, p.Preimage, escrow.SchemeAfter
		return nil
	}
	// choose takes the best candidate: done with an error, or chosen (or nothing to choose yet)
	choose := func() error {
		q, refusals := w.best()
		if q == nil {
			if len(refusals) > 0 {
				return fmt.Errorf("job %s: %w: %s", job.ID, ErrNoOffer, strings.Join(refusals, "; "))
			}
			return nil // nobody offered yet (a free worker may still answer)
		}
		chosen = q
		out.Worker = q.Worker
		switch {
		case q.PostPay:
			out.Scheme = escrow.SchemeAfter
			if !w.namedAlone(q.Worker) { // named alone, it runs without being asked
				acc := postpay.Acceptance{JobID: job.ID, Worker: q.Worker, Msat: q.AmountMsat}.Event()
				if err := acc.Sign(c.cfg.SecretKey); err != nil {
					return fmt.Errorf("job %s: sign acceptance: %w", job.ID, err)
				}
				if err := c.pool.Publish(ctx, acc); err != nil {
					return fmt.Errorf("job %s: accept the offer of %s: %w", job.ID, short(q.Worker), err)
				}
			}
			say(StageProcessing)
			return nil
		case q.Escrow != nil:
			out.Scheme = escrow.SchemeEscrow
			say(StagePaying)
			esc = c.startEscrow(ctx, q.Quote, &paying)
			payDone = esc.done
			return nil
		}
		out.Scheme = escrow.SchemePrepay
		say(StagePaying)
		p, err := c.Pay(ctx, q.Quote)
		if err != nil {
			return err
		}
		out.AmountMsat, out.FeeMsat, out.Preimage = p.AmountMsat, p.FeeMsat, p.Preimage
		say(StageProcessing)
		return nil
	}
	// settled opens the escrow's held result with the preimage
	settled := func() (Outcome, error) {
		text, err := esc.open(job.ID)
		if err != nil {
			c.log.Error().Str("job", job.ID).Str("worker", esc.quote.Worker).Str("result", esc.result.ID).Str("payment_hash", esc.hash).Msg("paid for a result that cannot be opened")
			out.Status, out.Result = "error", err.Error()
			return out, err
		}
		say(StageSettled)
		out.Status, out.Result, out.Took = "success", text, time.Since(start)
		say(StageDone)
		return out, nil
	}
	for {
		select {
		case <-ctx.Done():
			switch {
			case esc != nil && esc.paid != nil:
				return out, fmt.Errorf("job %s: %w: paid (the escrow settled), but the result did not arrive", job.ID, ErrTimeout)
			case esc != nil && payDone != nil:
				return out, fmt.Errorf("job %s: %w: the payment is still locked (client status %s finishes it)", job.ID, ErrTimeout, job.ID)
			case chosen == nil && !w.offered():
				return out, fmt.Errorf("job %s: %w", job.ID, ErrNoOffer)
			}
			return out, fmt.Errorf("job %s: %w", job.ID, ErrTimeout)
		case live := <-liveCh:
			w.live, w.liveKnown = live, true
		case r := <-payDone:
			payDone = nil
			switch {
			case r.err == nil:
				esc.paid = &r.p
				out.AmountMsat, out.FeeMsat, out.Preimage = r.p.AmountMsat, r.p.FeeMsat, r.p.Preimage
				if esc.result != nil {
					return settled()
				}
				continue // the result is on its way: the worker published it before settling
			case errors.Is(r.err, nip47.ErrPaymentFailed):
				esc.failed = r.err
				if esc.failInfo != "" {
					say(StageRefunded)
					out.Status, out.Result = "error", esc.failInfo
					return out, esc.refunded(job.ID)
				}
				grace = time.After(failureGrace) // the worker's reason may be on its way
				continue
			case errors.Is(r.err, ErrWalletDown) && ctx.Err() != nil:
				return out, fmt.Errorf("job %s: %w: the payment is still locked (client status %s finishes it)", job.ID, ErrTimeout, job.ID)
			case errors.Is(r.err, ErrWalletDown):
				return out, fmt.Errorf("%w (the payment may be locked: client status %s finishes it)", r.err, job.ID)
			}
			return out, r.err
		case <-grace:
			if esc.locked {
				say(StageRefunded)
				out.Status = "error"
				return out, esc.refunded(job.ID)
			}
			return out, esc.failed
		case evt, ok := <-events:
			if !ok {
				return out, fmt.Errorf("job %s: %w", job.ID, ErrTimeout)
			}
			if evt = c.reveal(evt); evt == nil {
				continue // encrypted, and not to us
			}
			if esc != nil && evt.PubKey == chosen.Worker && nip90.JobID(evt) == job.ID {
				if evt.Kind == nip90.KindFeedback {
					fb, err := nip90.ParseJobFeedback(evt)
					switch {
					case err != nil:
					case (fb.Status == nip90.StatusProcessing || fb.Status == nip90.StatusPartial) && !esc.locked && esc.failed == nil && esc.paid == nil:
						esc.locked = true
						say(StageLocked)
					case fb.Status == nip90.StatusError:
						esc.failInfo = fb.Info
						if esc.failed != nil {
							say(StageRefunded)
							out.Status, out.Result = "error", fb.Info
							return out, esc.refunded(job.ID)
						}
						// the worker cancels the payment next: its answer says refunded
					}
					continue
				}
				if evt.Kind == nip90.ResultKind(req.Kind) {
					esc.keep(evt)
					if esc.paid != nil {
						return settled()
					}
					continue
				}
			}
			res, errInfo := w.see(evt)
			if res != nil {
				r, perr := nip90.ParseJobResult(res)
				var bill *nip90.Amount // the invoice a result carries
				if perr == nil && r.Amount != nil && r.Amount.Msat > 0 {
					bill = r.Amount
				}
				from := res.PubKey
				switch {
				case chosen != nil && from == chosen.Worker:
					if chosen.PostPay && bill != nil {
						if err := payAfter(from, bill, chosen.AmountMsat); err != nil {
							return out, err
						}
					} // a quote's worker was paid already: an invoice on its result is not paid again
				case chosen == nil && bill == nil && w.may(from):
					// a free result before anything was chosen: no money moves, first wins
					out.Scheme = SchemeFree
				case chosen == nil && bill != nil && w.namedAlone(from):
					// the request chose this worker: pay within its offer, if it made one, and the bid
					if err := payAfter(from, bill, w.offerOf(from)); err != nil {
						return out, err
					}
				default:
					out.IgnoredResults++
					c.log.Debug().Str("job", job.ID).Str("worker", from).Msg("ignored a result from a worker not chosen")
					continue
				}
				out.Worker, out.Status, out.Result, out.Took = from, "success", res.Content, time.Since(start)
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
			if err := choose(); err != nil {
				return out, err
			}
			if chosen == nil {
				window.Reset(c.cfg.QuoteWindow)
			}
			continue
		}
		// waiting longer cannot change the choice: choose now
		if chosen == nil && !early && w.ready(c.cfg.FirstQuote) {
			early = true
			if err := choose(); err != nil {
				return out, err
			}
		}
	}
}

// liveWorkers lists the workers that can be expected to answer a job of kind now: those a
// relay's /api/workers shows connected, else those whose heartbeat is alive (Presence.Live),
// and when no relay knows of any presence, those whose announcement for kind is at most
// LiveFor old. nil when the relays cannot tell (then the quote window runs its full length).
func (c *Client) liveWorkers(ctx context.Context, kind int) []string {
	var live []string
	presences, _ := Presences(ctx, c.cfg.Relays, c.log)
	for pk, p := range presences {
		if p.Live() && p.Serves(kind) && pk != c.pubkey {
			live = append(live, pk)
		}
	}
	if len(presences) > 0 {
		slices.Sort(live)
		return live
	}
	ws, err := Workers(ctx, c.cfg.Relays, kind, c.log)
	if err != nil {
		c.log.Debug().Err(err).Msg("list live workers")
		return nil
	}
	since := nostr.Timestamp(time.Now().Add(-LiveFor).Unix())
	for _, h := range ws {
		if h.CreatedAt >= since && h.PubKey != c.pubkey {
			live = append(live, h.PubKey)
		}
	}
	return live
}

// candidate is a quote (pay first, or escrow when Quote.Escrow is set) or a post-pay offer (no
// invoice yet) the client may choose.
type candidate struct {
	Quote
	PostPay   bool
	EscrowErr error // the quote's escrow tag is malformed: it is refused
}

// watch follows one job's feedback.
type watch struct {
	job        string
	bid        int64
	named      []string // the request's "p" tags: only these may be chosen
	by         PayBy    // which quotes may be chosen
	candidates []candidate
	errors     map[string]string // worker → error info
	answered   map[string]bool   // workers that quoted, offered or refused (not a free worker at work: its result may come)
	live       []string          // workers live for the kind (liveWorkers)
	liveKnown  bool
}

// may reports whether worker may be chosen: any worker, or one the request names.
func (w *watch) may(worker string) bool {
	return len(w.named) == 0 || slices.Contains(w.named, worker)
}

// namedAlone reports whether the request names worker and no other.
func (w *watch) namedAlone(worker string) bool {
	return len(w.named) == 1 && w.named[0] == worker
}

// offerOf is the amount worker offered to run the job for, post-pay; 0 when it made no offer.
func (w *watch) offerOf(worker string) int64 {
	for _, c := range w.candidates {
		if c.Worker == worker && c.PostPay {
			return c.AmountMsat
		}
	}
	return 0
}

func (w *watch) offered() bool { return len(w.candidates) > 0 }

// see takes one event; it returns the result, or an error feedback's info.
func (w *watch) see(evt *nostr.Event) (*nostr.Event, string) {
	if nip90.JobID(evt) != w.job {
		return nil, ""
	}
	if nip90.IsResultKind(evt.Kind) {
		return evt, ""
	}
	fb, err := nip90.ParseJobFeedback(evt)
	if err != nil || !w.may(evt.PubKey) {
		return nil, ""
	}
	switch fb.Status {
	case nip90.StatusPaymentRequired:
		w.answered[evt.PubKey] = true
		if slices.ContainsFunc(w.candidates, func(c candidate) bool { return c.Worker == evt.PubKey }) {
			break // a worker's first offer stands
		}
		if msat, ok := postpay.OfferAmount(fb); ok {
			w.candidates = append(w.candidates, candidate{Quote: Quote{JobID: w.job, Worker: evt.PubKey, AmountMsat: msat, BidMsat: w.bid}, PostPay: true})
		} else if fb.Amount != nil && fb.Amount.Bolt11 != "" {
			q := candidate{Quote: Quote{JobID: w.job, Worker: evt.PubKey, AmountMsat: fb.Amount.Msat, Bolt11: fb.Amount.Bolt11, BidMsat: w.bid}}
			if eq, ok, err := escrow.ParseQuote(evt.Tags); err != nil {
				q.EscrowErr = err
			} else if ok {
				q.Escrow = &eq
			}
			w.candidates = append(w.candidates, q)
		}
	case nip90.StatusError:
		w.answered[evt.PubKey] = true
		if w.errors == nil {
			w.errors = map[string]string{}
		}
		w.errors[evt.PubKey] = fb.Info
		return nil, fb.Info
	}
	return nil, ""
}

// ready reports whether waiting longer cannot change the choice: with firstQuote, an
// acceptable candidate is in; otherwise every worker the request names, or every worker
// announced live, has answered. Without either list it is never ready.
func (w *watch) ready(firstQuote bool) bool {
	if firstQuote {
		if q, _ := w.best(); q != nil {
			return true
		}
	}
	expect := w.named
	if len(expect) == 0 {
		expect = w.live
	}
	if len(expect) == 0 {
		return false
	}
	for _, pk := range expect {
		if !w.answered[pk] {
			return false
		}
	}
	return true
}

// best picks the best acceptable candidate: an escrow quote over any other, then the cheapest
// (first come wins a tie). Acceptable is a quote within the bid whose invoice passes the
// offline checks (an escrow quote's also for the payment hash its tag names), or an offer
// within the bid, of a scheme w.by takes. No bid accepts nothing priced. refusals say why the
// others were passed over.
func (w *watch) best() (*candidate, []string) {
	var best *candidate
	var refusals []string
	for i, q := range w.candidates {
		if err := w.refuse(q); err != nil {
			refusals = append(refusals, fmt.Sprintf("%s: %v", short(q.Worker), err))
			continue
		}
		if best == nil || w.better(q, *best) {
			best = &w.candidates[i]
		}
	}
	for worker, info := range w.errors {
		refusals = append(refusals, fmt.Sprintf("%s: %s", short(worker), info))
	}
	slices.Sort(refusals)
	return best, refusals
}

// better reports whether a beats b: escrow first, then a live worker's (when who is live is
// known: paying one that is gone risks the money), then the price.
func (w *watch) better(a, b candidate) bool {
	if (a.Escrow != nil) != (b.Escrow != nil) {
		return a.Escrow != nil
	}
	if w.liveKnown {
		if al, bl := slices.Contains(w.live, a.Worker), slices.Contains(w.live, b.Worker); al != bl {
			return al
		}
	}
	return a.AmountMsat < b.AmountMsat
}

// refuse says why q may not be chosen, or nil.
func (w *watch) refuse(q candidate) error {
	isEscrow := q.Escrow != nil || q.EscrowErr != nil
	switch {
	case w.by == PayByEscrow && q.PostPay:
		return errors.New("a post-pay offer, and --pay escrow takes escrow quotes only")
	case w.by == PayByEscrow && !isEscrow:
		return errors.New("not an escrow quote, and --pay escrow takes escrow quotes only")
	case w.by == PayByPrepay && isEscrow:
		return errors.New("an escrow quote, and --pay prepay takes plain quotes only")
	case q.EscrowErr != nil:
		return fmt.Errorf("escrow quote refused: %w", q.EscrowErr)
	case q.PostPay && w.bid <= 0:
		return fmt.Errorf("%w: %d msat offered (pay after) and no bid was given (no bid: free workers only)", invoice.ErrOverBid, q.AmountMsat)
	case q.PostPay && q.AmountMsat > w.bid:
		return fmt.Errorf("%w: %d msat offered (pay after), %d msat bid", invoice.ErrOverBid, q.AmountMsat, w.bid)
	case q.PostPay:
		return nil
	}
	inv, err := invoice.Check(q.Bolt11, invoice.Expect{JobID: q.JobID, BidMsat: q.BidMsat, QuotedMsat: q.AmountMsat, Description: q.Description})
	if err != nil {
		return err
	}
	if err := checkEscrow(q.Quote, inv.PaymentHash); err != nil {
		return fmt.Errorf("escrow quote refused: %w", err)
	}
	return nil
}

func short(pk string) string {
	if len(pk) > 12 {
		return pk[:12]
	}
	return pk
}

func ptr[T any](v T) *T { return &v }
