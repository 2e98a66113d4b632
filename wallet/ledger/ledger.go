package ledger

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"time"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/btcsuite/btcd/btcec/v2/ecdsa"
	"github.com/btcsuite/btcd/chaincfg"
	"github.com/lightningnetwork/lnd/lnwire"
	"github.com/lightningnetwork/lnd/zpay32"

	"github.com/sparecycles/sparecycles/internal/sqlitedb"
	"github.com/sparecycles/sparecycles/nips/nip47"
)

// Alias is the ledger's get_info alias: whoever reads it learns the money is not real.
const Alias = "sparecycles ledger (demo, not real money)"

// Network is the network the ledger's invoices are for.
const Network = "regtest"

// DefaultInvoiceExpiry is used when make_invoice gives no expiry (as wallet.DefaultInvoiceExpiry).
const DefaultInvoiceExpiry = time.Hour

// maxInvoiceExpiry bounds make_invoice's expiry so that expires_at cannot overflow.
const maxInvoiceExpiry = 365 * 24 * time.Hour

// subscriberBuffer is how many events a slow subscriber may fall behind before events to it
// are dropped: a payment never waits on a reader.
const subscriberBuffer = 1024

// Sentinel errors.
var (
	ErrInvalidAmount = errors.New("ledger: amount must be positive")
	ErrClosed        = errors.New("ledger: closed")
)

// Event is one settled payment for the account it names: wallet.BackendEvent's twin.
type Event struct {
	Account      string
	Notification nip47.Notification
}

// Ledger is an open ledger. Its methods are safe for concurrent use.
type Ledger struct {
	// Now is the ledger's clock; nil means time.Now. Tests move it to expire invoices. Set it
	// before the ledger is used.
	Now func() time.Time

	key    *btcec.PrivateKey
	pubkey string // hex, compressed
	params *chaincfg.Params

	// PollEvery bounds how long a held PayInvoice waits before it reads the database again
	// (a settle or cancel made by another process sharing the folder, a hold timing out);
	// zero means DefaultPollEvery. Set it before the ledger is used.
	PollEvery time.Duration

	db      *sql.DB
	genesis time.Time // block 0 of the simulated chain (see Height)

	mu      sync.Mutex
	subs    map[chan Event]struct{}
	closed  bool
	changed chan struct{} // closed and replaced when a hold invoice changes state
	done    chan struct{} // closed by Close: held payers stop waiting
	held    chan struct{} // one per PayInvoice running: bounds the payers a hold blocks
}

var schema = []string{
	`CREATE TABLE IF NOT EXISTS meta (
		name  TEXT PRIMARY KEY,
		value TEXT NOT NULL
	)`,
	`CREATE TABLE IF NOT EXISTS accounts (
		name         TEXT PRIMARY KEY,
		balance_msat INTEGER NOT NULL DEFAULT 0 CHECK (balance_msat >= 0)
	)`,
	// preimage is the invoice's secret: it leaves the table only once the invoice is settled.
	`CREATE TABLE IF NOT EXISTS invoices (
		payment_hash     TEXT PRIMARY KEY,
		account          TEXT NOT NULL,
		bolt11           TEXT NOT NULL,
		preimage         TEXT NOT NULL,
		amount_msat      INTEGER NOT NULL,
		description      TEXT NOT NULL,
		description_hash TEXT NOT NULL,
		created_ns       INTEGER NOT NULL,
		expires_at       INTEGER NOT NULL,
		settled_ns       INTEGER,
		paid_msat        INTEGER
	)`,
	`CREATE INDEX IF NOT EXISTS invoices_account ON invoices (account, created_ns)`,
	// one payer per hash: a ledger invoice settles once.
	`CREATE TABLE IF NOT EXISTS payments (
		payment_hash     TEXT PRIMARY KEY,
		account          TEXT NOT NULL,
		bolt11           TEXT NOT NULL,
		preimage         TEXT NOT NULL,
		amount_msat      INTEGER NOT NULL,
		description      TEXT NOT NULL,
		description_hash TEXT NOT NULL,
		created_ns       INTEGER NOT NULL,
		expires_at       INTEGER NOT NULL
	)`,
	`CREATE INDEX IF NOT EXISTS payments_account ON payments (account, created_ns)`,
	// a hold invoice is an invoices row (preimage '' until settled) plus this row; a payment
	// to it is a payments row (preimage '' until settled) whose money the payer no longer
	// has and the payee does not have yet: it is held_msat here until settle or cancel.
	`CREATE TABLE IF NOT EXISTS holds (
		payment_hash    TEXT PRIMARY KEY,
		cltv_delta      INTEGER NOT NULL,
		hold_state      TEXT NOT NULL CHECK (hold_state IN ('open', 'accepted', 'settled', 'cancelled')),
		payer           TEXT,
		held_msat       INTEGER,
		deadline_height INTEGER,
		deadline_ns     INTEGER,
		hold_settled_ns INTEGER
	)`,
	`CREATE INDEX IF NOT EXISTS holds_deadline ON holds (hold_state, deadline_ns)`,
}

