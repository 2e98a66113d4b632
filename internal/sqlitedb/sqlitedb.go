// Package sqlitedb opens the embedded SQLite databases the wallet, worker and client keep
// their state in (modernc.org/sqlite: pure Go, no cgo). WAL mode and a busy timeout let two
// processes share one file, e.g. `wallet connect` while `wallet serve` runs.
package sqlitedb

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"

	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

// Open opens (creating if needed) the database at path and applies schema, a list of
// idempotent statements (CREATE TABLE IF NOT EXISTS ...).
func Open(ctx context.Context, path string, schema ...string) (*sql.DB, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	// busy_timeout first: switching to WAL takes a lock that another process may hold
	dsn := "file:" + path + "?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=foreign_keys(1)&_pragma=synchronous(FULL)&_txlock=immediate"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	for _, stmt := range schema {
		if _, err := db.ExecContext(ctx, stmt); err != nil {
			db.Close()
			return nil, fmt.Errorf("open %s: schema: %w", path, err)
		}
	}
	return db, nil
}
