package worker

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/nbd-wtf/go-nostr"

	"github.com/sparecycles/sparecycles/internal/sqlitedb"
)

// Job states in the worker's store. Each is written before the side effect that follows it,
// so a restart knows what was promised: a paid job is finished, never charged twice.
const (
	StateQuoted        = "quoted"        // invoice sent, waiting for payment
	StatePaid          = "paid"          // invoice settled, not yet delivered
	StateRunning       = "running"       // leased and running (a restart runs it again: it was paid)
	StateDelivered     = "delivered"     // result published
	StateUnpaid        = "unpaid"        // post-pay: result delivered with an invoice not yet settled
	StateSettled       = "settled"       // post-pay: invoice settled after delivery
	StateFailed        = "failed"        // refused or failed before payment
	StateUndeliverable = "undeliverable" // post-pay result no relay took: its invoice went nowhere, nothing is owed
	// StateOwed is a job the customer paid for (prepay) that the worker could not deliver: its
	// lease was refused, the run failed, or no relay took the result. The worker owes the
	// customer the amount; the debts table holds why. Not resumed. (Refunds are a later step.)
	StateOwed = "owed"
	// StateRefunded is an escrow job whose held payment was returned (its hold invoice
	// cancelled): it failed, its claim was refused, its result was not stored, or its settle
	// window closed. Nothing is owed. Not resumed.
	StateRefunded = "refunded"
	// StateRefunding is an escrow job being refunded whose hold invoice the wallet has not
	// confirmed cancelled yet (it was unreachable): a restart cancels it again.
	StateRefunding = "refunding"
)

// jobStore is the worker's embedded store: job id → state, invoice, request.
type jobStore struct{ db *sql.DB }

// storedJob is one row.
type storedJob struct {
	ID          string
	State       string
	Customer    string
	AmountMsat  int64
	Bolt11      string
	PaymentHash string
	Request     *nostr.Event
	Relays      []string
	UpdatedAt   time.Time
	// Scheme is how the job is paid (escrow.SchemePrepay, SchemeAfter, SchemeEscrow); rows
	// from before schemes were stored read as "" (see schemeOf).
	Scheme string
	// Escrow only: the preimage (hex; the worker's secret until it settles), the settle window
	// quoted, and when the payment was held (the window runs from then; zero before).
	Preimage     string
	SettleWindow time.Duration
	AcceptedAt   time.Time
}

var errNoJob = errors.New("worker: job not in store")

func openJobStore(ctx context.Context, dir string) (*jobStore, error) {
	db, err := sqlitedb.Open(ctx, filepath.Join(dir, "worker.sqlite"), `CREATE TABLE IF NOT EXISTS jobs (
		id TEXT PRIMARY KEY,
		state TEXT NOT NULL,
		customer TEXT NOT NULL,
		amount_msat INTEGER NOT NULL DEFAULT 0,
		bolt11 TEXT NOT NULL DEFAULT '',
		payment_hash TEXT NOT NULL DEFAULT '',
		request TEXT NOT NULL,
		relays TEXT NOT NULL DEFAULT '',
		updated_at INTEGER NOT NULL
	)`, `CREATE INDEX IF NOT EXISTS jobs_hash ON jobs (payment_hash)`,
		`CREATE INDEX IF NOT EXISTS jobs_state ON jobs (state, customer)`,
		`CREATE TABLE IF NOT EXISTS escrow (
		job_id TEXT PRIMARY KEY,
		preimage TEXT NOT NULL,
		settle_window_secs INTEGER NOT NULL,
		accepted_at INTEGER NOT NULL DEFAULT 0
	)`,
		`CREATE TABLE IF NOT EXISTS debts (
		job_id TEXT PRIMARY KEY,
		customer TEXT NOT NULL,
		amount_msat INTEGER NOT NULL,
		reason TEXT NOT NULL,
		created_at INTEGER NOT NULL
	)`)
	if err != nil {
		return nil, err
	}
	if err := addColumn(ctx, db, "jobs", "scheme", `TEXT NOT NULL DEFAULT ''`); err != nil {
		db.Close()
		return nil, err
	}
	if err := createStreamTables(ctx, db); err != nil {
		db.Close()
		return nil, err
	}
	return &jobStore{db: db}, nil
}

