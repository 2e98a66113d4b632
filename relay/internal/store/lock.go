package store

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// LockFile is the file in a store's folder that the process holding the store keeps locked.
// LMDB itself lets several processes share an environment, but two relays on one folder would
// each fold the job table from it and grant leases the other does not know about.
const LockFile = "sparecycles.lock"

// ErrLocked means another Store, in this process or another, has the folder open.
var ErrLocked = errors.New("store: folder in use")

// lockFolder takes the folder's lock, or fails at once with ErrLocked when another holder has
// it. The lock goes with the returned file: closing it (or the process ending) releases it.
func lockFolder(dir string) (*os.File, error) {
	path := filepath.Join(dir, LockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("store: open lock file %s: %w", path, err)
	}
	held, err := tryLock(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("store: lock %s: %w", path, err)
	}
	if held {
		f.Close()
		return nil, fmt.Errorf("%w: data folder %s is held by another relay (it holds the lock on %s); stop that relay or choose another data folder", ErrLocked, dir, path)
	}
	return f, nil
}