// Open opens the ledger in dataDir (<dataDir>/ledger.sqlite), creating it and its node key on
// first use.
func Open(ctx context.Context, dataDir string) (*Ledger, error) {
	db, err := sqlitedb.Open(ctx, filepath.Join(dataDir, "ledger.sqlite"), schema...)
	if err != nil {
		return nil, fmt.Errorf("open ledger: %w", err)
	}
	key, err := nodeKey(ctx, db)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("open ledger: %w", err)
	}
	genesis, err := genesisTime(ctx, db)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("open ledger: %w", err)
	}
	return &Ledger{
		db:      db,
		genesis: genesis,
		key:     key,
		pubkey:  hex.EncodeToString(key.PubKey().SerializeCompressed()),
		params:  &chaincfg.RegressionNetParams,
		subs:    map[chan Event]struct{}{},
		changed: make(chan struct{}),
		done:    make(chan struct{}),
		held:    make(chan struct{}, MaxPayers),
	}, nil
}

// genesisTime loads the time of the simulated chain's block 0, the ledger's first Open.
func genesisTime(ctx context.Context, db *sql.DB) (time.Time, error) {
	if _, err := db.ExecContext(ctx, `INSERT OR IGNORE INTO meta (name, value) VALUES ('genesis_ns', ?)`,
		fmt.Sprint(time.Now().UnixNano())); err != nil {
		return time.Time{}, fmt.Errorf("store genesis: %w", err)
	}
	var ns int64
	if err := db.QueryRowContext(ctx, `SELECT CAST(value AS INTEGER) FROM meta WHERE name = 'genesis_ns'`).Scan(&ns); err != nil {
		return time.Time{}, fmt.Errorf("load genesis: %w", err)
	}
	return time.Unix(0, ns), nil
}

// nodeKey loads the node key, generating it on first use. INSERT OR IGNORE makes two
// processes opening a new ledger at once agree on one key.
func nodeKey(ctx context.Context, db *sql.DB) (*btcec.PrivateKey, error) {
	fresh, err := btcec.NewPrivateKey()
	if err != nil {
		return nil, fmt.Errorf("generate node key: %w", err)
	}
	if _, err := db.ExecContext(ctx, `INSERT OR IGNORE INTO meta (name, value) VALUES ('node_key', ?)`,
		hex.EncodeToString(fresh.Serialize())); err != nil {
		return nil, fmt.Errorf("store node key: %w", err)
	}
	var s string
	if err := db.QueryRowContext(ctx, `SELECT value FROM meta WHERE name = 'node_key'`).Scan(&s); err != nil {
		return nil, fmt.Errorf("load node key: %w", err)
	}
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != 32 {
		return nil, errors.New("load node key: stored key is not 32 hex bytes")
	}
	key, _ := btcec.PrivKeyFromBytes(b)
	return key, nil
}

