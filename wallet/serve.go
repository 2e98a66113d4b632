package wallet

import (
	"cmp"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	decodepay "github.com/nbd-wtf/ln-decodepay"
	"github.com/rs/zerolog"
	"golang.org/x/sync/errgroup"

	"github.com/sparecycles/sparecycles/internal/logging"
	"github.com/sparecycles/sparecycles/internal/relayconn"
	"github.com/sparecycles/sparecycles/nips/nip47"
	"github.com/sparecycles/sparecycles/wallet/ledger"
)

// Methods are the NIP-47 methods the wallet serves, to every connection.
var methods = []string{
	nip47.MethodPayInvoice, nip47.MethodMakeInvoice, nip47.MethodLookupInvoice,
	nip47.MethodGetBalance, nip47.MethodGetInfo, nip47.MethodListTransactions,
	nip47.MethodMakeHoldInvoice, nip47.MethodSettleHoldInvoice, nip47.MethodCancelHoldInvoice,
}

// notifications are the NIP-47 notification types the wallet sends.
var notifications = []string{nip47.NotificationPaymentReceived, nip47.NotificationPaymentSent, nip47.NotificationHoldInvoiceAccepted}

// slowMethods may wait long in the backend: paying a hold invoice waits until it is settled
// or cancelled, for hours maybe. nip47.Service bounds them apart from the other requests.
var slowMethods = []string{nip47.MethodPayInvoice}

// inFlightEvery is how often the service asks the backend about payments in flight that no
// request of this run is waiting for (held payments a restart interrupted): a settle or a
// cancel made since resolves them. A backend event asks at once as well.
const inFlightEvery = time.Minute

// Sentinel errors.
var (
	ErrNameTaken       = errors.New("wallet: connection name taken")
	ErrFundNeedsLedger = errors.New("wallet: --fund credits play money and works only with the ledger backend; fund an lnd node on chain")
	ErrEventsEnded     = errors.New("wallet: backend stopped reporting payments")
)

// Serve runs the wallet service until ctx ends: it opens the state in cfg.Data and the
// backend, settles payments a previous run left in flight, answers NIP-47 requests on
// cfg.Relays and sends each connection notifications of its payments. It returns nil once
// ctx has ended and everything is closed, or the first error that stops it.
func Serve(ctx context.Context, cfg Config, log zerolog.Logger) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	err := run(ctx, cfg, log)
	if ctx.Err() != nil {
		return nil // asked to stop: whatever failed on the way out was the stopping
	}
	return err
}

func run(ctx context.Context, cfg Config, log zerolog.Logger) error {
	st, err := openStore(ctx, cfg.Data)
	if err != nil {
		return err
	}
	defer st.Close()
	key, err := st.walletKey(ctx)
	if err != nil {
		return err
	}
	backend, err := openBackend(ctx, cfg)
	if err != nil {
		return err
	}
	defer backend.Close()
	info, err := backend.Info(ctx)
	if err != nil {
		return fmt.Errorf("backend info: %w", err)
	}
	log = log.With().Str("wallet", key.PubKey()).Str("backend", cfg.Backend).Logger()
	if cfg.Backend == BackendLedger {
		log.Warn().Str("alias", info.Alias).Msg("ledger backend: play money for demos and tests")
	}

	h := &handler{st: st, backend: backend, log: log, live: map[string]int{}, kick: make(chan struct{}, 1)}
	h.settleInFlight(ctx, zerolog.WarnLevel)

	events, err := backend.Subscribe(ctx)
	if err != nil {
		return fmt.Errorf("subscribe to backend: %w", err)
	}
	pool := relayconn.NewPool(cfg.Relays)
	defer pool.Close()
	svc := &nip47.Service{
		WalletKey:     key,
		Transport:     pool,
		Methods:       methods,
		SlowMethods:   slowMethods,
		Notifications: notifications,
		Lookup:        st.connection,
		Handle:        h.handle,
		Seen:          st.seen,
		MaxAge:        requestMaxAge,
		OnError:       func(err error) { log.Error().Err(err).Msg("nwc") },
		OnReady: func() {
			log.Info().Strs("relays", cfg.Relays).Str("network", info.Network).Msg("serving")
			if cfg.OnReady != nil {
				cfg.OnReady()
			}
		},
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return serveNWC(gctx, svc, log) })
	g.Go(func() error { st.pruneSeenEvery(gctx, time.Hour, log); return nil })
	g.Go(func() error { return h.forward(gctx, events, svc) })
	g.Go(func() error {
		h.settleInFlightEvery(gctx, cmp.Or(cfg.inFlightEvery, inFlightEvery))
		return nil
	})
	return g.Wait()
}

// requestMaxAge is how old a request the service still answers (nip47.Service.MaxAge), and
// so, with nip47.FutureSkew, how long it must remember a request id: a request seen longer ago
// than both is refused by its date if it comes again.
const requestMaxAge = 24 * time.Hour

