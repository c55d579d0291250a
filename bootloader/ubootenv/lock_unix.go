//go:build unix

package ubootenv

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// lockFile takes an exclusive flock(2) on path (created if missing, like libubootenv) and
// returns the unlock function. An empty path means no locking.
func lockFile(path string) (func(), error) {
	if path == "" {
		return func() {}, nil
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE, 0o666)
	if errors.Is(err, fs.ErrNotExist) {
		// A lean root file system may have no /var/lock yet (it is often a tmpfs made at
		// boot); create the folder rather than give up on locking.
		if mkErr := os.MkdirAll(filepath.Dir(path), 0o755); mkErr == nil {
			f, err = os.OpenFile(path, os.O_WRONLY|os.O_CREATE, 0o666)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrLock, err)
	}
	for {
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%w: flock %s: %w", ErrLock, path, err)
	}
	return func() {
		_ = unix.Flock(int(f.Fd()), unix.LOCK_UN)
		f.Close()
	}, nil
}
