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

// A new key is 0600 whatever the folder's mode, and a new folder is 0700. An existing folder
// keeps its mode (it may be the working directory); an existing key readable by others is
// refused rather than quietly tightened, since others may have read it already.
func TestNewKeyModes(t *testing.T) {
	tests := []struct {
		name    string
		dirMode os.FileMode // 0: the folder does not exist yet
		wantDir os.FileMode
	}{
		{"new folder", 0, 0o700},
		{"existing 0755 folder", 0o755, 0o755},
		{"existing 0777 folder", 0o777, 0o777},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "keys")
			if tc.dirMode != 0 {
				if err := os.Mkdir(dir, tc.dirMode); err != nil {
					t.Fatal(err)
				}
				os.Chmod(dir, tc.dirMode)
			}
			path := filepath.Join(dir, "client.nsec")
			if _, created, err := LoadOrCreate(path); err != nil || !created {
				t.Fatalf("LoadOrCreate: %v, created %v", err, created)
			}
			for p, want := range map[string]os.FileMode{path: 0o600, dir: tc.wantDir} {
				fi, err := os.Stat(p)
				if err != nil {
					t.Fatal(err)
				}
				if fi.Mode().Perm() != want {
					t.Errorf("%s: mode %v, want %v", p, fi.Mode().Perm(), want)
				}
			}
		})
	}
}
