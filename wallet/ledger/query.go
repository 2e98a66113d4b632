package ledger

import (
	"context"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/lightningnetwork/lnd/zpay32"

	"github.com/sparecycles/sparecycles/nips/nip47"
)

// incomingColumns and outgoingColumns read an invoice or a payment, FROM incomingFrom or
// outgoingFrom, in the shape scanTransaction expects. A payment settles when it is made,
// unless it pays a hold invoice: then when the invoice settles.
const (
	incomingColumns = `'incoming' AS type, account, bolt11, preimage, COALESCE(paid_msat, amount_msat) AS amount,
		description, description_hash, payment_hash, created_ns, expires_at, settled_ns, hold_state, deadline_height`
	outgoingColumns = `'outgoing', account, bolt11, preimage, amount_msat,
		description, description_hash, payment_hash, created_ns, expires_at,
		CASE WHEN hold_state IS NULL THEN created_ns WHEN hold_state = 'settled' THEN hold_settled_ns END,
		hold_state, deadline_height`
	incomingFrom = `invoices LEFT JOIN holds USING (payment_hash)`
	outgoingFrom = `payments LEFT JOIN holds USING (payment_hash)`
)

// scanTransaction reads one row of incomingColumns or outgoingColumns, and the state of its
// hold invoice ("" for an ordinary one). The preimage is included whatever the state: callers
// hand rows out through report, which drops it from unsettled invoices.
func scanTransaction(row interface{ Scan(...any) error }, account *string) (nip47.Transaction, string, error) {
	var t nip47.Transaction
	var createdNS int64
	var settledNS, deadline sql.NullInt64
	var hold sql.NullString
	if err := row.Scan(&t.Type, account, &t.Invoice, &t.Preimage, &t.Amount, &t.Description,
		&t.DescriptionHash, &t.PaymentHash, &createdNS, &t.ExpiresAt, &settledNS, &hold, &deadline); err != nil {
		return t, "", err
	}
	t.CreatedAt = time.Unix(0, createdNS).Unix()
	if settledNS.Valid {
		t.SettledAt = time.Unix(0, settledNS.Int64).Unix()
	}
	if hold.String == holdAccepted {
		t.SettleDeadline = deadline.Int64
	}
	return t, hold.String, nil
}

// report fills in a stored transaction's state as of now and keeps an unsettled invoice's
// preimage secret. A held payment is "accepted" to its payee and "pending" to its payer; a
// cancelled hold invoice and its payment are "failed".
func report(t nip47.Transaction, hold string, now time.Time) nip47.Transaction {
	switch {
	case hold == holdCancelled:
		t.State, t.Preimage = nip47.StateFailed, ""
	case hold == holdAccepted && t.Type == nip47.TypeIncoming:
		t.State, t.Preimage = nip47.StateAccepted, ""
	case hold == holdAccepted:
		t.State, t.Preimage = nip47.StatePending, ""
	case t.SettledAt != 0:
		t.State = nip47.StateSettled
	case now.Unix() >= t.ExpiresAt:
		t.State, t.Preimage = nip47.StateExpired, ""
	default:
		t.State, t.Preimage = nip47.StatePending, ""
	}
	return t
}

// LookupInvoice finds account's invoice or payment by payment hash or by invoice; an
// account's own invoice wins over its payment of the same hash.
//
// Client errors: NOT_FOUND when account has neither; OTHER when the params name nothing or
// the invoice cannot be read.
func (l *Ledger) LookupInvoice(ctx context.Context, account string, p nip47.LookupInvoiceParams) (nip47.Transaction, error) {
	hash := p.PaymentHash
	switch {
	case hash != "":
		if b, err := hex.DecodeString(hash); err != nil || len(b) != 32 {
			return nip47.Transaction{}, nip47.Errorf(nip47.CodeOther, "payment_hash must be 32 bytes of hex")
		}
	case p.Invoice != "":
		inv, err := zpay32.Decode(p.Invoice, l.params)
		if err != nil {
			return nip47.Transaction{}, nip47.Errorf(nip47.CodeNotFound, "not a regtest invoice this ledger knows: %v", err)
		}
		hash = hex.EncodeToString(inv.PaymentHash[:])
	default:
		return nip47.Transaction{}, nip47.Errorf(nip47.CodeOther, "give payment_hash or invoice")
	}
	if err := l.ExpireHolds(ctx); err != nil {
		return nip47.Transaction{}, fmt.Errorf("lookup %s: %w", hash, err)
	}
	var owner string
	for _, q := range []string{
		`SELECT ` + incomingColumns + ` FROM ` + incomingFrom + ` WHERE payment_hash = ? AND account = ?`,
		`SELECT ` + outgoingColumns + ` FROM ` + outgoingFrom + ` WHERE payment_hash = ? AND account = ?`,
	} {
		t, hold, err := scanTransaction(l.db.QueryRowContext(ctx, q, hash, account), &owner)
		if errors.Is(err, sql.ErrNoRows) {
			continue
		}
		if err != nil {
			return nip47.Transaction{}, fmt.Errorf("lookup %s: %w", hash, err)
		}
		return report(t, hold, l.now()), nil
	}
	return nip47.Transaction{}, nip47.Errorf(nip47.CodeNotFound, "no invoice or payment %s", hash)
}

// ListTransactions lists account's invoices and payments, newest first. Unpaid invoices are
// included only when p.Unpaid is set; From and Until bound created_at (inclusive).
//
// Client errors: OTHER for a type other than "incoming" or "outgoing".
func (l *Ledger) ListTransactions(ctx context.Context, account string, p nip47.ListTransactionsParams) ([]nip47.Transaction, error) {
	if p.Type != "" && p.Type != nip47.TypeIncoming && p.Type != nip47.TypeOutgoing {
		return nil, nip47.Errorf(nip47.CodeOther, "type must be %q or %q", nip47.TypeIncoming, nip47.TypeOutgoing)
	}
	from, until := int64(math.MinInt64), int64(math.MaxInt64)
	if p.From > 0 {
		from = time.Unix(p.From, 0).UnixNano()
	}
	if p.Until > 0 {
		until = time.Unix(p.Until+1, 0).UnixNano() - 1
	}
	limit := p.Limit
	if limit <= 0 {
		limit = -1 // SQLite: no limit
	}
	if err := l.ExpireHolds(ctx); err != nil {
		return nil, fmt.Errorf("list transactions of %s: %w", account, err)
	}
	rows, err := l.db.QueryContext(ctx, `SELECT * FROM (
			SELECT `+incomingColumns+` FROM `+incomingFrom+` WHERE account = ?1
			UNION ALL
			SELECT `+outgoingColumns+` FROM `+outgoingFrom+` WHERE account = ?1
		)
		WHERE (?2 = '' OR type = ?2) AND (?3 OR settled_ns IS NOT NULL OR hold_state = 'accepted')
			AND created_ns BETWEEN ?4 AND ?5
		ORDER BY created_ns DESC, type LIMIT ?6 OFFSET ?7`,
		account, p.Type, p.Unpaid, from, until, limit, max(p.Offset, 0))
	if err != nil {
		return nil, fmt.Errorf("list transactions of %s: %w", account, err)
	}
	defer rows.Close()
	now := l.now()
	var out []nip47.Transaction
	for rows.Next() {
		var owner string
		t, hold, err := scanTransaction(rows, &owner)
		if err != nil {
			return nil, fmt.Errorf("list transactions of %s: %w", account, err)
		}
		out = append(out, report(t, hold, now))
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list transactions of %s: %w", account, err)
	}
	return out, nil
}
