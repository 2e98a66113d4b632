// Package private keeps secrets readable by their owner only: folders 0700 and files 0600,
// tightened on every open, whatever modes they had before (a --data folder made by hand, a
// file written under a loose umask).
package private

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
)

// Dir creates dir (and missing parents, 0700) when missing and sets its mode to 0700.
func Dir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create folder %s: %w", dir, err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return fmt.Errorf("make folder %s private: %w", dir, err)
	}
	return nil
}

// File creates path empty when missing and sets its mode to 0600. It never truncates.
func File(path string) error {
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("create %s: %w", path, err)
	}
	f.Close()
	return chmod(path)
}

// IfExists sets path's mode to 0600 when the file exists.
func IfExists(path string) error {
	err := chmod(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}

func chmod(path string) error {
	if err := os.Chmod(path, 0o600); err != nil {
		return fmt.Errorf("make %s private: %w", path, err)
	}
	return nil
}

// WriteFile writes data to path with mode 0600, also when path existed with another mode.
func WriteFile(path string, data []byte) error {
	if err := File(path); err != nil {
		return err
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
