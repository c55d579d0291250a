//go:build !linux

package watchdog

import "fmt"

// OpenLinux is only available on Linux; elsewhere it returns ErrUnsupported.
func OpenLinux(path string) (Device, error) {
	return nil, fmt.Errorf("watchdog: open %s: %w", path, ErrUnsupported)
}
