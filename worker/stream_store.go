package worker

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"time"
)

// A stream's own row in the jobs table is in one of these states (its scheme is schemeStream,
// so the whole-job code paths never take it for one of theirs); its parts are in the parts
// table.
const (
	StateStreaming   = "streaming"    // parts are being quoted, paid, run and delivered
	StateStreamed    = "streamed"     // every part delivered and the final result published
	StateStreamEnded = "stream-ended" // ended before the last part (stopped, unpaid, failed)
)

// schemeStream is the scheme column of a stream's row in the jobs table; how its parts are
// paid is in the streams table.
const schemeStream = "stream"

// Part states: quoted → paid (escrow: held, accepted_at set; prepay: settled) → running →
// delivered → settled (escrow). A part that will not be delivered goes from quoted to failed
// (its invoice expired or was cancelled), from paid or running to refunding → refunded
// (escrow: the hold cancelled) or owed (prepay: a debt recorded). Each state is written
// before the side effect that follows it, with a compare-and-set, so a part is never settled
// twice nor both settled and refunded.
// (The names are the job states': StateQuoted, StatePaid, StateRunning, StateDelivered,
// StateSettled, StateRefunding, StateRefunded, StateFailed, StateOwed.)

// streamRow is what a stream keeps besides its jobs row: its number of parts, its window and
// how its parts are paid (escrow, prepay or free).
type streamRow struct {
	JobID  string
	N      int
	Window int
	Scheme string
}

// storedPart is one row of the parts table.
type storedPart struct {
	JobID       string
	K, N        int
	State       string
	AmountMsat  int64
	PaymentHash string
	Preimage    string // escrow: the part's preimage, secret until it settles
	Bolt11      string
	AcceptedAt  time.Time // escrow: when its payment was held (its settle window starts)
	Text        string    // the part's text, once delivered (the final result joins them)
}

var errNoPart = errors.New("worker: part not in store")

// createStreamTables makes the streams and parts tables, once.
func createStreamTables(ctx context.Context, db *sql.DB) error {
	for _, q := range []string{
		`CREATE TABLE IF NOT EXISTS streams (
			job_id TEXT PRIMARY KEY,
			n INTEGER NOT NULL,
			window_parts INTEGER NOT NULL,
			scheme TEXT NOT NULL
		)`,
		`CREATE TABLE IF NOT EXISTS parts (
			job_id TEXT NOT NULL,
			k INTEGER NOT NULL,
			n INTEGER NOT NULL,
			state TEXT NOT NULL,
			amount_msat INTEGER NOT NULL DEFAULT 0,
			payment_hash TEXT NOT NULL DEFAULT '',
			preimage TEXT NOT NULL DEFAULT '',
			bolt11 TEXT NOT NULL DEFAULT '',
			accepted_at INTEGER NOT NULL DEFAULT 0,
			text TEXT NOT NULL DEFAULT '',
			updated_at INTEGER NOT NULL,
			PRIMARY KEY (job_id, k)
		)`,
		`CREATE INDEX IF NOT EXISTS parts_hash ON parts (payment_hash)`,
		`CREATE INDEX IF NOT EXISTS parts_state ON parts (state)`,
	} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("job store: stream tables: %w", err)
		}
	}
	return nil
}

// putStream records a new stream: its jobs row (streaming) and its streams row, together.
func (s *jobStore) putStream(ctx context.Context, st storedJob, row streamRow) error {
	st.State, st.Scheme = StateStreaming, schemeStream
	if err := s.put(ctx, st); err != nil {
		return err
	}
	if _, err := s.db.ExecContext(ctx, `INSERT INTO streams (job_id, n, window_parts, scheme) VALUES (?, ?, ?, ?)
		ON CONFLICT(job_id) DO NOTHING`, row.JobID, row.N, row.Window, row.Scheme); err != nil {
		return fmt.Errorf("store stream %s: %w", row.JobID, err)
	}
	return nil
}

// stream reads a stream's row.
func (s *jobStore) stream(ctx context.Context, id string) (streamRow, error) {
	r := streamRow{JobID: id}
	err := s.db.QueryRowContext(ctx, `SELECT n, window_parts, scheme FROM streams WHERE job_id = ?`, id).Scan(&r.N, &r.Window, &r.Scheme)
	if errors.Is(err, sql.ErrNoRows) {
		return r, errNoJob
	}
	if err != nil {
		return r, fmt.Errorf("read stream %s: %w", id, err)
	}
	return r, nil
}

