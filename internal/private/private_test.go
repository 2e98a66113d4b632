package private

import (
	"os"
	"path/filepath"
	"testing"
)

// Modes are tightened whatever existed before.
func TestModes(t *testing.T) {
	tests := []struct {
		name    string
		prepare func(dir, file string)
		open    func(dir, file string) error
	}{
		{"new folder and file", func(dir, file string) {}, func(dir, file string) error {
			if err := Dir(dir); err != nil {
				return err
			}
			return File(file)
		}},
		{"loose folder and file", func(dir, file string) {
			os.Mkdir(dir, 0o755)
			os.Chmod(dir, 0o755)
			os.WriteFile(file, []byte("secret"), 0o644)
			os.Chmod(file, 0o644)
		}, func(dir, file string) error {
			if err := Dir(dir); err != nil {
				return err
			}
			return IfExists(file)
		}},
		{"WriteFile over a loose file", func(dir, file string) {
			os.Mkdir(dir, 0o777)
			os.Chmod(dir, 0o777)
			os.WriteFile(file, []byte("old"), 0o666)
			os.Chmod(file, 0o666)
		}, func(dir, file string) error {
			if err := Dir(dir); err != nil {
				return err
			}
			return WriteFile(file, []byte("secret"))
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "data")
			file := filepath.Join(dir, "secret")
			tc.prepare(dir, file)
			if err := tc.open(dir, file); err != nil {
				t.Fatal(err)
			}
			assertMode(t, dir, 0o700)
			assertMode(t, file, 0o600)
		})
	}
	if err := IfExists(filepath.Join(t.TempDir(), "missing")); err != nil {
		t.Fatalf("IfExists on a missing file: %v", err)
	}
}

func assertMode(t *testing.T, path string, want os.FileMode) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != want {
		t.Fatalf("%s has mode %v, want %v", path, got, want)
	}
}
