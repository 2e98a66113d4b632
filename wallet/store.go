package wallet

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/sparecycles/sparecycles/internal/sqlitedb"
	"github.com/sparecycles/sparecycles/nips/nip47"
)

// store is the wallet's own state in <data>/wallet.sqlite: its NWC key, the connections, the
// request ids it has seen and every payment hash it was asked to pay. `wallet serve` and
// `wallet connect` may hold it open at once.
type store struct {
	db  *sql.DB
	now func() time.Time
}

var schema = []string{
	`CREATE TABLE IF NOT EXISTS meta (
		name  TEXT PRIMARY KEY,
		value TEXT NOT NULL
	)`,
	// spent_msat counts payments in flight and made, so that two at once cannot both fit a
	// budget that has room for one.
	`CREATE TABLE IF NOT EXISTS connections (
		client_pubkey TEXT PRIMARY KEY,
		name          TEXT NOT NULL UNIQUE,
		budget_msat   INTEGER NOT NULL CHECK (budget_msat >= 0),
		spent_msat    INTEGER NOT NULL DEFAULT 0,
		created_at    INTEGER NOT NULL
	)`,
	`CREATE TABLE IF NOT EXISTS requests (
		id      TEXT PRIMARY KEY,
		seen_at INTEGER NOT NULL
	)`,
	// a hash is recorded in_flight before the backend is asked to pay it: a repeat, or a
	// restart, never pays it a second time.
	`CREATE TABLE IF NOT EXISTS payments (
		payment_hash  TEXT PRIMARY KEY,
		client_pubkey TEXT NOT NULL,
		amount_msat   INTEGER NOT NULL,
		state         TEXT NOT NULL CHECK (state IN ('in_flight', 'paid', 'failed')),
		preimage      TEXT NOT NULL DEFAULT '',
		fees_msat     INTEGER NOT NULL DEFAULT 0,
		created_at    INTEGER NOT NULL,
		updated_at    INTEGER NOT NULL
	)`,
	`CREATE INDEX IF NOT EXISTS payments_state ON payments (state)`,
	// which connection made each invoice, so that its payment_received notification reaches
	// that connection even when the backend cannot say (lnd after a restart)
	`CREATE TABLE IF NOT EXISTS invoices (
		payment_hash TEXT PRIMARY KEY,
		account      TEXT NOT NULL,
		expires_at   INTEGER NOT NULL
	)`,
}

// Payment states.
const (
	stateInFlight = "in_flight"
	statePaid     = "paid"
	stateFailed   = "failed"
)

func openStore(ctx context.Context, dataDir string) (*store, error) {
	db, err := sqlitedb.Open(ctx, filepath.Join(dataDir, "wallet.sqlite"), schema...)
	if err != nil {
		return nil, fmt.Errorf("open wallet state: %w", err)
	}
	return &store{db: db, now: time.Now}, nil
}

func (s *store) Close() error { return s.db.Close() }

// walletKey returns the wallet's NWC key, generating it on first use. INSERT OR IGNORE makes
// a `connect` and a `serve` starting together on a new folder agree on one key.
func (s *store) walletKey(ctx context.Context) (nip47.Secret, error) {
	if _, err := s.db.ExecContext(ctx, `INSERT OR IGNORE INTO meta (name, value) VALUES ('nwc_key', ?)`,
		nip47.NewSecret().Hex()); err != nil {
		return "", fmt.Errorf("store wallet key: %w", err)
	}
	var k string
	if err := s.db.QueryRowContext(ctx, `SELECT value FROM meta WHERE name = 'nwc_key'`).Scan(&k); err != nil {
		return "", fmt.Errorf("load wallet key: %w", err)
	}
	key := nip47.Secret(k)
	if key.PubKey() == "" {
		return "", errors.New("load wallet key: stored key is not a valid secret key")
	}
	return key, nil
}

