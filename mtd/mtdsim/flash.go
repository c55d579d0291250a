package mtdsim

import (
	"bytes"
	"fmt"
	"slices"

	"github.com/aduflash/aduflash/mtd"
)

// Counters are the operations a Flash has performed (see the package doc for what an
// operation is). Failed and torn operations are counted.
type Counters struct {
	Ops          int64   // Erases + Programs + MarkBads
	Erases       int64   // erase-block erases
	Programs     int64   // NAND page programs; NOR WriteAt calls
	BytesWritten int64   // bytes that reached the flash in programs (a torn program: its prefix)
	MarkBads     int64   // MarkBad calls that reached the flash
	Failed       int64   // operations that failed by schedule (ErrIO)
	BlockErases  []int64 // erases per erase block, for wear checks
}

// Flash is a simulated NOR or NAND flash with the method set of *mtd.Device. It is safe
// for concurrent use.
type Flash struct {
	medium
	info        mtd.Info
	strict      bool
	endurance   int
	programmed  []bool // NAND: page programmed since its last erase
	bad         []bool
	failErase   []bool
	failProgram map[int]bool
	wear        []int64 // erases per block since creation, for WithEndurance
	cnt         Counters
}

// NewNOR returns an erased (all 0xFF) NOR flash of size bytes with eraseSize blocks.
// Programs only clear bits and may have any alignment; there are no bad blocks.
func NewNOR(size, eraseSize int, opts ...Option) (*Flash, error) {
	return newFlash(mtd.TypeNOR, size, eraseSize, 1, opts)
}

// NewNAND returns an erased NAND flash of size bytes with eraseSize blocks of pageSize
// pages. Factory bad blocks (WithFactoryBad) hold garbage.
func NewNAND(size, eraseSize, pageSize int, opts ...Option) (*Flash, error) {
	return newFlash(mtd.TypeNAND, size, eraseSize, pageSize, opts)
}

func newFlash(t mtd.Type, size, eraseSize, pageSize int, opts []Option) (*Flash, error) {
	if size <= 0 || eraseSize <= 0 || pageSize <= 0 || size%eraseSize != 0 || eraseSize%pageSize != 0 {
		return nil, fmt.Errorf("mtdsim: geometry size %d, erase %d, page %d: sizes must be positive and divide each other: %w",
			size, eraseSize, pageSize, mtd.ErrUnaligned)
	}
	c := newConfig(opts)
	f := &Flash{
		info: mtd.Info{Name: c.name, Type: t, Size: int64(size), EraseSize: eraseSize,
			WriteSize: pageSize, SubpageSize: pageSize, Writable: true},
		strict:      c.strict && t == mtd.TypeNOR,
		medium:      newMedium(bytes.Repeat([]byte{0xFF}, size), c.seed),
		endurance:   c.endurance,
		bad:         make([]bool, size/eraseSize),
		failErase:   make([]bool, size/eraseSize),
		failProgram: map[int]bool{},
		wear:        make([]int64, size/eraseSize),
	}
	f.cnt.BlockErases = make([]int64, size/eraseSize)
	if t.IsNAND() {
		f.info.OOBSize = pageSize / 32
		f.programmed = make([]bool, size/pageSize)
		for _, b := range c.factoryBad {
			if b < 0 || b >= len(f.bad) {
				return nil, fmt.Errorf("mtdsim: factory bad block %d of %d: %w", b, len(f.bad), mtd.ErrOutOfRange)
			}
			f.bad[b] = true
			fillRandom(f.rng, f.block(b))
			f.setProgrammed(b, true)
		}
	}
	return f, nil
}

func (f *Flash) nand() bool { return f.info.Type.IsNAND() }

func (f *Flash) block(b int) []byte {
	es := f.info.EraseSize
	return f.data[b*es : (b+1)*es]
}

func (f *Flash) setProgrammed(b int, v bool) {
	if !f.nand() {
		return
	}
	ppb := f.info.EraseSize / f.info.WriteSize
	for i := b * ppb; i < (b+1)*ppb; i++ {
		f.programmed[i] = v
	}
}

// Info returns the geometry. Writable is always true.
func (f *Flash) Info() mtd.Info { return f.info }

// IsBad reports whether the erase block holding off is bad (always false on NOR).
func (f *Flash) IsBad(off int64) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.pw.check(); err != nil {
		return false, err
	}
	if err := mtd.CheckRange(off, 1, f.info.Size); err != nil {
		return false, err
	}
	return f.bad[f.info.BlockOf(off)], nil
}