// addColumn adds a column to a table made by an older version, once.
func addColumn(ctx context.Context, db *sql.DB, table, column, decl string) error {
	var n int
	if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM pragma_table_info(?) WHERE name = ?`, table, column).Scan(&n); err != nil {
		return fmt.Errorf("job store: read columns of %s: %w", table, err)
	}
	if n > 0 {
		return nil
	}
	if _, err := db.ExecContext(ctx, `ALTER TABLE `+table+` ADD COLUMN `+column+` `+decl); err != nil {
		return fmt.Errorf("job store: add column %s.%s: %w", table, column, err)
	}
	return nil
}

func (s *jobStore) Close() error { return s.db.Close() }

// put inserts or replaces a job's row.
func (s *jobStore) put(ctx context.Context, j storedJob) error {
	relays, _ := jsonMarshal(j.Relays)
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("store job %s: %w", j.ID, err)
	}
	defer tx.Rollback()
	_, err = tx.ExecContext(ctx, `INSERT INTO jobs (id, state, customer, amount_msat, bolt11, payment_hash, request, relays, updated_at, scheme)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT(id) DO UPDATE SET state=excluded.state, amount_msat=excluded.amount_msat, bolt11=excluded.bolt11,
			payment_hash=excluded.payment_hash, relays=excluded.relays, updated_at=excluded.updated_at, scheme=excluded.scheme`,
		j.ID, j.State, j.Customer, j.AmountMsat, j.Bolt11, j.PaymentHash, j.Request.String(), relays, time.Now().Unix(), j.Scheme)
	if err != nil {
		return fmt.Errorf("store job %s: %w", j.ID, err)
	}
	if j.Preimage != "" {
		_, err = tx.ExecContext(ctx, `INSERT INTO escrow (job_id, preimage, settle_window_secs, accepted_at) VALUES (?, ?, ?, ?)
			ON CONFLICT(job_id) DO UPDATE SET preimage=excluded.preimage, settle_window_secs=excluded.settle_window_secs, accepted_at=excluded.accepted_at`,
			j.ID, j.Preimage, int64(j.SettleWindow/time.Second), unixOrZero(j.AcceptedAt))
		if err != nil {
			return fmt.Errorf("store job %s: escrow terms: %w", j.ID, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("store job %s: %w", j.ID, err)
	}
	return nil
}

func unixOrZero(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.Unix()
}

// accept records that an escrow job's payment is held: quoted → paid, with the time the
// settle window starts, in one transaction. It reports false when the job was not quoted
// (another notice of the same payment got there first).
func (s *jobStore) accept(ctx context.Context, id string, at time.Time) (bool, error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return false, fmt.Errorf("job %s accepted: %w", id, err)
	}
	defer tx.Rollback()
	res, err := tx.ExecContext(ctx, `UPDATE jobs SET state = ?, updated_at = ? WHERE id = ? AND state = ?`, StatePaid, time.Now().Unix(), id, StateQuoted)
	if err != nil {
		return false, fmt.Errorf("job %s accepted: %w", id, err)
	}
	if n, _ := res.RowsAffected(); n != 1 {
		return false, nil
	}
	if _, err := tx.ExecContext(ctx, `UPDATE escrow SET accepted_at = ? WHERE job_id = ?`, at.Unix(), id); err != nil {
		return false, fmt.Errorf("job %s accepted: %w", id, err)
	}
	return true, tx.Commit()
}

// advance moves a job from one state to the next; it reports false when the job was not in
// state from (another path got there first).
func (s *jobStore) advance(ctx context.Context, id, from, to string) (bool, error) {
	res, err := s.db.ExecContext(ctx, `UPDATE jobs SET state = ?, updated_at = ? WHERE id = ? AND state = ?`, to, time.Now().Unix(), id, from)
	if err != nil {
		return false, fmt.Errorf("job %s %s → %s: %w", id, from, to, err)
	}
	n, _ := res.RowsAffected()
	return n == 1, nil
}

// markUndeliverable records that a job's result reached no relay: a paid job (running) or a
// post-paid one (unpaid: its invoice rode on that result) becomes undeliverable, so a restart
// does not run it again and the customer does not owe for it. It returns the row as it was
// before, or errNoJob for a free job, which is never stored.
func (s *jobStore) markUndeliverable(ctx context.Context, id string) (storedJob, error) {
	st, err := s.get(ctx, id)
	if err != nil {
		return st, err
	}
	if st.State == StateRunning || st.State == StateUnpaid {
		if _, err := s.advance(ctx, id, st.State, StateUndeliverable); err != nil {
			return st, err
		}
	}
	return st, nil
}

// Debt is what the worker owes a customer for a paid job it did not deliver.
type Debt struct {
	JobID      string    `json:"job_id"`
	Customer   string    `json:"customer"`
	AmountMsat int64     `json:"amount_msat"`
	Reason     string    `json:"reason"`
	At         time.Time `json:"at"`
}

// maxDebtReason bounds the reason stored with a debt: it may quote a relay's refusal.
const maxDebtReason = 1000

// owe records that a paid job (paid or running, with an amount) will not be delivered: the job
// becomes owed and a debt of its amount, with reason, is stored, in one transaction. It
// reports false, changing nothing, for a job that is not paid (free, quoted, post-paid, or
// already owed), and returns the job's row as it was.
func (s *jobStore) owe(ctx context.Context, id, reason string) (storedJob, bool, error) {
	st, err := s.get(ctx, id)
	if err != nil || (st.State != StatePaid && st.State != StateRunning) || st.AmountMsat <= 0 {
		return st, false, nil
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return st, false, fmt.Errorf("record debt for job %s: %w", id, err)
	}
	defer tx.Rollback()
	now := time.Now().Unix()
	res, err := tx.ExecContext(ctx, `UPDATE jobs SET state = ?, updated_at = ? WHERE id = ? AND state = ?`, StateOwed, now, id, st.State)
	if err != nil {
		return st, false, fmt.Errorf("record debt for job %s: %w", id, err)
	}
	if n, _ := res.RowsAffected(); n != 1 {
		return st, false, nil // another path moved it first
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO debts (job_id, customer, amount_msat, reason, created_at) VALUES (?, ?, ?, ?, ?)
		ON CONFLICT(job_id) DO NOTHING`, id, st.Customer, st.AmountMsat, clip(reason, maxDebtReason), now); err != nil {
		return st, false, fmt.Errorf("record debt for job %s: %w", id, err)
	}
	if err := tx.Commit(); err != nil {
		return st, false, fmt.Errorf("record debt for job %s: %w", id, err)
	}
	return st, true, nil
}

