package slots

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/aduflash/aduflash/mtd"
)

// flashBackend writes erase blocks of a raw MTD region [base, end), skipping bad blocks.
type flashBackend struct {
	dev      Flash
	info     mtd.Info
	name     string
	base     int64 // region start (erase-block aligned)
	end      int64 // region end
	phys     int64 // next physical block
	reserve  int
	noSkip   bool
	cmp      []byte
	pad      []byte
	good     []int64 // physical offsets of logical blocks, filled lazily for reads
	scanned  int64   // physical offset up to which good has been scanned
	capBytes int64
}

// NewFlashWriter returns a Writer of size bytes into the raw flash region [offset,
// offset+length) of dev (length 0: to the end of the device). A nil resume starts at the
// region's first block; a cursor from an earlier writer of the same region and size
// continues from it. On NAND the image must fit in the good blocks minus reserve blocks.
func NewFlashWriter(dev Flash, name string, offset, length, size int64, resume *Cursor, opts ...Option) (Writer, error) {
	o := newOptions(opts)
	be, err := newFlashRegion(dev, name, offset, length)
	if err != nil {
		return nil, err
	}
	be.noSkip = o.noSkip
	if be.nand() {
		be.reserve = o.reserve
	}
	bad, err := countBad(dev, be.base, be.end)
	if err != nil {
		return nil, err
	}
	es := be.es()
	blocks := (be.end - be.base) / es
	be.capBytes = max(blocks-int64(bad)-int64(be.reserve), 0) * es
	if size > be.capBytes {
		return nil, fmt.Errorf("%w: %s: the payload has %d bytes, the slot takes %d (%d blocks of %d bytes, %d bad, %d reserved)",
			ErrTooLarge, name, size, be.capBytes, blocks, es, bad, be.reserve)
	}
	if resume != nil {
		if err := checkCursor(resume, name, size, es, o); err != nil {
			return nil, err
		}
		if resume.Physical < offset || resume.Physical > be.end || resume.Physical%es != 0 || resume.Physical-offset < resume.Offset {
			return nil, fmt.Errorf("%w: physical position %#x is not a block of region %#x..%#x at or after logical %#x", ErrCursor, resume.Physical, offset, be.end, resume.Offset)
		}
		be.phys = resume.Physical
	}
	w, err := newStreamWriter(be, name, size, resume, o)
	if err != nil {
		return nil, err
	}
	w.st.ReserveBlocks = be.reserve
	return w, nil
}

// newFlashRegion returns a backend over the region [offset, offset+length) of dev (length 0:
// to the end of the device), positioned at its first block, after checking that the region
// is whole erase blocks of the device.
func newFlashRegion(dev Flash, name string, offset, length int64) (*flashBackend, error) {
	info := dev.Info()
	es := int64(info.EraseSize)
	if es <= 0 || info.WriteSize <= 0 {
		return nil, fmt.Errorf("slots: %s: implausible geometry (erase %d, write %d)", name, info.EraseSize, info.WriteSize)
	}
	if length == 0 {
		length = info.Size - offset
	}
	if offset < 0 || offset%es != 0 || length <= 0 || length%es != 0 || offset+length > info.Size {
		return nil, fmt.Errorf("%w: %s: region %#x+%#x does not fit the device (size %#x) in whole %#x-byte erase blocks", ErrConfig, name, offset, length, info.Size, es)
	}
	return &flashBackend{dev: dev, info: info, name: name, base: offset, end: offset + length, phys: offset,
		cmp: make([]byte, es), scanned: offset}, nil
}

func checkCursor(c *Cursor, name string, size, unit int64, o options) error {
	switch {
	case c.Size != size:
		return fmt.Errorf("%w: the cursor is for a %d-byte write, this one has %d bytes", ErrCursor, c.Size, size)
	case c.Slot != "" && c.Slot != name:
		return fmt.Errorf("%w: the cursor is for slot %s, not %s", ErrCursor, c.Slot, name)
	case c.Offset < 0 || c.Offset > size:
		return fmt.Errorf("%w: offset %d outside the %d-byte write", ErrCursor, c.Offset, size)
	case c.Offset%unit != 0 && c.Offset != size:
		return fmt.Errorf("%w: offset %d is not on a %d-byte unit boundary", ErrCursor, c.Offset, unit)
	case o.chunkSize > 0 && c.Offset%int64(o.chunkSize) != 0 && c.Offset != size:
		return fmt.Errorf("%w: offset %d is not on a %d-byte chunk boundary", ErrCursor, c.Offset, o.chunkSize)
	}
	return nil
}

func (f *flashBackend) unit() int       { return f.info.EraseSize }
func (f *flashBackend) physical() int64 { return f.phys }
func (f *flashBackend) capacity() int64 { return f.capBytes }
func (f *flashBackend) sync() error     { return f.dev.Sync() }
func (f *flashBackend) close() error    { return f.dev.Close() }
func (f *flashBackend) nand() bool      { return f.info.Type.HasBadBlocks() }
func isPowerCut(err error) bool         { return errors.Is(err, mtd.ErrPowerCut) }
func isWornOut(err error) bool          { return errors.Is(err, mtd.ErrIO) && !isPowerCut(err) }
func (f *flashBackend) es() int64       { return int64(f.info.EraseSize) }