// pruneSeenEvery forgets request ids too old to matter and invoices long expired, now and then
// every period, until ctx ends, so that the store does not grow with every request ever
// answered.
func (s *store) pruneSeenEvery(ctx context.Context, period time.Duration, log zerolog.Logger) {
	for {
		n, err := s.pruneSeen(ctx, s.now().Add(-requestMaxAge-nip47.FutureSkew))
		switch {
		case err != nil && ctx.Err() == nil:
			log.Error().Err(err).Msg("prune request ids")
		case n > 0:
			log.Debug().Int64("forgotten", n).Msg("pruned request ids")
		}
		// an invoice is kept a day past its expiry: a settlement races the expiry
		if n, err := s.pruneInvoices(ctx, s.now().Add(-24*time.Hour)); err != nil && ctx.Err() == nil {
			log.Error().Err(err).Msg("prune invoices")
		} else if n > 0 {
			log.Debug().Int64("forgotten", n).Msg("pruned expired invoices")
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(period):
		}
	}
}

// serveNWC runs svc until ctx ends. While no relay can be reached it waits and tries again,
// backing off from 1 s to 30 s, instead of giving up: a wallet service often starts next to
// its relay (docker compose, a reboot) and must not lose the race.
func serveNWC(ctx context.Context, svc *nip47.Service, log zerolog.Logger) error {
	backoff := time.Second
	for {
		err := svc.Serve(ctx)
		if ctx.Err() != nil || !errors.Is(err, relayconn.ErrNoRelay) {
			return err
		}
		log.Warn().Err(err).Str("retry_in", logging.Dur(backoff)).Msg("no relay reachable yet")
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 30*time.Second)
	}
}

// handler answers the requests of a Service from the store and the backend.
type handler struct {
	st      *store
	backend Backend
	log     zerolog.Logger
	kick    chan struct{} // a backend event: payments in flight may have resolved

	mu   sync.Mutex
	live map[string]int // payment hashes a pay_invoice of this run is paying, and how many
}

// handle is nip47.Service's Handle.
func (h *handler) handle(ctx context.Context, c nip47.Connection, method string, params json.RawMessage) (any, error) {
	start := time.Now()
	log := h.log.With().Str("pubkey", c.ClientPubKey).Str("connection", c.Name).Str("method", method).Logger()
	var res any
	var err error
	switch method {
	case nip47.MethodPayInvoice:
		res, err = call(params, func(p nip47.PayInvoiceParams) (any, error) { return h.payInvoice(ctx, c, p, log) })
	case nip47.MethodMakeInvoice:
		res, err = call(params, func(p nip47.MakeInvoiceParams) (any, error) {
			tx, err := h.backend.MakeInvoice(ctx, c.Name, p)
			if err == nil && tx.PaymentHash != "" {
				if rerr := h.st.recordInvoice(ctx, tx.PaymentHash, c.Name, tx.ExpiresAt); rerr != nil {
					log.Error().Err(rerr).Msg("invoice made, but not recorded: its notification may not reach the connection")
				}
			}
			return tx, err
		})
	case nip47.MethodMakeHoldInvoice:
		res, err = call(params, func(p nip47.MakeHoldInvoiceParams) (any, error) {
			tx, err := h.backend.MakeHoldInvoice(ctx, c.Name, p)
			if err == nil && tx.PaymentHash != "" {
				// kept past the invoice's expiry for as long as a payment to it may be held
				hold := cmp.Or(p.MinCLTVExpiryDelta, ledger.DefaultCLTVExpiryDelta)
				until := tx.ExpiresAt + min(hold, ledger.MaxCLTVExpiryDelta)*int64(ledger.BlockInterval/time.Second)
				if rerr := h.st.recordInvoice(ctx, tx.PaymentHash, c.Name, until); rerr != nil {
					log.Error().Err(rerr).Msg("hold invoice made, but not recorded: the connection cannot settle or cancel it")
				}
			}
			return tx, err
		})
	case nip47.MethodSettleHoldInvoice:
		res, err = call(params, func(p nip47.SettleHoldInvoiceParams) (any, error) {
			b, err := hex.DecodeString(p.Preimage)
			if err != nil || len(b) != 32 {
				return nil, nip47.Errorf(nip47.CodeOther, "preimage must be 32 bytes of hex")
			}
			hash := sha256.Sum256(b)
			if err := h.ownHoldInvoice(ctx, c, hex.EncodeToString(hash[:])); err != nil {
				return nil, err
			}
			return struct{}{}, h.backend.SettleHoldInvoice(ctx, c.Name, p.Preimage)
		})
	case nip47.MethodCancelHoldInvoice:
		res, err = call(params, func(p nip47.CancelHoldInvoiceParams) (any, error) {
			if err := h.ownHoldInvoice(ctx, c, p.PaymentHash); err != nil {
				return nil, err
			}
			return struct{}{}, h.backend.CancelHoldInvoice(ctx, c.Name, p.PaymentHash)
		})
	case nip47.MethodLookupInvoice:
		res, err = call(params, func(p nip47.LookupInvoiceParams) (any, error) { return h.backend.LookupInvoice(ctx, c.Name, p) })
	case nip47.MethodGetBalance:
		var b int64
		b, err = h.backend.Balance(ctx, c.Name)
		res = nip47.GetBalanceResult{Balance: b}
	case nip47.MethodGetInfo:
		var info nip47.GetInfoResult
		info, err = h.backend.Info(ctx)
		info.Methods, info.Notifications = methods, notifications
		res = info
	case nip47.MethodListTransactions:
		res, err = call(params, func(p nip47.ListTransactionsParams) (any, error) {
			txs, err := h.backend.ListTransactions(ctx, c.Name, p)
			if txs == nil {
				txs = []nip47.Transaction{} // "transactions": [], not null
			}
			return nip47.ListTransactionsResult{Transactions: txs}, err
		})
	default:
		err = nip47.Errorf(nip47.CodeNotImplemented, "method %.64q is not supported", method)
	}
	var werr *nip47.Error
	switch {
	case errors.As(err, &werr):
		log.Info().Str("code", werr.Code).Str("took", logging.Dur(time.Since(start))).Msg("refused")
	case err == nil:
		log.Debug().Str("took", logging.Dur(time.Since(start))).Msg("answered")
	} // other errors are answered INTERNAL and logged by the Service's OnError
	return res, err
}

