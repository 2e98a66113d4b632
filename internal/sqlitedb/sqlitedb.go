// Package sqlitedb opens the embedded SQLite databases the wallet, worker and client keep
// their state in (modernc.org/sqlite: pure Go, no cgo). WAL mode and a busy timeout let two
// processes share one file, e.g. `wallet connect` while `wallet serve` runs.
package sqlitedb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"modernc.org/sqlite" // also registers the "sqlite" driver
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/sparecycles/sparecycles/internal/private"
)

// Open opens (creating if needed) the database at path and applies schema, a list of
// idempotent statements (CREATE TABLE IF NOT EXISTS ...). The databases hold secrets (NWC
// keys, invoices), so the folder is made 0700 and the file with its -wal and -shm 0600, also
// when they existed with looser modes.
func Open(ctx context.Context, path string, schema ...string) (*sql.DB, error) {
	if err := private.Dir(filepath.Dir(path)); err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	// SQLite creates -wal and -shm with the database file's mode
	if err := privateFiles(path, true); err != nil {
		return nil, err
	}
	// busy_timeout first: switching to WAL takes a lock that another process may hold
	dsn := "file:" + path + "?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=foreign_keys(1)&_pragma=synchronous(FULL)&_txlock=immediate"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	if err := applySchema(ctx, db, schema); err != nil {
		db.Close()
		return nil, fmt.Errorf("open %s: schema: %w", path, err)
	}
	if err := privateFiles(path, false); err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

// privateFiles makes the database file (created when create and missing) and its -wal and
// -shm files 0600.
func privateFiles(path string, create bool) error {
	if create {
		if err := private.File(path); err != nil {
			return fmt.Errorf("open %s: %w", path, err)
		}
	}
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		if err := private.IfExists(p); err != nil {
			return fmt.Errorf("open %s: %w", path, err)
		}
	}
	return nil
}

// busyFor bounds how long Open retries a schema that SQLite reports busy.
const busyFor = 10 * time.Second

// applySchema runs the schema statements in one immediate transaction, so that two processes
// opening a new database at once do not interleave them, and retries while SQLite answers
// SQLITE_BUSY: its busy timeout does not cover every case (switching a new file to WAL, a
// shared lock that must be upgraded), and both happen when two handles create the same file.
func applySchema(ctx context.Context, db *sql.DB, schema []string) error {
	if len(schema) == 0 {
		return nil
	}
	deadline := time.Now().Add(busyFor)
	for wait := 5 * time.Millisecond; ; wait = min(2*wait, 200*time.Millisecond) {
		err := applySchemaOnce(ctx, db, schema)
		var se *sqlite.Error
		if err == nil || !errors.As(err, &se) || se.Code()&0xff != sqlite3.SQLITE_BUSY || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
	}
}

func applySchemaOnce(ctx context.Context, db *sql.DB, schema []string) error {
	tx, err := db.BeginTx(ctx, nil) // BEGIN IMMEDIATE (_txlock=immediate)
	if err != nil {
		return err
	}
	for _, stmt := range schema {
		if _, err := tx.ExecContext(ctx, stmt); err != nil {
			tx.Rollback()
			return err
		}
	}
	return tx.Commit()
}
