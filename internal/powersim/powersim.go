// Package powersim is the power switch of a simulated board. Thin wrappers around the
// simulators count the board's mutating operations, one by one, in the order they reach
// the media:
//   - raw flash (mtd/mtdsim): a NAND page program, a NOR program unit (a SPI NOR page, or a
//     whole WriteAt), the erase of one erase block, a bad-block mark, a sync;
//   - a block device (mtdsim.Block): the write of one sector (or of the part of it a write
//     touches), a sync;
//   - an environment store written in one step (bootloader/sim's MemEnv): one transaction;
//   - the journal's file system (FS around any journal.FS, or MemFS): a file creation, a
//     write, a file sync, a rename, a folder sync, a removal.
//
// CutAt arms a cut: the chosen operation fails, either without effect (TearNone) or partly
// applied (TearPartial: a page or NOR program up to a byte the simulator draws from its
// seed, an erase that leaves the block partly erased, a sector or file write of a prefix),
// and every operation after it fails with ErrPowerCut until On. Reads fail too while the
// power is off. What a cut lost beyond the torn operation (MemFS: writes and folder changes
// not yet synced) is settled when the power comes back.
package powersim

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"

	"github.com/aduflash/aduflash/journal"
	"github.com/aduflash/aduflash/mtd"
	"github.com/aduflash/aduflash/mtd/mtdsim"
)

// ErrPowerCut is what every operation returns once the power is gone.
var ErrPowerCut = errors.New("power cut")

// Tear says how the operation the power fails at ends.
type Tear int

const (
	// TearNone: the operation is not applied at all.
	TearNone Tear = iota
	// TearPartial: the operation is partly applied (a page or program up to a seeded
	// byte, a partial erase, a sector or file write of a prefix). Operations that cannot
	// be partial (syncs, renames, bad-block marks, environment transactions) end as with
	// TearNone.
	TearPartial
)

func (t Tear) String() string {
	if t == TearPartial {
		return "torn"
	}
	return "clean"
}

// Kind is what an operation does.
type Kind string

// The kinds of operations.
const (
	Program    Kind = "program"     // a NAND page, a NOR program unit
	Erase      Kind = "erase"       // one erase block
	MarkBad    Kind = "markbad"     // a bad-block mark
	Sync       Kind = "sync"        // a flash or block-device sync
	Sector     Kind = "sector"      // a block-device sector write
	EnvWrite   Kind = "env"         // a one-step environment transaction (MemEnv)
	FileCreate Kind = "file-create" // journal file system operations
	FileWrite  Kind = "file-write"
	FileSync   Kind = "file-sync"
	Rename     Kind = "rename"
	SyncDir    Kind = "sync-dir"
	Remove     Kind = "remove"
	SMP        Kind = "smp" // a request the gateway sends to an attached MCU
)

// Tears reports whether an operation of kind k can be partly applied.
func (k Kind) Tears() bool { return k == Program || k == Erase || k == Sector || k == FileWrite }

// Op is one counted operation.
type Op struct {
	Kind  Kind
	Where string // the medium: a slot, "env", "journal"
}

func (o Op) String() string { return fmt.Sprintf("%s of %s", o.Kind, o.Where) }

// Power is the board's power switch. It is safe for concurrent use.
type Power struct {
	mu      sync.Mutex
	left    int // operations before the cut; -1: no cut armed
	tear    Tear
	off     bool
	ops     int
	cuts    int
	cutOp   Op
	record  bool
	trace   []Op
	restore []func()
	rng     *rand.Rand
}

// Option configures a Power.
type Option func(*Power)

// WithSeed seeds the choices the switch makes itself (how much of a torn file write lands).
// Default 1.
func WithSeed(seed uint64) Option {
	return func(p *Power) { p.rng = rand.New(rand.NewPCG(seed, 0x5eed)) }
}

// New returns a switch that is on, with no cut armed.
func New(opts ...Option) *Power {
	p := &Power{left: -1, rng: rand.New(rand.NewPCG(1, 0x5eed))}
	for _, o := range opts {
		o(p)
	}
	return p
}

// CutAt arms a cut: n more operations complete, the next one fails as t says. It replaces
// an earlier arming.
func (p *Power) CutAt(n int, t Tear) {
	p.mu.Lock()
	p.left, p.tear, p.off = max(n, 0), t, false
	p.mu.Unlock()
}

// CutAfter arms a cut after n more operations, the cut one not applied.
func (p *Power) CutAfter(n int) { p.CutAt(n, TearNone) }

// On restores power (and disarms a cut not reached yet). After a cut, the functions given
// to AfterCut settle what the cut lost first.
func (p *Power) On() {
	p.mu.Lock()
	wasOff := p.off
	p.left, p.off = -1, false
	fns := p.restore
	p.mu.Unlock()
	if wasOff {
		for _, fn := range fns {
			fn()
		}
	}
}

