//go:build !linux

package mtd

import (
	"fmt"
	"io"
	"runtime"
)

var errOS = fmt.Errorf("mtd: MTD and UBI ioctls need Linux, not %s: %w", runtime.GOOS, ErrUnsupported)

// Open returns ErrUnsupported outside Linux (after refusing mtdblock paths like Linux).
func (p Paths) Open(path string) (*Device, error) {
	if _, err := mtdNumber(path); err != nil {
		return nil, err
	}
	return nil, errOS
}

// OpenReadOnly returns ErrUnsupported outside Linux, as Open does.
func (p Paths) OpenReadOnly(path string) (*Device, error) { return p.Open(path) }

// IsBad returns ErrUnsupported outside Linux.
func (d *Device) IsBad(off int64) (bool, error) { return false, errOS }

// MarkBad returns ErrUnsupported outside Linux.
func (d *Device) MarkBad(off int64) error { return errOS }

// WriteAt returns ErrUnsupported outside Linux.
func (d *Device) WriteAt(p []byte, off int64) (int, error) { return 0, errOS }

// Erase returns ErrUnsupported outside Linux.
func (d *Device) Erase(off, length int64) error { return errOS }

// Unlock returns ErrUnsupported outside Linux.
func (d *Device) Unlock(off, length int64) error { return errOS }

// Sync returns ErrUnsupported outside Linux.
func (d *Device) Sync() error { return errOS }

// Update returns ErrUnsupported outside Linux.
func (v *Volume) Update(size int64) (io.WriteCloser, error) { return nil, errOS }
