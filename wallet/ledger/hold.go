package ledger

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/sparecycles/sparecycles/nips/nip47"
)

// The ledger's simulated chain and hold limits.
const (
	// BlockInterval is the simulated chain's block time: the ledger's height (Height, get_info's
	// block_height) is the number of whole BlockIntervals since the ledger was first opened.
	BlockInterval = 10 * time.Minute
	// DefaultCLTVExpiryDelta is a hold invoice's min_cltv_expiry_delta when make_hold_invoice
	// gives none (lnd's default): a hold lasts about 13 hours.
	DefaultCLTVExpiryDelta = 80
	// MaxCLTVExpiryDelta bounds min_cltv_expiry_delta: a hold lasts at most about two weeks.
	MaxCLTVExpiryDelta = 2016
	// MaxPayers bounds the PayInvoice calls running at once, held ones included.
	MaxPayers = 256
	// DefaultPollEvery is how often a held PayInvoice reads the database when nothing in this
	// process woke it.
	DefaultPollEvery = time.Second
)

// Hold invoice states (holds.hold_state).
const (
	holdOpen      = "open"
	holdAccepted  = "accepted"
	holdSettled   = "settled"
	holdCancelled = "cancelled"
)

// Height is the simulated chain's height now: whole BlockIntervals since the ledger's first
// Open. A payment to a hold invoice is held until the height reaches the invoice's
// settle_deadline, the height when it was accepted plus its min_cltv_expiry_delta (the
// ledger's analogue of the HTLC's CLTV expiry); then it is cancelled and the payer refunded.
func (l *Ledger) Height() int64 { return l.heightAt(l.now()) }

func (l *Ledger) heightAt(t time.Time) int64 {
	return max(int64(t.Sub(l.genesis)/BlockInterval), 0)
}

// blockTime is when the simulated chain reaches height.
func (l *Ledger) blockTime(height int64) time.Time {
	return l.genesis.Add(time.Duration(height) * BlockInterval)
}