// putPart inserts a new part (quoted); it fails if the part exists.
func (s *jobStore) putPart(ctx context.Context, p storedPart) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO parts (job_id, k, n, state, amount_msat, payment_hash, preimage, bolt11, accepted_at, updated_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		p.JobID, p.K, p.N, p.State, p.AmountMsat, p.PaymentHash, p.Preimage, p.Bolt11, unixOrZero(p.AcceptedAt), time.Now().Unix())
	if err != nil {
		return fmt.Errorf("store part %d of job %s: %w", p.K, p.JobID, err)
	}
	return nil
}

// setPartInvoice records a quoted part's invoice.
func (s *jobStore) setPartInvoice(ctx context.Context, id string, k int, bolt11 string) error {
	_, err := s.db.ExecContext(ctx, `UPDATE parts SET bolt11 = ?, updated_at = ? WHERE job_id = ? AND k = ? AND state = ?`,
		bolt11, time.Now().Unix(), id, k, StateQuoted)
	if err != nil {
		return fmt.Errorf("store invoice of part %d of job %s: %w", k, id, err)
	}
	return nil
}

// dropUnsentPart deletes a quoted part whose invoice was never recorded, so its quote never
// went out: no customer can pay it, and the stream quotes the part again.
func (s *jobStore) dropUnsentPart(ctx context.Context, id string, k int) error {
	_, err := s.db.ExecContext(ctx, `DELETE FROM parts WHERE job_id = ? AND k = ? AND state = ? AND bolt11 = ''`, id, k, StateQuoted)
	if err != nil {
		return fmt.Errorf("drop unsent quote of part %d of job %s: %w", k, id, err)
	}
	return nil
}

// advancePart moves a part from one state to the next; false when it was not in state from.
func (s *jobStore) advancePart(ctx context.Context, id string, k int, from, to string) (bool, error) {
	res, err := s.db.ExecContext(ctx, `UPDATE parts SET state = ?, updated_at = ? WHERE job_id = ? AND k = ? AND state = ?`,
		to, time.Now().Unix(), id, k, from)
	if err != nil {
		return false, fmt.Errorf("part %d of job %s %s → %s: %w", k, id, from, to, err)
	}
	n, _ := res.RowsAffected()
	return n == 1, nil
}

// acceptPart records a part's payment: quoted → paid, with when it arrived (escrow's settle
// window starts then). False when the part was not quoted.
func (s *jobStore) acceptPart(ctx context.Context, id string, k int, at time.Time) (bool, error) {
	res, err := s.db.ExecContext(ctx, `UPDATE parts SET state = ?, accepted_at = ?, updated_at = ? WHERE job_id = ? AND k = ? AND state = ?`,
		StatePaid, at.Unix(), time.Now().Unix(), id, k, StateQuoted)
	if err != nil {
		return false, fmt.Errorf("part %d of job %s paid: %w", k, id, err)
	}
	n, _ := res.RowsAffected()
	return n == 1, nil
}

// deliverPart records a part published: running → delivered, with its text.
func (s *jobStore) deliverPart(ctx context.Context, id string, k int, text string) (bool, error) {
	res, err := s.db.ExecContext(ctx, `UPDATE parts SET state = ?, text = ?, updated_at = ? WHERE job_id = ? AND k = ? AND state = ?`,
		StateDelivered, text, time.Now().Unix(), id, k, StateRunning)
	if err != nil {
		return false, fmt.Errorf("part %d of job %s delivered: %w", k, id, err)
	}
	n, _ := res.RowsAffected()
	return n == 1, nil
}

