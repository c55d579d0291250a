package mtdsim

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/aduflash/aduflash/mtd"
)

// ErrUpdateMarker is what a read of a simulated UBI volume returns while its update marker is
// set (the kernel's EBADF: "damaged volume, update marker is set").
var ErrUpdateMarker = errors.New("mtdsim: UBI volume damaged: update marker is set")

// Volume simulates a UBI volume as the kernel's volume update (UBI_IOCVOLUP) treats it: an
// update of n bytes erases the volume at once and sets its update marker; reads fail with
// ErrUpdateMarker while it is set; closing the update clears it only when exactly n bytes
// were written (else mtd.ErrUpdateSize, the marker stays). A power cut (PowerCutAfterBytes)
// lets an update's writes through up to n bytes and fails the write that passes them with
// mtd.ErrPowerCut; from then on every call fails so until PowerOn, and what the update wrote
// is lost (the marker stays). Its methods are those of slots.Volume; it is safe for
// concurrent use.
type Volume struct {
	mu       sync.Mutex
	reserved int64
	data     []byte
	marker   bool
	updates  []int64
	cut      int64 // bytes the power lasts (-1: no cut armed)
	off      bool
}

// NewVolume returns an empty volume of reserved bytes.
func NewVolume(reserved int64) *Volume { return &Volume{reserved: reserved, cut: -1} }

// PowerCutAfterBytes arms a cut: n more bytes of updates are written, the next write fails.
func (v *Volume) PowerCutAfterBytes(n int64) { v.mu.Lock(); v.cut, v.off = n, false; v.mu.Unlock() }

// PowerOn restores the power and disarms a cut not reached.
func (v *Volume) PowerOn() { v.mu.Lock(); v.cut, v.off = -1, false; v.mu.Unlock() }

// Data returns a copy of what the volume holds (nil while its update marker is set).
func (v *Volume) Data() []byte {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.marker {
		return nil
	}
	return bytes.Clone(v.data)
}

// Marked reports whether the update marker is set.
func (v *Volume) Marked() bool { v.mu.Lock(); defer v.mu.Unlock(); return v.marker }

// Updates returns the size of every update started.
func (v *Volume) Updates() []int64 {
	v.mu.Lock()
	defer v.mu.Unlock()
	return append([]int64(nil), v.updates...)
}

func (v *Volume) ReservedSize() int64 { return v.reserved }

func (v *Volume) Update(size int64) (io.WriteCloser, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.off {
		return nil, fmt.Errorf("mtdsim: UBI volume update: %w", mtd.ErrPowerCut)
	}
	if size < 0 || size > v.reserved {
		return nil, fmt.Errorf("mtdsim: UBI volume update of %d bytes, %d reserved: %w", size, v.reserved, mtd.ErrOutOfRange)
	}
	v.updates = append(v.updates, size)
	v.data, v.marker = nil, true
	return &volumeUpdate{v: v, size: size}, nil
}

func (v *Volume) ReadAt(p []byte, off int64) (int, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	switch {
	case v.off:
		return 0, fmt.Errorf("mtdsim: UBI volume read: %w", mtd.ErrPowerCut)
	case v.marker:
		return 0, ErrUpdateMarker
	case off < 0:
		return 0, mtd.ErrOutOfRange
	case off >= int64(len(v.data)):
		return 0, io.EOF
	}
	n := copy(p, v.data[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

type volumeUpdate struct {
	v      *Volume
	size   int64
	buf    bytes.Buffer
	closed bool
}

func (u *volumeUpdate) Write(p []byte) (int, error) {
	v := u.v
	v.mu.Lock()
	defer v.mu.Unlock()
	switch {
	case v.off:
		return 0, fmt.Errorf("mtdsim: UBI volume update: %w", mtd.ErrPowerCut)
	case u.closed:
		return 0, mtd.ErrClosed
	}
	if v.cut >= 0 && int64(len(p)) > v.cut {
		u.buf.Write(p[:v.cut])
		n := int(v.cut)
		v.cut, v.off = -1, true
		return n, fmt.Errorf("mtdsim: UBI volume update at byte %d: %w", u.buf.Len(), mtd.ErrPowerCut)
	}
	if v.cut >= 0 {
		v.cut -= int64(len(p))
	}
	return u.buf.Write(p)
}

func (u *volumeUpdate) Close() error {
	v := u.v
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.off {
		return fmt.Errorf("mtdsim: UBI volume update: %w", mtd.ErrPowerCut)
	}
	if u.closed {
		return nil
	}
	u.closed = true
	if int64(u.buf.Len()) != u.size {
		return fmt.Errorf("mtdsim: UBI volume update of %d bytes closed after %d: %w", u.size, u.buf.Len(), mtd.ErrUpdateSize)
	}
	v.data, v.marker = bytes.Clone(u.buf.Bytes()), false
	return nil
}
