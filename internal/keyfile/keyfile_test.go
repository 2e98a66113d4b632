package keyfile

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLoadOrCreate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys", "worker.nsec")
	k1, created, err := LoadOrCreate(path)
	if err != nil || !created {
		t.Fatalf("first run: %v, created %v", err, created)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v (%v), want 0600", fi.Mode().Perm(), err)
	}
	k2, created, err := LoadOrCreate(path)
	if err != nil || created || k2.PubKey != k1.PubKey {
		t.Fatalf("second run: %v, created %v, same key %v", err, created, k2.PubKey == k1.PubKey)
	}
	if strings.Contains(k1.String(), k1.secret) || !strings.Contains(k1.String(), k1.PubKey) {
		t.Fatalf("Key.String leaks the secret or hides the pubkey: %s", k1)
	}
	os.Chmod(path, 0o644)
	if _, _, err := LoadOrCreate(path); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("world-readable key: %v", err)
	}
	hex := filepath.Join(t.TempDir(), "hex")
	os.WriteFile(hex, []byte(strings.Repeat("1", 64)+"\n"), 0o600)
	if _, _, err := LoadOrCreate(hex); err != nil {
		t.Fatalf("hex key: %v", err)
	}
	bad := filepath.Join(t.TempDir(), "bad")
	os.WriteFile(bad, []byte("nsec1nope"), 0o600)
	if _, _, err := LoadOrCreate(bad); err == nil {
		t.Fatal("a bad nsec was accepted")
	}
}