// MarkBad marks the erase block holding off bad (NAND; NOR gives mtd.ErrUnsupported).
func (f *Flash) MarkBad(off int64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.pw.check(); err != nil {
		return err
	}
	if err := mtd.CheckRange(off, 1, f.info.Size); err != nil {
		return err
	}
	if !f.nand() {
		return fmt.Errorf("mtdsim: mark bad on %s: %w", f.info.Type, mtd.ErrUnsupported)
	}
	b := f.info.BlockOf(off)
	f.cnt.Ops++
	f.cnt.MarkBads++
	if f.pw.begin(0, f.rng) >= 0 {
		return &mtd.BlockError{Op: "markbad", Off: f.info.BlockOffset(b), Err: mtd.ErrPowerCut}
	}
	f.bad[b] = true
	return nil
}

// Erase erases whole erase blocks, one operation per block, stopping at the first error.
func (f *Flash) Erase(off, length int64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.pw.check(); err != nil {
		return err
	}
	if err := f.info.CheckErase(off, length); err != nil {
		return err
	}
	for blk := range mtd.BlockRange(off, length, f.info.EraseSize) {
		b := f.info.BlockOf(blk)
		if f.bad[b] {
			return &mtd.BlockError{Op: "erase", Off: blk, Err: mtd.ErrBadBlock}
		}
		f.cnt.Ops++
		f.cnt.Erases++
		f.cnt.BlockErases[b]++
		f.wear[b]++
		f.lies.wrote(blk, int64(f.info.EraseSize))
		torn := f.pw.begin(0, f.rng) >= 0
		failed := f.failErase[b] || f.endurance > 0 && f.wear[b] > int64(f.endurance)
		if torn || failed {
			for i, v := range f.block(b) {
				f.block(b)[i] = v | byte(f.rng.Uint32())
			}
			f.setProgrammed(b, true)
			if torn {
				return &mtd.BlockError{Op: "erase", Off: blk, Err: mtd.ErrPowerCut}
			}
			f.failErase[b] = true
			f.cnt.Failed++
			return &mtd.BlockError{Op: "erase", Off: blk, Err: mtd.ErrIO}
		}
		clear255(f.block(b))
		f.setProgrammed(b, false)
	}
	return nil
}

func clear255(b []byte) {
	for i := range b {
		b[i] = 0xFF
	}
}

// WriteAt programs p at off. NAND: whole pages, page-aligned (mtd.ErrUnaligned), each
// page at most once per erase (mtd.ErrNotErased), one operation per page. NOR: any
// alignment, new = old AND data (WithStrict: mtd.ErrNotErased instead of losing 1 bits),
// one operation per call. Bad blocks are refused (mtd.ErrBadBlock); every check is made
// before anything is programmed.
func (f *Flash) WriteAt(p []byte, off int64) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.pw.check(); err != nil {
		return 0, err
	}
	if err := f.info.CheckWrite(off, len(p)); err != nil {
		return 0, err
	}
	if len(p) == 0 {
		return 0, nil
	}
	for blk := range mtd.BlockRange(off, int64(len(p)), f.info.EraseSize) {
		if f.bad[f.info.BlockOf(blk)] {
			return 0, &mtd.BlockError{Op: "write", Off: blk, Err: mtd.ErrBadBlock}
		}
	}
	if f.nand() {
		return f.writeNAND(p, off)
	}
	return f.writeNOR(p, off)
}

func (f *Flash) writeNAND(p []byte, off int64) (int, error) {
	ps := f.info.WriteSize
	first := int(off) / ps
	for i := range len(p) / ps {
		if f.programmed[first+i] {
			return 0, &mtd.BlockError{Op: "write", Off: int64(first+i) * int64(ps), Err: mtd.ErrNotErased}
		}
	}
	f.lies.wrote(off, int64(len(p)))
	for i := range len(p) / ps {
		page := first + i
		dst := f.data[page*ps : (page+1)*ps]
		src := p[i*ps : (i+1)*ps]
		f.cnt.Ops++
		f.cnt.Programs++
		f.programmed[page] = true
		if k := f.pw.begin(ps, f.rng); k >= 0 {
			copy(dst, src[:k])
			fillRandom(f.rng, dst[k:])
			f.cnt.BytesWritten += int64(k)
			return i * ps, &mtd.BlockError{Op: "write", Off: int64(page) * int64(ps), Err: mtd.ErrPowerCut}
		}
		if f.failProgram[page] {
			fillRandom(f.rng, dst)
			f.cnt.Failed++
			return i * ps, &mtd.BlockError{Op: "write", Off: int64(page) * int64(ps), Err: mtd.ErrIO}
		}
		copy(dst, src)
		f.cnt.BytesWritten += int64(ps)
	}
	return len(p), nil
}