// ownHoldInvoice refuses, NOT_FOUND, to settle or cancel an invoice that connection c did
// not make: the backend checks the account too, but lnd has one for everybody.
func (h *handler) ownHoldInvoice(ctx context.Context, c nip47.Connection, hash string) error {
	account, ok, err := h.st.invoiceAccount(ctx, hash)
	if err != nil {
		return err
	}
	if !ok || account != c.Name {
		return nip47.Errorf(nip47.CodeNotFound, "no hold invoice %.64s made by this connection", hash)
	}
	return nil
}

// call decodes a request's params and runs fn with them.
func call[P any](params json.RawMessage, fn func(P) (any, error)) (any, error) {
	var p P
	if err := json.Unmarshal(params, &p); err != nil {
		return nil, nip47.Errorf(nip47.CodeOther, "invalid params: %v", err)
	}
	return fn(p)
}

// payInvoice pays at most once per payment hash: the hash is recorded (and the budget
// charged) before the backend is asked, so a repeated request, a second relay's copy or a
// restart finds it.
func (h *handler) payInvoice(ctx context.Context, c nip47.Connection, p nip47.PayInvoiceParams, log zerolog.Logger) (nip47.PayInvoiceResult, error) {
	inv, err := decodepay.Decodepay(p.Invoice)
	if err != nil {
		return nip47.PayInvoiceResult{}, nip47.Errorf(nip47.CodePaymentFailed, "invalid invoice: %v", err)
	}
	amount := inv.MSatoshi
	switch {
	case p.Amount < 0:
		return nip47.PayInvoiceResult{}, nip47.Errorf(nip47.CodeOther, "amount must not be negative")
	case amount == 0 && p.Amount == 0:
		return nip47.PayInvoiceResult{}, nip47.Errorf(nip47.CodePaymentFailed, "invoice has no amount and the request gives none")
	case amount == 0:
		amount = p.Amount
	}
	hash := inv.PaymentHash
	log = log.With().Str("payment_hash", hash).Int64("msat", amount).Logger()
	// live before it is in flight: settleInFlightEvery leaves a payment it sees live alone
	h.setLive(hash, 1)
	defer h.setLive(hash, -1)
	preimage, err := h.st.beginPayment(ctx, c.ClientPubKey, hash, amount)
	if err != nil {
		return nip47.PayInvoiceResult{}, err
	}
	if preimage != "" {
		log.Info().Msg("already paid")
		return nip47.PayInvoiceResult{Preimage: preimage}, nil
	}
	res, err := h.backend.PayInvoice(ctx, c.Name, p)
	// record the outcome even when shutdown cancelled ctx meanwhile: it is what a restart reads
	rctx := context.WithoutCancel(ctx)
	var werr *nip47.Error
	switch {
	case errors.As(err, &werr): // the backend says it did not pay: free the budget, allow a retry
		if ferr := h.st.failPayment(rctx, hash); ferr != nil {
			return nip47.PayInvoiceResult{}, ferr
		}
		return nip47.PayInvoiceResult{}, err
	case err != nil: // outcome unknown: stays in flight until a restart asks the backend
		return nip47.PayInvoiceResult{}, fmt.Errorf("pay %s: %w", hash, err)
	}
	if err := h.st.finishPayment(rctx, hash, res.Preimage, res.FeesPaid); err != nil {
		// paid, so the client gets its preimage; the hash stays in flight, never paid again
		log.Error().Err(err).Msg("paid but not recorded")
	}
	log.Info().Int64("fees_msat", res.FeesPaid).Msg("paid")
	return res, nil
}