// AfterCut registers fn to run when the power comes back after a cut (MemFS drops there
// what was not durable).
func (p *Power) AfterCut(fn func()) { p.mu.Lock(); p.restore = append(p.restore, fn); p.mu.Unlock() }

// IsOff tells whether the power is cut.
func (p *Power) IsOff() bool { p.mu.Lock(); defer p.mu.Unlock(); return p.off }

// Ops counts the operations done with power on.
func (p *Power) Ops() int { p.mu.Lock(); defer p.mu.Unlock(); return p.ops }

// Cuts counts the cuts so far, and returns the operation of the last one.
func (p *Power) Cuts() (int, Op) { p.mu.Lock(); defer p.mu.Unlock(); return p.cuts, p.cutOp }

// Record starts keeping the list of operations done (Recorded).
func (p *Power) Record() { p.mu.Lock(); p.record = true; p.mu.Unlock() }

// Recorded returns the operations done with power on since Record, in order.
func (p *Power) Recorded() []Op {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Op(nil), p.trace...)
}

// Check fails with ErrPowerCut while the power is off (reads).
func (p *Power) Check() error {
	if p.IsOff() {
		return ErrPowerCut
	}
	return nil
}

// Op counts one operation of kind k on where that cannot be partly applied, or fails with
// ErrPowerCut.
func (p *Power) Op(k Kind, where string) error { return p.Do(Op{k, where}, nil, nil) }

// Do runs one operation: apply while the power holds. At the armed cut, tear (if set and
// the cut is TearPartial) applies part of it; then the power is off and Do returns
// ErrPowerCut.
func (p *Power) Do(op Op, apply func() error, tear func()) error {
	cut, t, err := p.next(op)
	if err != nil {
		return err
	}
	if cut {
		if t == TearPartial && tear != nil {
			tear()
		}
		return ErrPowerCut
	}
	if apply == nil {
		return nil
	}
	return apply()
}

// next counts op; cut tells that the power fails at it.
func (p *Power) next(op Op) (cut bool, t Tear, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.off {
		return false, 0, ErrPowerCut
	}
	if p.left == 0 {
		p.off, p.left = true, -1
		p.cuts++
		p.cutOp = op
		return true, p.tear, nil
	}
	if p.left > 0 {
		p.left--
	}
	p.ops++
	if p.record {
		p.trace = append(p.trace, op)
	}
	return false, 0, nil
}

// intN draws from the switch's seeded generator.
func (p *Power) intN(n int) int { p.mu.Lock(); defer p.mu.Unlock(); return p.rng.IntN(n) }

// Flash is simulated raw flash behind the switch: NAND programs count page by page, NOR
// programs by Unit bytes, erases block by block.
type Flash struct {
	*mtdsim.Flash
	P    *Power
	Name string // where, in the recorded operations
	// Unit is the NOR program unit in bytes (a SPI NOR page: 256); 0 counts a NOR WriteAt
	// as one operation. NAND programs count per page.
	Unit int
}

func (f Flash) unit(n int) int {
	if i := f.Flash.Info(); i.Type.IsNAND() {
		return i.WriteSize
	}
	if f.Unit > 0 {
		return f.Unit
	}
	return max(n, 1)
}

func (f Flash) ReadAt(b []byte, off int64) (int, error) {
	if err := f.P.Check(); err != nil {
		return 0, err
	}
	return f.Flash.ReadAt(b, off)
}

func (f Flash) IsBad(off int64) (bool, error) {
	if err := f.P.Check(); err != nil {
		return false, err
	}
	return f.Flash.IsBad(off)
}

// refused tells whether mtdsim refuses the write before touching the flash (no operation).
func (f Flash) refused(b []byte, off int64) bool {
	i := f.Flash.Info()
	if len(b) == 0 || i.CheckWrite(off, len(b)) != nil {
		return true
	}
	for blk := range mtd.BlockRange(off, int64(len(b)), i.EraseSize) {
		if bad, _ := f.Flash.IsBad(blk); bad {
			return true
		}
	}
	return false
}

// WriteAt programs b unit by unit, each an operation.
func (f Flash) WriteAt(b []byte, off int64) (int, error) {
	if err := f.P.Check(); err != nil {
		return 0, err
	}
	if f.refused(b, off) {
		return f.Flash.WriteAt(b, off)
	}
	u := f.unit(len(b))
	for done := 0; done < len(b); done += u {
		piece, at := b[done:min(done+u, len(b))], off+int64(done)
		err := f.P.Do(Op{Program, f.Name},
			func() error { _, err := f.Flash.WriteAt(piece, at); return err },
			func() { f.Flash.PowerCutAfter(0); f.Flash.WriteAt(piece, at); f.Flash.PowerOn() })
		if err != nil {
			return done, err
		}
	}
	return len(b), nil
}