// MakeHoldInvoice creates a regtest BOLT11 hold invoice for the caller's p.PaymentHash,
// payable to account, as MakeInvoice does otherwise; the ledger never learns the preimage
// until SettleHoldInvoice. p.MinCLTVExpiryDelta (default DefaultCLTVExpiryDelta, at most
// MaxCLTVExpiryDelta) is in the invoice and sets how many simulated blocks a payment is held.
//
// Client errors: OTHER for a malformed or already used payment hash, a negative amount, an
// expiry or delta out of range, or a malformed description hash.
func (l *Ledger) MakeHoldInvoice(ctx context.Context, account string, p nip47.MakeHoldInvoiceParams) (nip47.Transaction, error) {
	b, err := hex.DecodeString(p.PaymentHash)
	if err != nil || len(b) != 32 {
		return nip47.Transaction{}, nip47.Errorf(nip47.CodeOther, "payment_hash must be 32 bytes of hex")
	}
	hash := [32]byte(b)
	delta := p.MinCLTVExpiryDelta
	switch {
	case delta == 0:
		delta = DefaultCLTVExpiryDelta
	case delta < 0 || delta > MaxCLTVExpiryDelta:
		return nip47.Transaction{}, nip47.Errorf(nip47.CodeOther, "min_cltv_expiry_delta must be within 1..%d", MaxCLTVExpiryDelta)
	}
	if p.Amount < 0 {
		return nip47.Transaction{}, nip47.Errorf(nip47.CodeOther, "amount must not be negative")
	}
	expiry, err := invoiceExpiry(p.Expiry)
	if err != nil {
		return nip47.Transaction{}, err
	}
	now := l.now()
	mp := nip47.MakeInvoiceParams{Amount: p.Amount, Description: p.Description, DescriptionHash: p.DescriptionHash}
	t, err := l.newInvoice(mp, expiry, hash, delta, now)
	if err != nil {
		return nip47.Transaction{}, err
	}
	tx, err := l.db.BeginTx(ctx, nil)
	if err != nil {
		return nip47.Transaction{}, fmt.Errorf("make hold invoice: %w", err)
	}
	defer tx.Rollback()
	res, err := tx.ExecContext(ctx, `INSERT OR IGNORE INTO invoices
		(payment_hash, account, bolt11, preimage, amount_msat, description, description_hash, created_ns, expires_at)
		VALUES (?, ?, ?, '', ?, ?, ?, ?, ?)`,
		t.PaymentHash, account, t.Invoice, p.Amount, p.Description, p.DescriptionHash, now.UnixNano(), t.ExpiresAt)
	if err != nil {
		return nip47.Transaction{}, fmt.Errorf("make hold invoice: store: %w", err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return nip47.Transaction{}, fmt.Errorf("make hold invoice: store: %w", err)
	} else if n == 0 {
		return nip47.Transaction{}, nip47.Errorf(nip47.CodeOther, "payment_hash %s is already used by an invoice", t.PaymentHash)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO holds (payment_hash, cltv_delta, hold_state) VALUES (?, ?, 'open')`,
		t.PaymentHash, delta); err != nil {
		return nip47.Transaction{}, fmt.Errorf("make hold invoice: store: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return nip47.Transaction{}, fmt.Errorf("make hold invoice: commit: %w", err)
	}
	return t, nil
}

// accept finishes settle for an open hold invoice, in its transaction (the payer is already
// debited): the payment is recorded without a preimage and the invoice accepted.
func (l *Ledger) accept(ctx context.Context, tx *sql.Tx, st settlement, account string, in nip47.Transaction, amount int64, now time.Time) (settlement, error) {
	hash := in.PaymentHash
	var delta int64
	if err := tx.QueryRowContext(ctx, `SELECT cltv_delta FROM holds WHERE payment_hash = ?`, hash).Scan(&delta); err != nil {
		return st, fmt.Errorf("pay %s: hold: %w", hash, err)
	}
	deadline := l.heightAt(now) + delta
	if _, err := tx.ExecContext(ctx, `UPDATE holds SET hold_state = 'accepted', payer = ?, held_msat = ?,
		deadline_height = ?, deadline_ns = ? WHERE payment_hash = ? AND hold_state = 'open'`,
		account, amount, deadline, l.blockTime(deadline).UnixNano(), hash); err != nil {
		return st, fmt.Errorf("pay %s: accept: %w", hash, err)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO payments
		(payment_hash, account, bolt11, preimage, amount_msat, description, description_hash, created_ns, expires_at)
		VALUES (?, ?, ?, '', ?, ?, ?, ?, ?)`,
		hash, account, in.Invoice, amount, in.Description, in.DescriptionHash, now.UnixNano(), in.ExpiresAt); err != nil {
		return st, fmt.Errorf("pay %s: record: %w", hash, err)
	}
	if err := tx.Commit(); err != nil {
		return st, fmt.Errorf("pay %s: commit: %w", hash, err)
	}
	st.held = true
	in.State, in.Amount, in.Preimage, in.SettleDeadline = nip47.StateAccepted, amount, "", deadline
	st.received = in
	return st, nil
}

// waitHeld waits until the held payment of hash is settled (its preimage) or cancelled
// (PAYMENT_FAILED), expiring it once its deadline passes. It wakes when this process changes
// a hold and at least every PollEvery, for changes made by another process. When ctx ends or
// the ledger closes it returns an error that is not a *nip47.Error: the payment is still held.
func (l *Ledger) waitHeld(ctx context.Context, hash string) (string, error) {
	poll := l.PollEvery
	if poll <= 0 {
		poll = DefaultPollEvery
	}
	timer := time.NewTimer(poll)
	defer timer.Stop()
	for {
		changed := l.changes()
		if err := l.ExpireHolds(ctx); err != nil {
			return "", fmt.Errorf("pay %s: held, outcome unknown: %w", hash, err)
		}
		var state, preimage string
		err := l.db.QueryRowContext(ctx, `SELECT hold_state, preimage FROM `+outgoingFrom+` WHERE payment_hash = ?`, hash).Scan(&state, &preimage)
		switch {
		case err != nil:
			return "", fmt.Errorf("pay %s: held, outcome unknown: %w", hash, err)
		case state == holdSettled:
			return preimage, nil
		case state == holdCancelled:
			return "", nip47.Errorf(nip47.CodePaymentFailed, "hold invoice %s was cancelled or timed out; the payment is refunded", hash)
		}
		timer.Reset(poll)
		select {
		case <-changed:
		case <-timer.C:
		case <-ctx.Done():
			return "", fmt.Errorf("pay %s: held, outcome unknown: %w", hash, ctx.Err())
		case <-l.done:
			return "", fmt.Errorf("pay %s: held, outcome unknown: %w", hash, ErrClosed)
		}
	}
}

// changes returns a channel that closes at the next changedState.
func (l *Ledger) changes() <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.changed
}