// PubKey is the ledger's node public key (hex, compressed): the payee of its invoices.
func (l *Ledger) PubKey() string { return l.pubkey }

func (l *Ledger) now() time.Time {
	if l.Now != nil {
		return l.Now()
	}
	return time.Now()
}

// Close closes the database and ends every subscription.
func (l *Ledger) Close() error {
	l.mu.Lock()
	if !l.closed {
		l.closed = true
		close(l.done)
		for ch := range l.subs {
			delete(l.subs, ch)
			close(ch)
		}
	}
	l.mu.Unlock()
	return l.db.Close()
}

// Info describes the ledger's node: on regtest, at the simulated height (see Height).
func (l *Ledger) Info(ctx context.Context) (nip47.GetInfoResult, error) {
	return nip47.GetInfoResult{Alias: Alias, Pubkey: l.pubkey, Network: Network, BlockHeight: l.Height()}, nil
}

// Fund credits account with msat out of thin air. It returns ErrInvalidAmount unless msat > 0.
func (l *Ledger) Fund(ctx context.Context, account string, msat int64) error {
	if msat <= 0 {
		return ErrInvalidAmount
	}
	if _, err := l.db.ExecContext(ctx, creditSQL, account, msat); err != nil {
		return fmt.Errorf("fund %s: %w", account, err)
	}
	return nil
}

const creditSQL = `INSERT INTO accounts (name, balance_msat) VALUES (?1, ?2)
	ON CONFLICT (name) DO UPDATE SET balance_msat = balance_msat + excluded.balance_msat`

// Balance is account's balance in msats; an account never funded or paid has 0.
func (l *Ledger) Balance(ctx context.Context, account string) (int64, error) {
	if err := l.ExpireHolds(ctx); err != nil {
		return 0, fmt.Errorf("balance of %s: %w", account, err)
	}
	var msat int64
	err := l.db.QueryRowContext(ctx, `SELECT balance_msat FROM accounts WHERE name = ?`, account).Scan(&msat)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("balance of %s: %w", account, err)
	}
	return msat, nil
}

