package client

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/sparecycles/sparecycles/internal/invoice"
	"github.com/sparecycles/sparecycles/internal/sqlitedb"
	"github.com/sparecycles/sparecycles/nips/escrow"
	"github.com/sparecycles/sparecycles/nips/nip47"
)

// Payment states in the client's store. "paying" is written before the wallet is asked, so
// after a crash or a timeout the client asks the wallet what happened instead of paying again.
const (
	PayPaying = "paying"
	PayPaid   = "paid"
	PayFailed = "failed"
)

// Payment is one invoice the client paid or tried to.
type Payment struct {
	PaymentHash string
	JobID       string
	Worker      string
	Bolt11      string
	AmountMsat  int64
	FeeMsat     int64
	State       string
	Preimage    string
}

type payStore struct{ db *sql.DB }

func openPayStore(ctx context.Context, dir string) (*payStore, error) {
	db, err := sqlitedb.Open(ctx, filepath.Join(dir, "client.sqlite"), `CREATE TABLE IF NOT EXISTS payments (
		payment_hash TEXT PRIMARY KEY,
		job_id TEXT NOT NULL,
		worker TEXT NOT NULL,
		bolt11 TEXT NOT NULL,
		amount_msat INTEGER NOT NULL,
		fee_msat INTEGER NOT NULL DEFAULT 0,
		state TEXT NOT NULL,
		preimage TEXT NOT NULL DEFAULT '',
		updated_at INTEGER NOT NULL
	)`, `CREATE INDEX IF NOT EXISTS payments_job ON payments (job_id)`)
	if err != nil {
		return nil, err
	}
	return &payStore{db}, nil
}