// changedState wakes every held PayInvoice of this process to read its hold again.
func (l *Ledger) changedState() {
	l.mu.Lock()
	defer l.mu.Unlock()
	close(l.changed)
	l.changed = make(chan struct{})
}

// heldInvoice is a hold invoice as settle and cancel see it.
type heldInvoice struct {
	state    string
	payer    string
	heldMsat int64
	deadline time.Time
	received nip47.Transaction
}

// holdOf reads account's hold invoice of hash in tx.
func holdOf(ctx context.Context, tx *sql.Tx, account, hash string) (heldInvoice, error) {
	var h heldInvoice
	var owner string
	var payer sql.NullString
	var held, deadlineNS sql.NullInt64
	t, state, err := scanTransaction(tx.QueryRowContext(ctx, `SELECT `+incomingColumns+`
		FROM `+incomingFrom+` WHERE payment_hash = ? AND account = ?`, hash, account), &owner)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return h, nip47.Errorf(nip47.CodeNotFound, "no hold invoice %s", hash)
	case err != nil:
		return h, err
	case state == "":
		return h, nip47.Errorf(nip47.CodeNotFound, "invoice %s is not a hold invoice", hash)
	}
	if err := tx.QueryRowContext(ctx, `SELECT payer, held_msat, deadline_ns FROM holds WHERE payment_hash = ?`, hash).
		Scan(&payer, &held, &deadlineNS); err != nil {
		return h, err
	}
	h.state, h.payer, h.heldMsat, h.received = state, payer.String, held.Int64, t
	if deadlineNS.Valid {
		h.deadline = time.Unix(0, deadlineNS.Int64)
	}
	return h, nil
}

// refund cancels the hold of hash in tx, giving held money back to its payer.
func refund(ctx context.Context, tx *sql.Tx, hash string, h heldInvoice) error {
	if h.state == holdAccepted {
		if _, err := tx.ExecContext(ctx, creditSQL, h.payer, h.heldMsat); err != nil {
			return fmt.Errorf("refund: %w", err)
		}
	}
	if _, err := tx.ExecContext(ctx, `UPDATE holds SET hold_state = 'cancelled' WHERE payment_hash = ?`, hash); err != nil {
		return fmt.Errorf("cancel: %w", err)
	}
	return nil
}