// setLive counts a pay_invoice of hash starting (+1) or ending (-1).
func (h *handler) setLive(hash string, d int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.live[hash] += d; h.live[hash] <= 0 {
		delete(h.live, hash)
	}
}

func (h *handler) isLive(hash string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.live[hash] > 0
}

// settleInFlightEvery runs settleInFlight every period and after each backend event, until
// ctx ends: a payment held when the previous run stopped is resolved once its hold invoice
// settles or is cancelled.
func (h *handler) settleInFlightEvery(ctx context.Context, period time.Duration) {
	timer := time.NewTimer(period)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		case <-h.kick:
		}
		h.settleInFlight(ctx, zerolog.DebugLevel)
		timer.Reset(period)
	}
}

// settleInFlight resolves payments recorded in flight that no pay_invoice of this run is
// paying (a previous run's): the backend says whether each was paid. Those it cannot tell,
// held payments among them, stay in flight (answered "payment in progress"); they are
// logged at stillLevel.
func (h *handler) settleInFlight(ctx context.Context, stillLevel zerolog.Level) {
	pending, err := h.st.paymentsInFlight(ctx)
	if err != nil {
		if ctx.Err() == nil {
			h.log.Error().Err(err).Msg("payments in flight")
		}
		return
	}
	for _, p := range pending {
		if h.isLive(p.hash) {
			continue
		}
		log := h.log.With().Str("payment_hash", p.hash).Str("pubkey", p.client).Logger()
		tx, err := h.backend.LookupInvoice(ctx, p.name, nip47.LookupInvoiceParams{PaymentHash: p.hash})
		switch {
		case errors.Is(err, nip47.ErrNotFound):
			err = h.st.failPayment(ctx, p.hash)
		case err != nil:
		case tx.Type != nip47.TypeOutgoing:
			err = errors.New("backend reports no outgoing payment")
		case tx.State == nip47.StateSettled && tx.Preimage != "":
			err = h.st.finishPayment(ctx, p.hash, tx.Preimage, tx.FeesPaid)
		case tx.State == nip47.StateFailed:
			err = h.st.failPayment(ctx, p.hash)
		default:
			log.WithLevel(stillLevel).Str("state", tx.State).Msg("payment still in flight")
			continue
		}
		switch {
		case errors.Is(err, sql.ErrNoRows):
			// its pay_invoice finished it between the list and now: nothing is left in flight
			log.Debug().Msg("payment in flight resolved by its request")
			continue
		case err != nil:
			log.Warn().Err(err).Msg("payment left in flight")
			continue
		}
		log.Info().Msg("payment in flight resolved")
	}
}

// forward sends each backend event to its connection as a NIP-47 notification.
// accountOf is the connection a backend event concerns: the backend's word, else, for an
// invoice, the connection recorded as having made it (lnd forgets that across a restart).
func (h *handler) accountOf(ctx context.Context, ev BackendEvent) string {
	hash := ev.Notification.Transaction.PaymentHash
	if ev.Account != "" || hash == "" {
		return ev.Account
	}
	account, ok, err := h.st.invoiceAccount(ctx, hash)
	if err != nil {
		h.log.Error().Err(err).Str("payment_hash", hash).Msg("look up invoice")
	}
	if !ok {
		return ""
	}
	return account
}

func (h *handler) forward(ctx context.Context, events <-chan BackendEvent, svc *nip47.Service) error {
	for {
		var ev BackendEvent
		select {
		case <-ctx.Done():
			return nil
		case e, ok := <-events:
			if !ok {
				if ctx.Err() != nil {
					return nil
				}
				return ErrEventsEnded
			}
			ev = e
		}
		select { // a payment a previous run left in flight may be what settled
		case h.kick <- struct{}{}:
		default:
		}
		account := h.accountOf(ctx, ev)
		log := h.log.With().Str("connection", account).Str("notification", ev.Notification.Type).
			Str("payment_hash", ev.Notification.Transaction.PaymentHash).Logger()
		client, ok, err := h.st.clientOf(ctx, account)
		if err != nil || !ok {
			log.Debug().Err(err).Msg("no connection to notify")
			continue
		}
		if err := svc.Notify(ctx, client, ev.Notification); err != nil {
			log.Info().Err(err).Msg("notification not delivered") // often: no client listening
			continue
		}
		log.Debug().Msg("notified")
	}
}
