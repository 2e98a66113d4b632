package sqlitedb

import (
	"context"
	"os"
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

// Open makes the folder 0700 and the database with its -wal and -shm 0600, also when they
// existed with looser modes.
func TestPrivateModes(t *testing.T) {
	ctx := context.Background()
	schema := "CREATE TABLE IF NOT EXISTS kv (k TEXT PRIMARY KEY, v TEXT)"
	tests := []struct {
		name    string
		prepare func(t *testing.T, dir, path string)
	}{
		{"new folder", func(t *testing.T, dir, path string) {}},
		{"existing 0755 folder", func(t *testing.T, dir, path string) {
			mustChmod(t, dir, 0o755, true)
		}},
		{"existing 0644 database", func(t *testing.T, dir, path string) {
			mustChmod(t, dir, 0o755, true)
			db, err := Open(ctx, path, schema)
			if err != nil {
				t.Fatal(err)
			}
			db.Close()
			mustChmod(t, dir, 0o755, false)
			for _, p := range []string{path, path + "-wal", path + "-shm"} {
				if _, err := os.Stat(p); err == nil {
					mustChmod(t, p, 0o644, false)
				}
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "data")
			path := filepath.Join(dir, "wallet.sqlite")
			tc.prepare(t, dir, path)
			db, err := Open(ctx, path, schema)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			if _, err := db.ExecContext(ctx, "INSERT OR REPLACE INTO kv VALUES ('x', '1')"); err != nil {
				t.Fatal(err)
			}
			checkMode(t, dir, 0o700)
			checkMode(t, path, 0o600)
			for _, p := range []string{path + "-wal", path + "-shm"} {
				if _, err := os.Stat(p); err != nil {
					t.Fatalf("%s: %v (WAL mode makes it)", p, err)
				}
				checkMode(t, p, 0o600)
			}
		})
	}
}

func mustChmod(t *testing.T, path string, mode os.FileMode, mkdir bool) {
	t.Helper()
	if mkdir {
		if err := os.MkdirAll(path, mode); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

func checkMode(t *testing.T, path string, want os.FileMode) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != want {
		t.Fatalf("%s has mode %v, want %v", path, got, want)
	}
}
