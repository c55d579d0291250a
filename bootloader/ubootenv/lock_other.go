//go:build !unix

package ubootenv

import "fmt"

// lockFile: flock(2) does not exist here; only an empty path (no locking) is accepted.
func lockFile(path string) (func(), error) {
	if path == "" {
		return func() {}, nil
	}
	return nil, fmt.Errorf("%w: lock file %s: flock is not available on this platform; set an empty lock path", ErrUnsupported, path)
}