// Erase erases block by block, each an operation, stopping at the first error.
func (f Flash) Erase(off, n int64) error {
	if err := f.P.Check(); err != nil {
		return err
	}
	i := f.Flash.Info()
	if err := i.CheckErase(off, n); err != nil {
		return f.Flash.Erase(off, n)
	}
	for blk := range mtd.BlockRange(off, n, i.EraseSize) {
		if bad, _ := f.Flash.IsBad(blk); bad {
			return f.Flash.Erase(blk, int64(i.EraseSize)) // refused: no operation
		}
		err := f.P.Do(Op{Erase, f.Name},
			func() error { return f.Flash.Erase(blk, int64(i.EraseSize)) },
			func() { f.Flash.PowerCutAfter(0); f.Flash.Erase(blk, int64(i.EraseSize)); f.Flash.PowerOn() })
		if err != nil {
			return err
		}
	}
	return nil
}

func (f Flash) MarkBad(off int64) error {
	return f.P.Do(Op{MarkBad, f.Name}, func() error { return f.Flash.MarkBad(off) }, nil)
}

func (f Flash) Sync() error {
	return f.P.Do(Op{Sync, f.Name}, f.Flash.Sync, nil)
}

// Block is a simulated block device behind the switch: writes count sector by sector.
type Block struct {
	*mtdsim.Block
	P    *Power
	Name string
}

func (b Block) ReadAt(p []byte, off int64) (int, error) {
	if err := b.P.Check(); err != nil {
		return 0, err
	}
	return b.Block.ReadAt(p, off)
}

// WriteAt writes p sector by sector, each an operation.
func (b Block) WriteAt(p []byte, off int64) (int, error) {
	if err := b.P.Check(); err != nil {
		return 0, err
	}
	if mtd.CheckRange(off, int64(len(p)), b.Block.Size()) != nil {
		return b.Block.WriteAt(p, off)
	}
	ss := int64(b.Block.SectorSize())
	for done := 0; done < len(p); {
		at := off + int64(done)
		piece := p[done : done+int(min(int64(len(p)-done), ss-at%ss))]
		err := b.P.Do(Op{Sector, b.Name},
			func() error { _, err := b.Block.WriteAt(piece, at); return err },
			func() { b.Block.PowerCutAfter(0); b.Block.WriteAt(piece, at); b.Block.PowerOn() })
		if err != nil {
			return done, err
		}
		done += len(piece)
	}
	return len(p), nil
}

func (b Block) Sync() error { return b.P.Do(Op{Sync, b.Name}, b.Block.Sync, nil) }

// EnvStore is the bootloader's view of an environment (bootloader.EnvStore).
type EnvStore interface {
	Vars() (map[string]string, error)
	Update(set map[string]string, unset []string) error
}

// Env is an environment store behind the switch, each Update one operation.
type Env struct {
	Store EnvStore
	P     *Power
}

func (e Env) Vars() (map[string]string, error) {
	if err := e.P.Check(); err != nil {
		return nil, err
	}
	return e.Store.Vars()
}

func (e Env) Update(set map[string]string, unset []string) error {
	return e.P.Do(Op{EnvWrite, "env"}, func() error { return e.Store.Update(set, unset) }, nil)
}

// FS is a journal file system behind the switch. A torn file write writes a prefix.
type FS struct {
	journal.FS
	P *Power
}

func (c FS) CreateTemp(dir, pattern string) (journal.File, error) {
	var f journal.File
	err := c.P.Do(Op{FileCreate, "journal"}, func() (err error) { f, err = c.FS.CreateTemp(dir, pattern); return err }, nil)
	if err != nil {
		return nil, err
	}
	return file{f, c.P}, nil
}

func (c FS) Rename(o, n string) error {
	return c.P.Do(Op{Rename, "journal"}, func() error { return c.FS.Rename(o, n) }, nil)
}

func (c FS) SyncDir(d string) error {
	return c.P.Do(Op{SyncDir, "journal"}, func() error { return c.FS.SyncDir(d) }, nil)
}

func (c FS) Remove(n string) error {
	return c.P.Do(Op{Remove, "journal"}, func() error { return c.FS.Remove(n) }, nil)
}

func (c FS) ReadFile(n string, limit int64) ([]byte, error) {
	if err := c.P.Check(); err != nil {
		return nil, err
	}
	return c.FS.ReadFile(n, limit)
}

func (c FS) ReadDir(d string) ([]string, error) {
	if err := c.P.Check(); err != nil {
		return nil, err
	}
	return c.FS.ReadDir(d)
}

type file struct {
	journal.File
	P *Power
}

func (f file) Write(b []byte) (int, error) {
	n := len(b)
	err := f.P.Do(Op{FileWrite, "journal"}, func() (err error) { n, err = f.File.Write(b); return err },
		func() { f.File.Write(b[:f.P.intN(len(b)+1)]) })
	if err != nil {
		return 0, err
	}
	return n, nil
}

func (f file) Sync() error { return f.P.Do(Op{FileSync, "journal"}, f.File.Sync, nil) }