// addConnection records a connection. It returns ErrNameTaken when name is in use.
func (s *store) addConnection(ctx context.Context, clientPubKey, name string, budgetMsat int64) (err error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("add connection %s: %w", name, err)
	}
	defer rollbackOnError(tx, &err)
	var one int
	switch err := tx.QueryRowContext(ctx, `SELECT 1 FROM connections WHERE name = ?`, name).Scan(&one); {
	case err == nil:
		return fmt.Errorf("%w: %q", ErrNameTaken, name)
	case !errors.Is(err, sql.ErrNoRows):
		return fmt.Errorf("add connection %s: %w", name, err)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO connections (client_pubkey, name, budget_msat, created_at) VALUES (?, ?, ?, ?)`,
		clientPubKey, name, budgetMsat, s.now().Unix()); err != nil {
		return fmt.Errorf("add connection %s: %w", name, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("add connection %s: %w", name, err)
	}
	return nil
}

func (s *store) removeConnection(ctx context.Context, clientPubKey string) error {
	if _, err := s.db.ExecContext(ctx, `DELETE FROM connections WHERE client_pubkey = ?`, clientPubKey); err != nil {
		return fmt.Errorf("remove connection %s: %w", clientPubKey, err)
	}
	return nil
}

// connection is nip47.Service's Lookup.
func (s *store) connection(ctx context.Context, clientPubKey string) (nip47.Connection, bool, error) {
	c := nip47.Connection{ClientPubKey: clientPubKey}
	err := s.db.QueryRowContext(ctx, `SELECT name FROM connections WHERE client_pubkey = ?`, clientPubKey).Scan(&c.Name)
	if errors.Is(err, sql.ErrNoRows) {
		return c, false, nil
	}
	if err != nil {
		return c, false, fmt.Errorf("look up connection %s: %w", clientPubKey, err)
	}
	return c, true, nil
}

// clientOf returns the client pubkey of the connection named name, the account of a backend
// event.
func (s *store) clientOf(ctx context.Context, name string) (string, bool, error) {
	var pk string
	err := s.db.QueryRowContext(ctx, `SELECT client_pubkey FROM connections WHERE name = ?`, name).Scan(&pk)
	if errors.Is(err, sql.ErrNoRows) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("look up connection %s: %w", name, err)
	}
	return pk, true, nil
}

// recordInvoice remembers that the connection named account made the invoice with hash,
// until expiresAt (unix seconds; 0: a day from now).
func (s *store) recordInvoice(ctx context.Context, hash, account string, expiresAt int64) error {
	if expiresAt == 0 {
		expiresAt = s.now().Add(24 * time.Hour).Unix()
	}
	_, err := s.db.ExecContext(ctx, `INSERT OR REPLACE INTO invoices (payment_hash, account, expires_at) VALUES (?, ?, ?)`, hash, account, expiresAt)
	if err != nil {
		return fmt.Errorf("record invoice %s: %w", hash, err)
	}
	return nil
}

// invoiceAccount returns the connection that made the invoice with hash, if it was recorded.
func (s *store) invoiceAccount(ctx context.Context, hash string) (string, bool, error) {
	var account string
	err := s.db.QueryRowContext(ctx, `SELECT account FROM invoices WHERE payment_hash = ?`, hash).Scan(&account)
	if errors.Is(err, sql.ErrNoRows) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("look up invoice %s: %w", hash, err)
	}
	return account, true, nil
}

// pruneInvoices forgets the invoices that expired before before.
func (s *store) pruneInvoices(ctx context.Context, before time.Time) (int64, error) {
	res, err := s.db.ExecContext(ctx, `DELETE FROM invoices WHERE expires_at < ?`, before.Unix())
	if err != nil {
		return 0, fmt.Errorf("prune invoices: %w", err)
	}
	return res.RowsAffected()
}

// pruneSeen forgets the request ids recorded before before and returns how many it forgot.
func (s *store) pruneSeen(ctx context.Context, before time.Time) (int64, error) {
	res, err := s.db.ExecContext(ctx, `DELETE FROM requests WHERE seen_at < ?`, before.Unix())
	if err != nil {
		return 0, fmt.Errorf("prune request ids: %w", err)
	}
	return res.RowsAffected()
}

// seen is nip47.Service's Seen: it records a request id and reports whether it is new.
func (s *store) seen(ctx context.Context, requestID string) (bool, error) {
	res, err := s.db.ExecContext(ctx, `INSERT OR IGNORE INTO requests (id, seen_at) VALUES (?, ?)`, requestID, s.now().Unix())
	if err != nil {
		return false, fmt.Errorf("record request %s: %w", requestID, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("record request %s: %w", requestID, err)
	}
	return n == 1, nil
}

// beginPayment records that client is about to pay hash for amount msats, charging the
// amount to its budget, in one transaction. When client already paid hash it returns the
// stored preimage instead, and the caller must not pay.
//
// Client errors: OTHER "payment in progress" while hash is in flight; QUOTA_EXCEEDED when the
// amount does not fit the budget; PAYMENT_FAILED when another connection paid hash.
func (s *store) beginPayment(ctx context.Context, client, hash string, amount int64) (preimage string, err error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return "", fmt.Errorf("begin payment %s: %w", hash, err)
	}
	defer rollbackOnError(tx, &err)
	var payer, state string
	err = tx.QueryRowContext(ctx, `SELECT client_pubkey, state, preimage FROM payments WHERE payment_hash = ?`, hash).Scan(&payer, &state, &preimage)
	switch {
	case errors.Is(err, sql.ErrNoRows), err == nil && state == stateFailed:
	case err != nil:
		return "", fmt.Errorf("begin payment %s: %w", hash, err)
	case state == stateInFlight:
		return "", nip47.Errorf(nip47.CodeOther, "payment in progress")
	case payer != client:
		return "", nip47.Errorf(nip47.CodePaymentFailed, "invoice already paid through another connection")
	default: // paid by client
		return preimage, tx.Commit()
	}
	var budget, spent int64
	if err := tx.QueryRowContext(ctx, `SELECT budget_msat, spent_msat FROM connections WHERE client_pubkey = ?`, client).Scan(&budget, &spent); err != nil {
		return "", fmt.Errorf("begin payment %s: budget: %w", hash, err)
	}
	if budget > 0 && spent+amount > budget {
		return "", nip47.Errorf(nip47.CodeQuotaExceeded, "payment of %d msat exceeds the connection's budget (%d of %d msat left)", amount, max(budget-spent, 0), budget)
	}
	now := s.now().Unix()
	if _, err := tx.ExecContext(ctx, `UPDATE connections SET spent_msat = spent_msat + ? WHERE client_pubkey = ?`, amount, client); err != nil {
		return "", fmt.Errorf("begin payment %s: budget: %w", hash, err)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO payments (payment_hash, client_pubkey, amount_msat, state, created_at, updated_at)
		VALUES (?1, ?2, ?3, 'in_flight', ?4, ?4)
		ON CONFLICT (payment_hash) DO UPDATE SET client_pubkey = ?2, amount_msat = ?3, state = 'in_flight', updated_at = ?4`,
		hash, client, amount, now); err != nil {
		return "", fmt.Errorf("begin payment %s: %w", hash, err)
	}
	if err := tx.Commit(); err != nil {
		return "", fmt.Errorf("begin payment %s: %w", hash, err)
	}
	return "", nil
}

