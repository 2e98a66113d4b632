package sqlitedb

import (
	"context"
	"path/filepath"
	"sync"
	"testing"
)

// Two handles on one file (as two processes would have) see each other's writes.
func TestTwoHandles(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "state", "db.sqlite")
	schema := "CREATE TABLE IF NOT EXISTS kv (k TEXT PRIMARY KEY, v TEXT)"
	a, err := Open(ctx, path, schema)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := Open(ctx, path, schema)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if _, err := a.ExecContext(ctx, "INSERT INTO kv VALUES ('x', '1')"); err != nil {
		t.Fatal(err)
	}
	var v string
	if err := b.QueryRowContext(ctx, "SELECT v FROM kv WHERE k = 'x'").Scan(&v); err != nil || v != "1" {
		t.Fatalf("second handle read %q, %v", v, err)
	}
}

// Handles opening a database that does not exist yet, all at once, all succeed: SQLite answers
// some of them SQLITE_BUSY without waiting (switching the new file to WAL), and Open retries.
func TestConcurrentCreate(t *testing.T) {
	schema := []string{"CREATE TABLE IF NOT EXISTS kv (k TEXT PRIMARY KEY, v TEXT)", "CREATE INDEX IF NOT EXISTS kv_v ON kv (v)"}
	for range 100 {
		path := filepath.Join(t.TempDir(), "db.sqlite")
		var wg sync.WaitGroup
		for range 6 {
			wg.Go(func() {
				db, err := Open(context.Background(), path, schema...)
				if err != nil {
					t.Error(err)
					return
				}
				db.Close()
			})
		}
		wg.Wait()
		if t.Failed() {
			return
		}
	}
}
