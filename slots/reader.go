package slots

import (
	"fmt"
	"io"
	"os"
	"sync"
)

// Reader reads a slot without writing it: the running bank's slot that a deployment copies
// into the spare bank, or what a slot holds before a write.
type Reader interface {
	// ReadAt reads the slot's logical bytes, as a Writer lays them out (raw NAND: logical
	// block i is the region's i-th good block); past Size it returns io.EOF.
	io.ReaderAt
	// Size is how many bytes the slot holds: raw flash its good blocks (no reserve is
	// subtracted: reading needs none), a UBI volume its data (a static volume's last update,
	// a dynamic one's reserved size), a file its length, a device its size from the slot's
	// offset; at most the configured size.
	Size() int64
	Close() error
}

// OpenReader opens slot s for reading only. Any slot may be read, one of the running bank
// too: its storage is opened read-only (a raw MTD device, a block device or file O_RDONLY;
// storage opened by an Env hook is only read).
func (l *Layout) OpenReader(s *Slot) (Reader, error) {
	t, err := l.locate(s)
	if err != nil {
		return nil, err
	}
	return t.OpenReader()
}

// OpenReader opens the target for reading only: what the slot holds before (or after) a
// write, in the layout its writer writes.
func (t *Target) OpenReader() (Reader, error) {
	s := t.slot
	limit := func(n int64) int64 {
		if s.Size > 0 {
			return min(n, int64(s.Size))
		}
		return n
	}
	switch {
	case s.Type == TypeUBI:
		size := t.vol.ReservedSize()
		if v, ok := t.vol.(interface{ Size() int64 }); ok {
			size = v.Size()
		}
		return &slotReader{name: s.String(), read: t.vol.ReadAt, size: limit(size), close: func() error { return nil }}, nil
	case s.IsMTD():
		dev, err := t.openFlash(readOnly)
		if err != nil {
			return nil, err
		}
		be, err := newFlashRegion(dev, s.String(), int64(s.Offset), int64(s.Size))
		if err != nil {
			dev.Close()
			return nil, err
		}
		good, err := be.goodBytes()
		if err != nil {
			dev.Close()
			return nil, fmt.Errorf("slot %s: %w", s, err)
		}
		return &slotReader{name: s.String(), read: be.readAt, size: good, close: dev.Close}, nil
	}
	dev, size, err := t.openBlock(readOnly)
	if err != nil {
		return nil, err
	}
	base := int64(s.Offset)
	if size == 0 { // a regular file, or storage behind an Env hook that does not tell its size
		size = int64(s.Size) + base
		if f, ok := dev.(*os.File); ok {
			if fi, err := f.Stat(); err == nil {
				size = fi.Size()
			}
		}
	}
	read := func(p []byte, off int64) (int, error) { return dev.ReadAt(p, base+off) }
	return &slotReader{name: s.String(), read: read, size: limit(max(size-base, 0)), close: dev.Close}, nil
}

// slotReader reads the first size logical bytes of a slot through read. Its reads take
// turns: a flash backend keeps the block it read last, so parallel ReadAt calls (which
// io.ReaderAt allows, and the adaptive scan makes) must not run through it at once.
type slotReader struct {
	name  string
	mu    sync.Mutex
	read  func(p []byte, off int64) (int, error)
	size  int64
	close func() error
}

func (r *slotReader) Size() int64  { return r.size }
func (r *slotReader) Close() error { return r.close() }

func (r *slotReader) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("slots: %s: read at %d", r.name, off)
	}
	if off >= r.size {
		return 0, io.EOF
	}
	want := len(p)
	if rest := r.size - off; int64(want) > rest {
		p = p[:rest]
	}
	r.mu.Lock()
	n, err := readFull(r.read, p, off)
	r.mu.Unlock()
	if err != nil {
		return n, fmt.Errorf("slots: reading %s at %d: %w", r.name, off, err)
	}
	if n < want {
		return n, io.EOF
	}
	return n, nil
}