// MakeInvoice creates a regtest BOLT11 invoice payable to account. An amount of 0 makes an
// invoice without an amount. A description hash, when given, is what the invoice commits to
// (the description is then only kept for reporting).
//
// Client errors: OTHER for a negative amount, an expiry out of range or a malformed
// description hash.
func (l *Ledger) MakeInvoice(ctx context.Context, account string, p nip47.MakeInvoiceParams) (nip47.Transaction, error) {
	if p.Amount < 0 {
		return nip47.Transaction{}, nip47.Errorf(nip47.CodeOther, "amount must not be negative")
	}
	expiry, err := invoiceExpiry(p.Expiry)
	if err != nil {
		return nip47.Transaction{}, err
	}
	var preimage [32]byte
	if _, err := rand.Read(preimage[:]); err != nil {
		return nip47.Transaction{}, fmt.Errorf("make invoice: %w", err)
	}
	hash := sha256.Sum256(preimage[:])
	now := l.now()
	t, err := l.newInvoice(p, expiry, hash, 0, now)
	if err != nil {
		return nip47.Transaction{}, err
	}
	if _, err := l.db.ExecContext(ctx, `INSERT INTO invoices
		(payment_hash, account, bolt11, preimage, amount_msat, description, description_hash, created_ns, expires_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		t.PaymentHash, account, t.Invoice, hex.EncodeToString(preimage[:]), p.Amount,
		p.Description, p.DescriptionHash, now.UnixNano(), t.ExpiresAt); err != nil {
		return nip47.Transaction{}, fmt.Errorf("make invoice: store: %w", err)
	}
	return t, nil
}

// invoiceExpiry is make_invoice's expiry in seconds as a duration, DefaultInvoiceExpiry for 0.
func invoiceExpiry(seconds int64) (time.Duration, error) {
	switch {
	case seconds == 0:
		return DefaultInvoiceExpiry, nil
	case seconds < 0 || seconds > int64(maxInvoiceExpiry/time.Second):
		return 0, nip47.Errorf(nip47.CodeOther, "expiry must be within 1..%d seconds", int64(maxInvoiceExpiry/time.Second))
	}
	return time.Duration(seconds) * time.Second, nil
}

// newInvoice encodes and signs a BOLT11 invoice for hash (with a min_final_cltv_expiry of
// cltvDelta when not 0) and returns it as the pending incoming transaction it is.
func (l *Ledger) newInvoice(p nip47.MakeInvoiceParams, expiry time.Duration, hash [32]byte, cltvDelta int64, now time.Time) (nip47.Transaction, error) {
	opts := []func(*zpay32.Invoice){zpay32.Expiry(expiry)}
	if p.Amount > 0 {
		opts = append(opts, zpay32.Amount(lnwire.MilliSatoshi(p.Amount)))
	}
	if p.DescriptionHash != "" {
		b, err := hex.DecodeString(p.DescriptionHash)
		if err != nil || len(b) != 32 {
			return nip47.Transaction{}, nip47.Errorf(nip47.CodeOther, "description_hash must be 32 bytes of hex")
		}
		opts = append(opts, zpay32.DescriptionHash([32]byte(b)))
	} else {
		opts = append(opts, zpay32.Description(p.Description))
	}
	if cltvDelta > 0 {
		opts = append(opts, zpay32.CLTVExpiry(uint64(cltvDelta)))
	}
	var paymentAddr [32]byte
	if _, err := rand.Read(paymentAddr[:]); err != nil {
		return nip47.Transaction{}, fmt.Errorf("make invoice: %w", err)
	}
	opts = append(opts, zpay32.PaymentAddr(paymentAddr))
	created := now.Truncate(time.Second) // BOLT11 timestamps are whole seconds
	inv, err := zpay32.NewInvoice(l.params, hash, created, opts...)
	if err != nil {
		return nip47.Transaction{}, fmt.Errorf("make invoice: %w", err)
	}
	bolt11, err := inv.Encode(zpay32.MessageSigner{SignCompact: l.signCompact})
	if err != nil {
		return nip47.Transaction{}, fmt.Errorf("make invoice: encode: %w", err)
	}
	t := nip47.Transaction{
		Type:            nip47.TypeIncoming,
		State:           nip47.StatePending,
		Invoice:         bolt11,
		Description:     p.Description,
		DescriptionHash: p.DescriptionHash,
		PaymentHash:     hex.EncodeToString(hash[:]),
		Amount:          p.Amount,
		CreatedAt:       created.Unix(),
		ExpiresAt:       created.Add(expiry).Unix(),
	}
	return t, nil
}

// signCompact signs an invoice: zpay32 hands over the message, the signature covers its
// SHA-256.
func (l *Ledger) signCompact(msg []byte) ([]byte, error) {
	hash := sha256.Sum256(msg)
	return ecdsa.SignCompact(l.key, hash[:], true), nil
}

// PayInvoice pays one of the ledger's own invoices from account. Invoices without an amount
// are paid p.Amount. When account already paid the invoice, it returns the same preimage and
// moves no money.
//
// Paying a hold invoice (MakeHoldInvoice) debits account and holds the money: the invoice is
// accepted, its owner gets a hold_invoice_accepted event, and PayInvoice waits until the
// invoice is settled (it returns the preimage), cancelled or timed out (PAYMENT_FAILED, the
// money back), or ctx ends or the ledger closes: then it returns an error that is not a
// *nip47.Error, since the payment is still held and LookupInvoice tells its fate later. At
// most MaxPayers calls run at once; more are refused RATE_LIMITED.
//
// Client errors: INSUFFICIENT_BALANCE when account cannot cover the amount; PAYMENT_FAILED
// for an invalid invoice, another node's invoice, an unknown, expired or already settled one,
// or a missing amount.
func (l *Ledger) PayInvoice(ctx context.Context, account string, p nip47.PayInvoiceParams) (nip47.PayInvoiceResult, error) {
	inv, err := zpay32.Decode(p.Invoice, l.params)
	if err != nil {
		return nip47.PayInvoiceResult{}, nip47.Errorf(nip47.CodePaymentFailed, "invalid regtest invoice: %v", err)
	}
	if payee := hex.EncodeToString(inv.Destination.SerializeCompressed()); payee != l.pubkey {
		return nip47.PayInvoiceResult{}, nip47.Errorf(nip47.CodePaymentFailed,
			"no route to node %s: this demo ledger pays only its own invoices", payee)
	}
	amount := p.Amount
	if inv.MilliSat != nil {
		amount = int64(*inv.MilliSat)
	}
	if amount <= 0 {
		return nip47.PayInvoiceResult{}, nip47.Errorf(nip47.CodePaymentFailed, "invoice has no amount and the request gives none")
	}
	hash := hex.EncodeToString(inv.PaymentHash[:])
	select {
	case l.held <- struct{}{}:
		defer func() { <-l.held }()
	default:
		return nip47.PayInvoiceResult{}, nip47.Errorf(nip47.CodeRateLimited, "%d payments in progress; retry later", MaxPayers)
	}
	st, err := l.settle(ctx, account, hash, amount, l.now())
	if err != nil {
		return nip47.PayInvoiceResult{}, err
	}
	if st.held {
		if !st.repeat {
			l.changedState()
			l.emit(Event{Account: st.payee, Notification: nip47.Notification{Type: nip47.NotificationHoldInvoiceAccepted, Transaction: st.received}})
		}
		preimage, err := l.waitHeld(ctx, hash)
		if err != nil {
			return nip47.PayInvoiceResult{}, err
		}
		return nip47.PayInvoiceResult{Preimage: preimage}, nil
	}
	if !st.repeat {
		l.emit(Event{Account: account, Notification: nip47.Notification{Type: nip47.NotificationPaymentSent, Transaction: st.sent}})
		l.emit(Event{Account: st.payee, Notification: nip47.Notification{Type: nip47.NotificationPaymentReceived, Transaction: st.received}})
	}
	return nip47.PayInvoiceResult{Preimage: st.preimage}, nil
}

// settlement is what one PayInvoice did.
type settlement struct {
	preimage       string
	repeat         bool // account had paid this hash before; nothing moved
	held           bool // a hold invoice: the money is held, received is hold_invoice_accepted
	payee          string
	sent, received nip47.Transaction
}

// settle moves amount from account to the invoice's owner and settles the invoice, all in one
// transaction (BEGIN IMMEDIATE, see internal/sqlitedb): two payers of one invoice, in one
// process or two, are serialised and the second finds it paid.
func (l *Ledger) settle(ctx context.Context, account, hash string, amount int64, now time.Time) (st settlement, err error) {
	tx, err := l.db.BeginTx(ctx, nil)
	if err != nil {
		return st, fmt.Errorf("pay %s: %w", hash, err)
	}
	defer func() {
		if err != nil {
			tx.Rollback()
		}
	}()
	var payer string
	var paidHold sql.NullString
	err = tx.QueryRowContext(ctx, `SELECT account, preimage, hold_state FROM `+outgoingFrom+` WHERE payment_hash = ?`, hash).Scan(&payer, &st.preimage, &paidHold)
	switch {
	case err == nil && payer == account && paidHold.String == holdCancelled:
		return st, nip47.Errorf(nip47.CodePaymentFailed, "hold invoice %s was cancelled", hash)
	case err == nil && payer == account:
		st.repeat, st.held = true, paidHold.String == holdAccepted
		return st, tx.Commit()
	case err == nil:
		return st, nip47.Errorf(nip47.CodePaymentFailed, "invoice %s is already paid", hash)
	case !errors.Is(err, sql.ErrNoRows):
		return st, fmt.Errorf("pay %s: %w", hash, err)
	}

	in, hold, err := scanTransaction(tx.QueryRowContext(ctx, `SELECT `+incomingColumns+` FROM `+incomingFrom+` WHERE payment_hash = ?`, hash), &st.payee)
	switch {
	case err == nil && hold == holdCancelled:
		return st, nip47.Errorf(nip47.CodePaymentFailed, "hold invoice %s was cancelled", hash)
	case errors.Is(err, sql.ErrNoRows):
		return st, nip47.Errorf(nip47.CodePaymentFailed, "unknown invoice %s", hash)
	case err != nil:
		return st, fmt.Errorf("pay %s: %w", hash, err)
	case in.SettledAt != 0:
		return st, nip47.Errorf(nip47.CodePaymentFailed, "invoice %s is already paid", hash)
	case now.Unix() >= in.ExpiresAt:
		return st, nip47.Errorf(nip47.CodePaymentFailed, "invoice %s expired at %s", hash, time.Unix(in.ExpiresAt, 0).UTC().Format(time.RFC3339))
	}

	res, err := tx.ExecContext(ctx, `UPDATE accounts SET balance_msat = balance_msat - ?1 WHERE name = ?2 AND balance_msat >= ?1`, amount, account)
	if err != nil {
		return st, fmt.Errorf("pay %s: debit: %w", hash, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return st, fmt.Errorf("pay %s: debit: %w", hash, err)
	} else if n == 0 {
		return st, nip47.Errorf(nip47.CodeInsufficientBalance, "balance below %d msat", amount)
	}
	if hold == holdOpen {
		return l.accept(ctx, tx, st, account, in, amount, now)
	}
	if _, err := tx.ExecContext(ctx, creditSQL, st.payee, amount); err != nil {
		return st, fmt.Errorf("pay %s: credit: %w", hash, err)
	}
	if _, err := tx.ExecContext(ctx, `UPDATE invoices SET settled_ns = ?, paid_msat = ? WHERE payment_hash = ?`,
		now.UnixNano(), amount, hash); err != nil {
		return st, fmt.Errorf("pay %s: settle: %w", hash, err)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO payments
		(payment_hash, account, bolt11, preimage, amount_msat, description, description_hash, created_ns, expires_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		hash, account, in.Invoice, in.Preimage, amount, in.Description, in.DescriptionHash, now.UnixNano(), in.ExpiresAt); err != nil {
		return st, fmt.Errorf("pay %s: record: %w", hash, err)
	}
	if err := tx.Commit(); err != nil {
		return st, fmt.Errorf("pay %s: commit: %w", hash, err)
	}
	st.preimage = in.Preimage
	in.State, in.Amount, in.SettledAt = nip47.StateSettled, amount, now.Unix()
	st.received = in
	st.sent = in
	st.sent.Type = nip47.TypeOutgoing
	st.sent.CreatedAt = now.Unix()
	return st, nil
}

// emit hands ev to every subscriber that has room for it.
func (l *Ledger) emit(ev Event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for ch := range l.subs {
		select {
		case ch <- ev:
		default: // a reader this far behind loses events rather than stalling payments
		}
	}
}

// Subscribe delivers the payments this Ledger makes (payment_sent to the payer's account,
// payment_received to the payee's) until ctx ends or the ledger closes; then the channel
// closes. A subscriber more than 1024 events behind misses events.
func (l *Ledger) Subscribe(ctx context.Context) (<-chan Event, error) {
	ch := make(chan Event, subscriberBuffer)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil, ErrClosed
	}
	l.subs[ch] = struct{}{}
	context.AfterFunc(ctx, func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		if _, ok := l.subs[ch]; ok {
			delete(l.subs, ch)
			close(ch)
		}
	})
	return ch, nil
}