// commit writes one logical block at the next good physical block.
func (f *flashBackend) commit(off int64, data []byte, st *Stats) error {
	es := f.es()
	for {
		if f.phys >= f.end {
			return fmt.Errorf("%w: %s: no good block left for logical offset %#x (region ends at %#x; %d blocks went bad during this write)",
				ErrReserveExhausted, f.name, off, f.end, st.BadGrown)
		}
		blk := f.phys
		if f.nand() {
			bad, err := f.dev.IsBad(blk)
			if err != nil {
				return err
			}
			if bad {
				st.BadSkipped++
				f.phys += es
				continue
			}
		}
		if !f.noSkip {
			cmp := f.cmp[:len(data)]
			if _, err := readFull(f.dev.ReadAt, cmp, blk); err != nil {
				return fmt.Errorf("slots: %s: comparing block %#x: %w", f.name, blk, err)
			}
			if bytes.Equal(cmp, data) {
				st.UnitsSkipped++
				st.BytesSkipped += int64(len(data))
				f.phys += es
				return nil
			}
		}
		st.Erases++
		if err := f.dev.Erase(blk, es); err != nil {
			if isWornOut(err) && f.nand() {
				if err := f.markBad(blk, st); err != nil {
					return err
				}
				continue
			}
			return err
		}
		prog := f.program(data)
		if len(prog) > 0 {
			if _, err := f.dev.WriteAt(prog, blk); err != nil {
				if isWornOut(err) && f.nand() {
					if err := f.markBad(blk, st); err != nil {
						return err
					}
					continue
				}
				return err
			}
		}
		// Read back what was programmed.
		cmp := f.cmp[:len(data)]
		if _, err := readFull(f.dev.ReadAt, cmp, blk); err != nil {
			return fmt.Errorf("slots: %s: reading block %#x back: %w", f.name, blk, err)
		}
		if !bytes.Equal(cmp, data) {
			if f.nand() {
				if err := f.markBad(blk, st); err != nil {
					return err
				}
				continue
			}
			return &mtd.BlockError{Op: "verify", Off: blk, Err: ErrMismatch}
		}
		st.UnitsWritten++
		st.BytesWritten += int64(len(prog))
		f.phys += es
		return nil
	}
}

// program returns the bytes to program for data: on NAND padded to whole pages with 0xFF,
// without trailing erased pages (they stay erased, as nandwrite leaves them).
func (f *flashBackend) program(data []byte) []byte {
	ws := f.info.WriteSize
	if ws <= 1 {
		return data
	}
	n := (len(data) + ws - 1) / ws * ws
	p := data
	if n != len(data) {
		if cap(f.pad) < n {
			f.pad = make([]byte, n)
		}
		p = f.pad[:n]
		copy(p, data)
		for i := len(data); i < n; i++ {
			p[i] = 0xFF
		}
	}
	for len(p) >= ws && mtd.IsErased(p[len(p)-ws:]) {
		p = p[:len(p)-ws]
	}
	return p
}

func (f *flashBackend) markBad(blk int64, st *Stats) error {
	if err := f.dev.MarkBad(blk); err != nil {
		return err
	}
	st.BadGrown++
	f.phys += f.es()
	f.good, f.scanned = nil, f.base // the mapping changed
	return nil
}

// readAt reads logical bytes: logical block i lives in the i-th good block of the region.
func (f *flashBackend) readAt(p []byte, off int64) (int, error) {
	es := f.es()
	n := 0
	for n < len(p) {
		lb := (off + int64(n)) / es
		pb, err := f.blockOf(lb)
		if err != nil {
			return n, err
		}
		in := (off + int64(n)) % es
		k := min(int64(len(p)-n), es-in)
		m, err := readFull(f.dev.ReadAt, p[n:n+int(k)], pb+in)
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

func (f *flashBackend) blockOf(lb int64) (int64, error) {
	for int64(len(f.good)) <= lb {
		if f.scanned >= f.end {
			return 0, fmt.Errorf("%w: %s: logical block %d is past the good blocks of the region", mtd.ErrOutOfRange, f.name, lb)
		}
		b := f.scanned
		f.scanned += f.es()
		if f.nand() {
			bad, err := f.dev.IsBad(b)
			if err != nil {
				return 0, err
			}
			if bad {
				continue
			}
		}
		f.good = append(f.good, b)
	}
	return f.good[lb], nil
}

func newOptions(opts []Option) options {
	o := options{syncEvery: DefaultSyncInterval, unit: 1 << 20}
	for _, fn := range opts {
		fn(&o)
	}
	if o.syncEvery <= 0 {
		o.syncEvery = DefaultSyncInterval
	}
	return o
}

func countBad(dev Flash, from, to int64) (int, error) {
	info := dev.Info()
	if !info.Type.HasBadBlocks() {
		return 0, nil
	}
	bad := 0
	for b := from; b < to; b += int64(info.EraseSize) {
		isBad, err := dev.IsBad(b)
		if err != nil {
			return 0, err
		}
		if isBad {
			bad++
		}
	}
	return bad, nil
}

// flashCapacity is what NewFlashWriter would accept for the region.
func flashCapacity(dev Flash, name string, offset, length int64, reserve int) (int64, error) {
	be, err := newFlashRegion(dev, name, offset, length)
	if err != nil {
		return 0, err
	}
	if !be.nand() {
		reserve = 0
	}
	good, err := be.goodBytes()
	if err != nil {
		return 0, err
	}
	return max(good-int64(reserve)*be.es(), 0), nil
}

// goodBytes is the size of the region's good blocks: what a reader of it reads.
func (f *flashBackend) goodBytes() (int64, error) {
	bad, err := countBad(f.dev, f.base, f.end)
	if err != nil {
		return 0, err
	}
	return f.end - f.base - int64(bad)*f.es(), nil
}

// readsBack: commit reads every programmed block back.
func (f *flashBackend) readsBack() bool { return true }
