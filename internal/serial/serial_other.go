//go:build !linux

package serial

import (
	"fmt"
	"os"
	"runtime"
)

// Open opens a serial line; this build supports Linux only.
func Open(path string, baud int) (*os.File, error) {
	return nil, fmt.Errorf("%w: %s: opening a serial line is supported on Linux only", ErrSerial, runtime.GOOS)
}

// OpenPTY makes a pseudo-terminal; this build supports Linux only.
func OpenPTY() (*PTY, error) {
	return nil, fmt.Errorf("%w: %s: pseudo-terminals are supported on Linux only", ErrSerial, runtime.GOOS)
}