// begin records an attempt to pay p unless one exists; it returns the existing row if so.
func (s *payStore) begin(ctx context.Context, p Payment) (existing *Payment, err error) {
	res, err := s.db.ExecContext(ctx, `INSERT OR IGNORE INTO payments (payment_hash, job_id, worker, bolt11, amount_msat, state, updated_at)
		VALUES (?, ?, ?, ?, ?, ?, ?)`, p.PaymentHash, p.JobID, p.Worker, p.Bolt11, p.AmountMsat, PayPaying, time.Now().Unix())
	if err != nil {
		return nil, fmt.Errorf("record payment: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 1 {
		return nil, nil
	}
	old, err := s.get(ctx, "payment_hash", p.PaymentHash)
	if err != nil {
		return nil, err
	}
	return &old[0], nil
}

func (s *payStore) finish(ctx context.Context, hash, state, preimage string, fee int64) error {
	_, err := s.db.ExecContext(ctx, `UPDATE payments SET state = ?, preimage = ?, fee_msat = ?, updated_at = ? WHERE payment_hash = ?`,
		state, preimage, fee, time.Now().Unix(), hash)
	return err
}

func (s *payStore) get(ctx context.Context, col, val string) ([]Payment, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT payment_hash, job_id, worker, bolt11, amount_msat, fee_msat, state, preimage FROM payments WHERE `+col+` = ?`, val)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Payment
	for rows.Next() {
		var p Payment
		if err := rows.Scan(&p.PaymentHash, &p.JobID, &p.Worker, &p.Bolt11, &p.AmountMsat, &p.FeeMsat, &p.State, &p.Preimage); err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	if len(out) == 0 && rows.Err() == nil {
		return nil, sql.ErrNoRows
	}
	return out, rows.Err()
}

// Payments returns the payments recorded for a job.
func (c *Client) Payments(ctx context.Context, jobID string) ([]Payment, error) {
	ps, err := c.store.get(ctx, "job_id", jobID)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	return ps, err
}

// Quote is a worker's offer for a job: the amount tag of its payment-required feedback.
type Quote struct {
	JobID      string
	Worker     string
	AmountMsat int64
	Bolt11     string
	BidMsat    int64
	// Escrow is an escrow quote's terms (its "escrow" tag): the invoice is a hold invoice for
	// Escrow.PaymentHash. nil for a plain quote.
	Escrow *escrow.Quote
	// Description, when set, is the exact description the invoice must carry: a stream part's
	// (nips/stream.md). "" asks only that it binds the job.
	Description string
}

// Pay checks the quote's invoice and pays it through the wallet, at most once per payment
// hash, ever: the attempt is recorded before the wallet is asked; a retry after a crash or a
// timeout asks the wallet (lookup_invoice) what happened before paying.
//
// Errors: ErrRefusedInvoice (wrapping the internal/invoice reason), ErrPaymentFailed (the
// wallet said so), ErrWalletDown (no answer: the payment state is unknown and stays
// "paying"; Pay again later resolves it).
func (c *Client) Pay(ctx context.Context, q Quote) (Payment, error) {
	if c.wallet == nil {
		return Payment{}, fmt.Errorf("pay job %s: %w", q.JobID, ErrNoWallet)
	}
	network, err := c.network(ctx)
	if err != nil {
		return Payment{}, fmt.Errorf("pay job %s: %w: %v", q.JobID, ErrWalletDown, err)
	}
	inv, err := invoice.Check(q.Bolt11, invoice.Expect{
		JobID: q.JobID, BidMsat: q.BidMsat, QuotedMsat: q.AmountMsat, Network: network, MinLife: 10 * time.Second, Description: q.Description,
	})
	if err == nil {
		err = checkEscrow(q, inv.PaymentHash)
	}
	if err != nil {
		return Payment{}, fmt.Errorf("pay job %s: %w: %w", q.JobID, ErrRefusedInvoice, err)
	}
	p := Payment{PaymentHash: inv.PaymentHash, JobID: q.JobID, Worker: q.Worker, Bolt11: q.Bolt11, AmountMsat: inv.MSatoshi, State: PayPaying}
	old, err := c.store.begin(ctx, p)
	if err != nil {
		return p, err
	}
	if old != nil {
		switch old.State {
		case PayPaid:
			return *old, nil // paid before: never again
		case PayPaying:
			// an earlier attempt's outcome is unknown: ask before paying
			tx, err := c.wallet.LookupInvoice(ctx, nip47.LookupInvoiceParams{PaymentHash: p.PaymentHash})
			switch {
			case err == nil && tx.Preimage != "" && preimageMatches(tx.Preimage, p.PaymentHash):
				c.store.finish(ctx, p.PaymentHash, PayPaid, tx.Preimage, tx.FeesPaid)
				p.State, p.Preimage, p.FeeMsat = PayPaid, tx.Preimage, tx.FeesPaid
				return p, nil
			case err == nil && (tx.State == nip47.StatePending || tx.State == nip47.StateAccepted):
				// still in flight (an escrow payment stays so while locked): never pay again
				return p, fmt.Errorf("pay job %s: %w: the earlier payment is still in progress", q.JobID, ErrWalletDown)
			}
		case PayFailed:
			c.store.finish(ctx, p.PaymentHash, PayPaying, "", 0)
		}
	}
	res, err := c.wallet.PayInvoice(ctx, q.Bolt11, 0)
	switch {
	case err == nil && preimageMatches(res.Preimage, p.PaymentHash):
		if err := c.store.finish(ctx, p.PaymentHash, PayPaid, res.Preimage, res.FeesPaid); err != nil {
			return p, err
		}
		p.State, p.Preimage, p.FeeMsat = PayPaid, res.Preimage, res.FeesPaid
		return p, nil
	case err == nil:
		return p, fmt.Errorf("pay job %s: %w: the wallet's preimage does not match the payment hash", q.JobID, ErrPaymentFailed)
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled):
		return p, fmt.Errorf("pay job %s: %w: %v (recorded as in progress; it will not be paid twice)", q.JobID, ErrWalletDown, err)
	default:
		var nerr *nip47.Error
		if errors.As(err, &nerr) {
			c.store.finish(ctx, p.PaymentHash, PayFailed, "", 0)
			p.State = PayFailed
			return p, fmt.Errorf("pay job %s: %w: %w", q.JobID, ErrPaymentFailed, err)
		}
		return p, fmt.Errorf("pay job %s: %w: %v", q.JobID, ErrWalletDown, err)
	}
}

func preimageMatches(preimage, hash string) bool {
	b, err := hex.DecodeString(preimage)
	if err != nil {
		return false
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:]) == hash
}
