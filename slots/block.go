package slots

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
)

// blockBackend writes units of a block device, partition or file region [base, base+limit).
type blockBackend struct {
	dev    BlockDevice
	u      int
	base   int64
	limit  int64
	phys   int64
	noSkip bool
	cmp    []byte
	misses int // consecutive units that differed from what the device held
	units  int // units committed, to space out probes after a run of misses
}

// NewBlockWriter returns a Writer of size bytes into dev from offset on; capacity is the
// number of bytes the slot takes from offset on (≤ 0: unlimited, e.g. a file that grows).
// Units of WithUnit bytes (default 1 MiB) whose content is already identical are not
// written. A resume cursor continues at its Offset.
func NewBlockWriter(dev BlockDevice, name string, offset, capacity, size int64, resume *Cursor, opts ...Option) (Writer, error) {
	o := newOptions(opts)
	if o.unit <= 0 {
		return nil, fmt.Errorf("slots: unit %d", o.unit)
	}
	if capacity <= 0 {
		capacity = math.MaxInt64 - offset
	}
	be := &blockBackend{dev: dev, u: o.unit, base: offset, limit: capacity, phys: offset, noSkip: o.noSkip, cmp: make([]byte, o.unit)}
	if resume != nil {
		if err := checkCursor(resume, name, size, int64(o.unit), o); err != nil {
			return nil, err
		}
		if resume.Physical != offset+resume.Offset {
			return nil, fmt.Errorf("%w: physical position %d is not offset %d + logical %d", ErrCursor, resume.Physical, offset, resume.Offset)
		}
		be.phys = resume.Physical
	}
	return newStreamWriter(be, name, size, resume, o)
}

func (b *blockBackend) unit() int       { return b.u }
func (b *blockBackend) physical() int64 { return b.phys }
func (b *blockBackend) capacity() int64 { return b.limit }
func (b *blockBackend) sync() error     { return b.dev.Sync() }
func (b *blockBackend) close() error    { return b.dev.Close() }

func (b *blockBackend) commit(off int64, data []byte, st *Stats) error {
	pos := b.base + off
	b.units++
	if !b.noSkip && b.probeDue() {
		if b.same(data, pos) {
			b.misses = 0
			st.UnitsSkipped++
			st.BytesSkipped += int64(len(data))
			b.phys = pos + int64(len(data))
			return nil
		}
		b.misses++
	}
	if _, err := b.dev.WriteAt(data, pos); err != nil {
		return err
	}
	st.UnitsWritten++
	st.BytesWritten += int64(len(data))
	b.phys = pos + int64(len(data))
	return nil
}

// After missRun units in a row that all differed (a new image over an old one), only every
// probeEvery-th unit is compared; a match goes back to comparing every unit. Reading before
// each write costs a block device's page cache far more than the read itself (a 1 GiB write
// to a loop device: 1.07 s with a read before every MiB, 0.78 s without); writing a unit
// that happened to be identical is merely unneeded.
const (
	missRun    = 16
	probeEvery = 64
)

func (b *blockBackend) probeDue() bool {
	return b.misses < missRun || b.units%probeEvery == 0
}

// probeSize is how much of a unit is compared first: new data nearly always differs from
// the old within its first page, and then the rest of the unit need not be read.
const probeSize = 4096

// same reports whether the device already holds data at pos (read errors count as "no").
func (b *blockBackend) same(data []byte, pos int64) bool {
	probe := min(len(data), probeSize)
	cmp := b.cmp[:len(data)]
	if n, err := b.dev.ReadAt(cmp[:probe], pos); n != probe || (err != nil && !errors.Is(err, io.EOF)) || !bytes.Equal(cmp[:probe], data[:probe]) {
		return false
	}
	if probe == len(data) {
		return true
	}
	n, err := b.dev.ReadAt(cmp[probe:], pos+int64(probe))
	return n == len(data)-probe && (err == nil || errors.Is(err, io.EOF)) && bytes.Equal(cmp[probe:], data[probe:])
}

func (b *blockBackend) readAt(p []byte, off int64) (int, error) {
	return b.dev.ReadAt(p, b.base+off)
}

// ubiWriter streams one UBI volume update. It cannot resume inside an update: it always
// starts at 0, and its cursor stays at 0 until the update is complete.
type ubiWriter struct {
	vol    Volume
	name   string
	size   int64
	upd    io.WriteCloser
	n      int64
	cur    Cursor
	st     Stats
	err    error
	done   bool
	closed bool
}

// NewVolumeWriter starts a UBI volume update of exactly size bytes (UBI_IOCVOLUP). resume
// is ignored: an interrupted volume update must be restarted from offset 0 (the kernel
// marks the volume corrupted until an update completes).
func NewVolumeWriter(vol Volume, name string, size int64, resume *Cursor, opts ...Option) (Writer, error) {
	_ = resume
	if c := vol.ReservedSize(); size > c {
		return nil, fmt.Errorf("%w: %s: the payload has %d bytes, the UBI volume takes %d", ErrTooLarge, name, size, c)
	}
	u, err := vol.Update(size)
	if err != nil {
		return nil, err
	}
	return &ubiWriter{vol: vol, name: name, size: size, upd: u, cur: Cursor{Slot: name, Size: size}}, nil
}

func (w *ubiWriter) Write(p []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	if rest := w.size - w.n; int64(len(p)) > rest {
		w.err = fmt.Errorf("%w: %s: more than the announced %d bytes", ErrTooLarge, w.name, w.size)
		p = p[:rest]
	}
	n, err := w.upd.Write(p)
	w.n += int64(n)
	w.st.BytesWritten += int64(n)
	if err != nil {
		w.err = err
	}
	return n, w.err
}

func (w *ubiWriter) Finish() error {
	if w.err != nil || w.done {
		return w.err
	}
	if err := w.upd.Close(); err != nil {
		w.err = err
		return err
	}
	w.done = true
	w.cur.Offset, w.cur.Physical = w.size, w.size
	w.st.Syncs++
	return nil
}

func (w *ubiWriter) ReadAt(p []byte, off int64) (int, error) {
	return readWritten(w.vol.ReadAt, w.size, p, off)
}

func (w *ubiWriter) Cursor() Cursor           { return w.cur }
func (w *ubiWriter) Capacity() int64          { return w.vol.ReservedSize() }
func (w *ubiWriter) Stats() Stats             { return w.st }
func (w *ubiWriter) Verify(r io.Reader) error { return VerifyReader(w, w.size, r) }

func (w *ubiWriter) Close() error {
	if w.closed {
		return nil
	}
	w.closed = true
	if !w.done {
		err := w.upd.Close() // leaves the volume marked as interrupted
		if err == nil {
			err = fmt.Errorf("slots: %s: UBI update closed after %d of %d bytes", w.name, w.n, w.size)
		}
		return err
	}
	return nil
}

func (b *blockBackend) readsBack() bool { return false }

// VerifyWritten cannot check a UBI update without the data: it returns an error; use
// Verify, or read the slot back over ReadAt.
func (w *ubiWriter) VerifyWritten() error {
	return fmt.Errorf("slots: %s: a UBI volume update keeps no per-unit checksums: verify with Verify or read it back", w.name)
}