func (f *Flash) writeNOR(p []byte, off int64) (int, error) {
	dst := f.data[off : off+int64(len(p))]
	if f.strict {
		for i, v := range p {
			if dst[i]&v != v {
				return 0, &mtd.BlockError{Op: "write", Off: off + int64(i), Err: mtd.ErrNotErased}
			}
		}
	}
	f.lies.wrote(off, int64(len(p)))
	f.cnt.Ops++
	f.cnt.Programs++
	n, err := len(p), error(nil)
	if k := f.pw.begin(len(p), f.rng); k >= 0 {
		n, err = k, mtd.ErrPowerCut
	}
	for i := range n {
		if f.failProgram[int(off)+i] {
			n = i
			if err == nil {
				f.cnt.Failed++
				err = mtd.ErrIO
			}
			break
		}
	}
	for i := range n {
		dst[i] &= p[i]
	}
	f.cnt.BytesWritten += int64(n)
	if err != nil {
		return n, &mtd.BlockError{Op: "write", Off: off + int64(n), Err: err}
	}
	return n, nil
}

// Unlock succeeds (the simulated flash has no write protection).
func (f *Flash) Unlock(off, length int64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.pw.check(); err != nil {
		return err
	}
	return mtd.CheckRange(off, length, f.info.Size)
}

// Sync succeeds: every operation reaches the flash when it returns. It starts the
// AfterSync lies whose range was written.
func (f *Flash) Sync() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.synced()
}

// Close does nothing and never fails: the simulated flash outlives its handles (a
// simulated reboot reuses it), and it stays usable after Close.
func (f *Flash) Close() error { return nil }

// FailEraseAt makes every later erase of erase block b fail with mtd.ErrIO.
func (f *Flash) FailEraseAt(b int) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if b < 0 || b >= len(f.bad) {
		return fmt.Errorf("mtdsim: block %d: %w", b, mtd.ErrOutOfRange)
	}
	f.failErase[b] = true
	return nil
}

// FailProgramAt makes every later program of page n (offset n*WriteSize) fail with
// mtd.ErrIO.
func (f *Flash) FailProgramAt(page int) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if page < 0 || int64(page) >= f.info.Size/int64(f.info.WriteSize) {
		return fmt.Errorf("mtdsim: page %d: %w", page, mtd.ErrOutOfRange)
	}
	f.failProgram[page] = true
	return nil
}

// Counters returns a copy of the operation counters.
func (f *Flash) Counters() Counters {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.cnt
	c.BlockErases = slices.Clone(f.cnt.BlockErases)
	return c
}

// ResetCounters zeroes the counters. The wear that WithEndurance counts is kept.
func (f *Flash) ResetCounters() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cnt = Counters{BlockErases: make([]int64, len(f.bad))}
}

// BadBlocks returns the indexes of the bad erase blocks.
func (f *Flash) BadBlocks() []int {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []int
	for i, b := range f.bad {
		if b {
			out = append(out, i)
		}
	}
	return out
}

// Load preloads content at offset 0 (raw, not an operation, ignores power state). On NAND
// a page counts as programmed unless it is all 0xFF.
func (f *Flash) Load(data []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if int64(len(data)) > f.info.Size {
		return fmt.Errorf("mtdsim: load %d bytes into %d: %w", len(data), f.info.Size, mtd.ErrOutOfRange)
	}
	copy(f.data, data)
	if f.nand() {
		ps := f.info.WriteSize
		for i := range f.programmed {
			f.programmed[i] = !mtd.IsErased(f.data[i*ps : (i+1)*ps])
		}
	}
	return nil
}

// Snapshot is a saved flash medium: content, programmed pages and bad blocks. Failure
// schedules, counters and power state are not part of it.
type Snapshot struct {
	info       mtd.Info
	data       []byte
	programmed []bool
	bad        []bool
}

// Bytes returns a copy of the saved content.
func (s *Snapshot) Bytes() []byte { return slices.Clone(s.data) }

// Snapshot saves the medium.
func (f *Flash) Snapshot() *Snapshot {
	f.mu.Lock()
	defer f.mu.Unlock()
	return &Snapshot{info: f.info, data: slices.Clone(f.data), programmed: slices.Clone(f.programmed), bad: slices.Clone(f.bad)}
}

// Restore puts back a medium saved by Snapshot of a flash with the same geometry.
func (f *Flash) Restore(s *Snapshot) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if s == nil || s.info.Type != f.info.Type || s.info.Size != f.info.Size ||
		s.info.EraseSize != f.info.EraseSize || s.info.WriteSize != f.info.WriteSize {
		return fmt.Errorf("mtdsim: restore: snapshot of another geometry: %w", mtd.ErrUnsupported)
	}
	copy(f.data, s.data)
	copy(f.programmed, s.programmed)
	copy(f.bad, s.bad)
	return nil
}