// finishPayment records that an in-flight payment succeeded; fees count against the budget.
func (s *store) finishPayment(ctx context.Context, hash, preimage string, fees int64) (err error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("finish payment %s: %w", hash, err)
	}
	defer rollbackOnError(tx, &err)
	var client string
	if err := tx.QueryRowContext(ctx, `UPDATE payments SET state = 'paid', preimage = ?, fees_msat = ?, updated_at = ?
		WHERE payment_hash = ? AND state = 'in_flight' RETURNING client_pubkey`,
		preimage, fees, s.now().Unix(), hash).Scan(&client); err != nil {
		return fmt.Errorf("finish payment %s: %w", hash, err)
	}
	if _, err := tx.ExecContext(ctx, `UPDATE connections SET spent_msat = spent_msat + ? WHERE client_pubkey = ?`, fees, client); err != nil {
		return fmt.Errorf("finish payment %s: %w", hash, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("finish payment %s: %w", hash, err)
	}
	return nil
}

// failPayment records that an in-flight payment did not happen and gives its amount back to
// the budget; the hash may then be paid again.
func (s *store) failPayment(ctx context.Context, hash string) (err error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("fail payment %s: %w", hash, err)
	}
	defer rollbackOnError(tx, &err)
	var client string
	var amount int64
	if err := tx.QueryRowContext(ctx, `UPDATE payments SET state = 'failed', updated_at = ?
		WHERE payment_hash = ? AND state = 'in_flight' RETURNING client_pubkey, amount_msat`,
		s.now().Unix(), hash).Scan(&client, &amount); err != nil {
		return fmt.Errorf("fail payment %s: %w", hash, err)
	}
	if _, err := tx.ExecContext(ctx, `UPDATE connections SET spent_msat = max(spent_msat - ?, 0) WHERE client_pubkey = ?`, amount, client); err != nil {
		return fmt.Errorf("fail payment %s: %w", hash, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("fail payment %s: %w", hash, err)
	}
	return nil
}

// inFlight is a payment recorded as in flight, with its connection's name (its account).
type inFlight struct{ hash, client, name string }

// paymentsInFlight lists the payments in flight: at start, those a previous run left behind.
func (s *store) paymentsInFlight(ctx context.Context) ([]inFlight, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT p.payment_hash, p.client_pubkey, COALESCE(c.name, '')
		FROM payments p LEFT JOIN connections c USING (client_pubkey) WHERE p.state = 'in_flight'`)
	if err != nil {
		return nil, fmt.Errorf("list payments in flight: %w", err)
	}
	defer rows.Close()
	var out []inFlight
	for rows.Next() {
		var p inFlight
		if err := rows.Scan(&p.hash, &p.client, &p.name); err != nil {
			return nil, fmt.Errorf("list payments in flight: %w", err)
		}
		out = append(out, p)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list payments in flight: %w", err)
	}
	return out, nil
}

// rollbackOnError rolls tx back when the function it was deferred in returns an error.
func rollbackOnError(tx *sql.Tx, err *error) {
	if *err != nil {
		tx.Rollback()
	}
}
