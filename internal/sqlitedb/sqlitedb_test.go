package sqlitedb

import (
	"context"
	"path/filepath"
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