// SettleHoldInvoice settles account's accepted hold invoice for sha256(preimage): in one
// transaction the held money goes to account, the invoice is settled and the payer's payment
// gets the preimage. Then payment_received (account) and payment_sent (payer) are emitted and
// the payer's PayInvoice returns the preimage. Settling a settled invoice is not an error.
//
// Client errors: OTHER for a malformed preimage or an invoice not accepted (open, cancelled,
// or its hold timed out, which cancels it); NOT_FOUND when account has no such hold invoice.
func (l *Ledger) SettleHoldInvoice(ctx context.Context, account, preimage string) error {
	b, err := hex.DecodeString(preimage)
	if err != nil || len(b) != 32 {
		return nip47.Errorf(nip47.CodeOther, "preimage must be 32 bytes of hex")
	}
	sum := sha256.Sum256(b)
	hash := hex.EncodeToString(sum[:])
	now := l.now()
	tx, err := l.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("settle %s: %w", hash, err)
	}
	defer tx.Rollback()
	h, err := holdOf(ctx, tx, account, hash)
	if err != nil {
		return fmt.Errorf("settle %s: %w", hash, err)
	}
	switch h.state {
	case holdSettled:
		return nil
	case holdOpen:
		return nip47.Errorf(nip47.CodeOther, "hold invoice %s has no payment to settle yet", hash)
	case holdCancelled:
		return nip47.Errorf(nip47.CodeOther, "hold invoice %s was cancelled", hash)
	}
	if !now.Before(h.deadline) {
		if err := refund(ctx, tx, hash, h); err != nil {
			return fmt.Errorf("settle %s: %w", hash, err)
		}
		if err := tx.Commit(); err != nil {
			return fmt.Errorf("settle %s: commit: %w", hash, err)
		}
		l.changedState()
		return nip47.Errorf(nip47.CodeOther, "hold invoice %s timed out at height %d and was cancelled", hash, h.received.SettleDeadline)
	}
	if _, err := tx.ExecContext(ctx, creditSQL, account, h.heldMsat); err != nil {
		return fmt.Errorf("settle %s: credit: %w", hash, err)
	}
	for _, q := range []string{
		`UPDATE invoices SET preimage = ?1, settled_ns = ?2, paid_msat = ?3 WHERE payment_hash = ?4`,
		`UPDATE payments SET preimage = ?1 WHERE payment_hash = ?4`,
		`UPDATE holds SET hold_state = 'settled', hold_settled_ns = ?2 WHERE payment_hash = ?4`,
	} {
		if _, err := tx.ExecContext(ctx, q, preimage, now.UnixNano(), h.heldMsat, hash); err != nil {
			return fmt.Errorf("settle %s: %w", hash, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("settle %s: commit: %w", hash, err)
	}
	l.changedState()
	received := h.received
	received.State, received.Preimage, received.Amount, received.SettledAt, received.SettleDeadline =
		nip47.StateSettled, preimage, h.heldMsat, now.Unix(), 0
	sent := received
	sent.Type = nip47.TypeOutgoing
	l.emit(Event{Account: h.payer, Notification: nip47.Notification{Type: nip47.NotificationPaymentSent, Transaction: sent}})
	l.emit(Event{Account: account, Notification: nip47.Notification{Type: nip47.NotificationPaymentReceived, Transaction: received}})
	return nil
}

// CancelHoldInvoice cancels account's open or accepted hold invoice: in one transaction a held
// payment goes back to its payer (whose PayInvoice then fails PAYMENT_FAILED) and the invoice
// can no longer be paid. Cancelling a cancelled invoice is not an error.
//
// Client errors: OTHER for a malformed hash or a settled invoice; NOT_FOUND when account has
// no such hold invoice.
func (l *Ledger) CancelHoldInvoice(ctx context.Context, account, paymentHash string) error {
	if b, err := hex.DecodeString(paymentHash); err != nil || len(b) != 32 {
		return nip47.Errorf(nip47.CodeOther, "payment_hash must be 32 bytes of hex")
	}
	tx, err := l.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("cancel %s: %w", paymentHash, err)
	}
	defer tx.Rollback()
	h, err := holdOf(ctx, tx, account, paymentHash)
	if err != nil {
		return fmt.Errorf("cancel %s: %w", paymentHash, err)
	}
	switch h.state {
	case holdCancelled:
		return nil
	case holdSettled:
		return nip47.Errorf(nip47.CodeOther, "hold invoice %s is already settled", paymentHash)
	}
	if err := refund(ctx, tx, paymentHash, h); err != nil {
		return fmt.Errorf("cancel %s: %w", paymentHash, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("cancel %s: commit: %w", paymentHash, err)
	}
	l.changedState()
	return nil
}

// ExpireHolds cancels every accepted hold whose settle_deadline height has been reached,
// refunding its payer. Held PayInvoice calls, LookupInvoice, ListTransactions and Balance run
// it, so a hold times out even when nobody waits for it.
func (l *Ledger) ExpireHolds(ctx context.Context) error {
	now := l.now().UnixNano()
	var n int
	if err := l.db.QueryRowContext(ctx, `SELECT count(*) FROM holds WHERE hold_state = 'accepted' AND deadline_ns <= ?`, now).Scan(&n); err != nil {
		return fmt.Errorf("expire holds: %w", err)
	}
	if n == 0 { // the common case reads only, without taking the write lock
		return nil
	}
	tx, err := l.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("expire holds: %w", err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `UPDATE accounts SET balance_msat = balance_msat + (
			SELECT SUM(held_msat) FROM holds WHERE payer = accounts.name AND hold_state = 'accepted' AND deadline_ns <= ?1)
		WHERE name IN (SELECT payer FROM holds WHERE hold_state = 'accepted' AND deadline_ns <= ?1)`, now); err != nil {
		return fmt.Errorf("expire holds: refund: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `UPDATE holds SET hold_state = 'cancelled' WHERE hold_state = 'accepted' AND deadline_ns <= ?`, now); err != nil {
		return fmt.Errorf("expire holds: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("expire holds: commit: %w", err)
	}
	l.changedState()
	return nil
}
