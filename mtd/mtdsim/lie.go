package mtdsim

import (
	"fmt"
	"slices"

	"github.com/aduflash/aduflash/internal/enumname"
	"github.com/aduflash/aduflash/mtd"
)

// LieKind is how reads of a lying range differ from what the medium holds.
type LieKind int

// The ways a device can lie (Lie.Kind).
const (
	// FlipBit: every byte of the range reads with its lowest bit inverted (a one-byte range
	// is one flipped bit).
	FlipBit LieKind = iota + 1
	// Stale: the range reads as it was when the lie was armed, whatever was written since
	// (a cache that missed the write, a controller that dropped it).
	Stale
	// ShortRead: a read that reaches into the range returns only the bytes before the
	// range, and no error: it breaks the io.ReaderAt contract, as buggy drivers do.
	ShortRead
	// ShortReadErr: like ShortRead, but with an error wrapping mtd.ErrIO.
	ShortReadErr
)

var lieKindNames = []string{FlipBit: "flipped bit", Stale: "stale", ShortRead: "short read", ShortReadErr: "short read with an error"}

func (k LieKind) String() string { return enumname.Name(k, "LieKind", lieKindNames) }

// Lie makes reads of the range [Off, Off+Len) return other bytes than the medium holds,
// for testing that read-back verification catches it. Writes, erases and the inspection
// methods (Bytes, Snapshot) see the truth.
type Lie struct {
	Kind     LieKind
	Off, Len int64
	// AfterSync holds the lie back until the range has been written (or erased) and the
	// device synced after that: a writer's own read-back right after programming sees the
	// truth, every later read sees the lie. Without it the lie starts at once.
	AfterSync bool
}

// armedLie is a Lie with its state.
type armedLie struct {
	Lie
	stale   []byte // the range when armed (Stale)
	touched bool   // written or erased since armed (AfterSync)
	active  bool
}

// lies are the armed lies of one device.
type lies []*armedLie

// arm adds l over a device holding data.
func (ls *lies) arm(l Lie, data []byte) error {
	if l.Kind < FlipBit || l.Kind > ShortReadErr {
		return fmt.Errorf("mtdsim: lie kind %d: %w", int(l.Kind), mtd.ErrUnsupported)
	}
	if err := mtd.CheckRange(l.Off, l.Len, int64(len(data))); err != nil || l.Len == 0 {
		return fmt.Errorf("mtdsim: lie over %#x+%#x (size %#x): %w", l.Off, l.Len, len(data), mtd.ErrOutOfRange)
	}
	a := &armedLie{Lie: l, active: !l.AfterSync}
	if l.Kind == Stale {
		a.stale = slices.Clone(data[l.Off : l.Off+l.Len])
	}
	*ls = append(*ls, a)
	return nil
}

// wrote notes that [off, off+n) was written or erased.
func (ls lies) wrote(off, n int64) {
	for _, a := range ls {
		if off < a.Off+a.Len && a.Off < off+n {
			a.touched = true
		}
	}
}

// synced starts the AfterSync lies whose range was written.
func (ls lies) synced() {
	for _, a := range ls {
		a.active = a.active || a.touched
	}
}

// read turns the true content p of [off, off+len(p)) into what the device returns.
func (ls lies) read(p []byte, off int64) (int, error) {
	n := len(p)
	var err error
	for _, a := range ls {
		lo, hi := max(off, a.Off), min(off+int64(len(p)), a.Off+a.Len)
		if !a.active || lo >= hi {
			continue
		}
		q := p[lo-off : hi-off]
		switch a.Kind {
		case FlipBit:
			for i := range q {
				q[i] ^= 1
			}
		case Stale:
			copy(q, a.stale[lo-a.Off:])
		case ShortRead, ShortReadErr:
			if k := int(lo - off); k < n {
				n = k
				err = nil
				if a.Kind == ShortReadErr {
					err = &mtd.BlockError{Op: "read", Off: lo, Err: mtd.ErrIO}
				}
			}
		}
	}
	return n, err
}
