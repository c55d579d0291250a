//go:build unix

package vmtest

import (
	"os"

	"golang.org/x/sys/unix"
)

// lockFile takes an exclusive flock on path, blocking; the returned func releases it. It
// serialises cache preparation and VM runs between test processes (go test runs packages
// in parallel).
func lockFile(path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		return nil, err
	}
	return func() {
		unix.Flock(int(f.Fd()), unix.LOCK_UN)
		f.Close()
	}, nil
}