// owePart records that a prepaid part (paid or running) will not be delivered: the part
// becomes owed and a debt of its amount is stored under "<job id>:<k>", in one transaction.
// False when the part was not paid.
func (s *jobStore) owePart(ctx context.Context, p storedPart, customer, reason string) (bool, error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return false, fmt.Errorf("record debt for part %d of job %s: %w", p.K, p.JobID, err)
	}
	defer tx.Rollback()
	now := time.Now().Unix()
	res, err := tx.ExecContext(ctx, `UPDATE parts SET state = ?, updated_at = ? WHERE job_id = ? AND k = ? AND state IN (?, ?)`,
		StateOwed, now, p.JobID, p.K, StatePaid, StateRunning)
	if err != nil {
		return false, fmt.Errorf("record debt for part %d of job %s: %w", p.K, p.JobID, err)
	}
	if n, _ := res.RowsAffected(); n != 1 {
		return false, nil
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO debts (job_id, customer, amount_msat, reason, created_at) VALUES (?, ?, ?, ?, ?)
		ON CONFLICT(job_id) DO NOTHING`, p.JobID+":"+strconv.Itoa(p.K), customer, p.AmountMsat, clip(reason, maxDebtReason), now); err != nil {
		return false, fmt.Errorf("record debt for part %d of job %s: %w", p.K, p.JobID, err)
	}
	return true, tx.Commit()
}

// oweLatePart records a debt for a prepay part paid after its stream had given it up
// (failed): the customer paid for nothing.
func (s *jobStore) oweLatePart(ctx context.Context, p storedPart, customer string) (bool, error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return false, fmt.Errorf("record debt for part %d of job %s: %w", p.K, p.JobID, err)
	}
	defer tx.Rollback()
	now := time.Now().Unix()
	res, err := tx.ExecContext(ctx, `UPDATE parts SET state = ?, updated_at = ? WHERE job_id = ? AND k = ? AND state = ?`,
		StateOwed, now, p.JobID, p.K, StateFailed)
	if err != nil {
		return false, fmt.Errorf("record debt for part %d of job %s: %w", p.K, p.JobID, err)
	}
	if n, _ := res.RowsAffected(); n != 1 {
		return false, nil
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO debts (job_id, customer, amount_msat, reason, created_at) VALUES (?, ?, ?, ?, ?)
		ON CONFLICT(job_id) DO NOTHING`, p.JobID+":"+strconv.Itoa(p.K), customer, p.AmountMsat, "part paid after the stream ended", now); err != nil {
		return false, fmt.Errorf("record debt for part %d of job %s: %w", p.K, p.JobID, err)
	}
	return true, tx.Commit()
}

// parts reads a stream's parts, in order.
func (s *jobStore) parts(ctx context.Context, id string) ([]storedPart, error) {
	return s.queryParts(ctx, `WHERE job_id = ? ORDER BY k`, id)
}

// part reads one part.
func (s *jobStore) part(ctx context.Context, id string, k int) (storedPart, error) {
	ps, err := s.queryParts(ctx, `WHERE job_id = ? AND k = ?`, id, k)
	if err != nil {
		return storedPart{}, err
	}
	if len(ps) == 0 {
		return storedPart{}, errNoPart
	}
	return ps[0], nil
}

// partByHash finds the part an invoice is for.
func (s *jobStore) partByHash(ctx context.Context, hash string) (storedPart, error) {
	ps, err := s.queryParts(ctx, `WHERE payment_hash = ? LIMIT 1`, hash)
	if err != nil {
		return storedPart{}, err
	}
	if len(ps) == 0 {
		return storedPart{}, errNoPart
	}
	return ps[0], nil
}

// partsInState is up to limit parts in state, oldest update first.
func (s *jobStore) partsInState(ctx context.Context, state string, limit int) ([]storedPart, error) {
	return s.queryParts(ctx, `WHERE state = ? ORDER BY updated_at LIMIT ?`, state, limit)
}

func (s *jobStore) queryParts(ctx context.Context, where string, args ...any) ([]storedPart, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT job_id, k, n, state, amount_msat, payment_hash, preimage, bolt11, accepted_at, text FROM parts `+where, args...)
	if err != nil {
		return nil, fmt.Errorf("read parts: %w", err)
	}
	defer rows.Close()
	var out []storedPart
	for rows.Next() {
		var p storedPart
		var at int64
		if err := rows.Scan(&p.JobID, &p.K, &p.N, &p.State, &p.AmountMsat, &p.PaymentHash, &p.Preimage, &p.Bolt11, &at, &p.Text); err != nil {
			return nil, fmt.Errorf("read parts: %w", err)
		}
		if at > 0 {
			p.AcceptedAt = time.Unix(at, 0)
		}
		out = append(out, p)
	}
	return out, rows.Err()
}