// debts lists what the worker owes, oldest first.
func (s *jobStore) debts(ctx context.Context) ([]Debt, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT job_id, customer, amount_msat, reason, created_at FROM debts ORDER BY created_at, job_id`)
	if err != nil {
		return nil, fmt.Errorf("read debts: %w", err)
	}
	defer rows.Close()
	var out []Debt
	for rows.Next() {
		var d Debt
		var at int64
		if err := rows.Scan(&d.JobID, &d.Customer, &d.AmountMsat, &d.Reason, &at); err != nil {
			return nil, fmt.Errorf("read debts: %w", err)
		}
		d.At = time.Unix(at, 0)
		out = append(out, d)
	}
	return out, rows.Err()
}

func (s *jobStore) get(ctx context.Context, id string) (storedJob, error) {
	rows, err := s.query(ctx, `WHERE id = ?`, id)
	if err != nil {
		return storedJob{}, err
	}
	if len(rows) == 0 {
		return storedJob{}, errNoJob
	}
	return rows[0], nil
}

func (s *jobStore) byHash(ctx context.Context, hash string) (storedJob, error) {
	rows, err := s.query(ctx, `WHERE payment_hash = ?`, hash)
	if err != nil {
		return storedJob{}, err
	}
	if len(rows) == 0 {
		return storedJob{}, errNoJob
	}
	return rows[0], nil
}

func (s *jobStore) inState(ctx context.Context, states ...string) ([]storedJob, error) {
	var out []storedJob
	for _, st := range states {
		rows, err := s.query(ctx, `WHERE state = ? ORDER BY updated_at`, st)
		if err != nil {
			return nil, err
		}
		out = append(out, rows...)
	}
	return out, nil
}

// unfinished is up to limit jobs of scheme in one of states, oldest update first.
func (s *jobStore) unfinished(ctx context.Context, scheme string, limit int, states ...string) ([]storedJob, error) {
	var out []storedJob
	for _, st := range states {
		rows, err := s.query(ctx, `WHERE state = ? AND scheme = ? ORDER BY updated_at LIMIT ?`, st, scheme, limit)
		if err != nil {
			return nil, err
		}
		out = append(out, rows...)
	}
	return out, nil
}

// unpaid sums what a customer owes for delivered post-pay jobs.
func (s *jobStore) unpaid(ctx context.Context, customer string) (int64, error) {
	var sum sql.NullInt64
	err := s.db.QueryRowContext(ctx, `SELECT SUM(amount_msat) FROM jobs WHERE state = ? AND customer = ?`, StateUnpaid, customer).Scan(&sum)
	return sum.Int64, err
}

func (s *jobStore) query(ctx context.Context, where string, args ...any) ([]storedJob, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT id, state, customer, amount_msat, bolt11, payment_hash, request, relays, updated_at, scheme,
		COALESCE(e.preimage, ''), COALESCE(e.settle_window_secs, 0), COALESCE(e.accepted_at, 0)
		FROM jobs LEFT JOIN escrow e ON e.job_id = jobs.id `+where, args...)
	if err != nil {
		return nil, fmt.Errorf("read jobs: %w", err)
	}
	defer rows.Close()
	var out []storedJob
	for rows.Next() {
		var j storedJob
		var req, relays string
		var at, window, acceptedAt int64
		if err := rows.Scan(&j.ID, &j.State, &j.Customer, &j.AmountMsat, &j.Bolt11, &j.PaymentHash, &req, &relays, &at, &j.Scheme,
			&j.Preimage, &window, &acceptedAt); err != nil {
			return nil, err
		}
		j.SettleWindow = time.Duration(window) * time.Second
		if acceptedAt > 0 {
			j.AcceptedAt = time.Unix(acceptedAt, 0)
		}
		j.Request = &nostr.Event{}
		if err := j.Request.UnmarshalJSON([]byte(req)); err != nil {
			return nil, fmt.Errorf("job %s: stored request: %w", j.ID, err)
		}
		_ = jsonUnmarshal(relays, &j.Relays)
		j.UpdatedAt = time.Unix(at, 0)
		out = append(out, j)
	}
	return out, rows.Err()
}

func jsonMarshal(v any) (string, error) {
	b, err := json.Marshal(v)
	return string(b), err
}

func jsonUnmarshal(s string, v any) error {
	if s == "" {
		return nil
	}
	return json.Unmarshal([]byte(s), v)
}
