package devicesim

import (
	"sync"

	"github.com/aduflash/aduflash/journal"
	"github.com/aduflash/aduflash/mtd/mtdsim"
)

// Power is the board's power switch. It counts the mutating operations of the board (flash
// program/erase/sync, environment writes, journal file operations) and, once armed with
// CutAfter, fails every operation after the given number: the board is dead until Run powers
// it on again (a reboot).
type Power struct {
	mu   sync.Mutex
	left int // operations still allowed; -1: no cut armed
	off  bool
	ops  int
}

// CutAfter arms a cut after n more operations.
func (p *Power) CutAfter(n int) { p.mu.Lock(); p.left, p.off = n, false; p.mu.Unlock() }

// On restores power (and disarms a pending cut).
func (p *Power) On() { p.mu.Lock(); p.left, p.off = -1, false; p.mu.Unlock() }

// IsOff tells whether the power is cut.
func (p *Power) IsOff() bool { p.mu.Lock(); defer p.mu.Unlock(); return p.off }

// Ops counts the operations done with power on.
func (p *Power) Ops() int { p.mu.Lock(); defer p.mu.Unlock(); return p.ops }

func (p *Power) op() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.off {
		return ErrPowerCut
	}
	if p.left == 0 {
		p.off = true
		return ErrPowerCut
	}
	if p.left > 0 {
		p.left--
	}
	p.ops++
	return nil
}

func (p *Power) check() error {
	if p.IsOff() {
		return ErrPowerCut
	}
	return nil
}

type powerFlash struct {
	*mtdsim.Flash
	p *Power
}

func (f powerFlash) ReadAt(b []byte, off int64) (int, error) {
	if err := f.p.check(); err != nil {
		return 0, err
	}
	return f.Flash.ReadAt(b, off)
}

func (f powerFlash) WriteAt(b []byte, off int64) (int, error) {
	if err := f.p.op(); err != nil {
		return 0, err
	}
	return f.Flash.WriteAt(b, off)
}

func (f powerFlash) Erase(off, n int64) error {
	if err := f.p.op(); err != nil {
		return err
	}
	return f.Flash.Erase(off, n)
}

func (f powerFlash) MarkBad(off int64) error {
	if err := f.p.op(); err != nil {
		return err
	}
	return f.Flash.MarkBad(off)
}

func (f powerFlash) Sync() error {
	if err := f.p.op(); err != nil {
		return err
	}
	return f.Flash.Sync()
}

// envStore is the bootloader's view of the environment.
type envStore interface {
	Vars() (map[string]string, error)
	Update(set map[string]string, unset []string) error
}

type powerEnv struct {
	env envStore
	p   *Power
}

func (e powerEnv) Vars() (map[string]string, error) {
	if err := e.p.check(); err != nil {
		return nil, err
	}
	return e.env.Vars()
}

func (e powerEnv) Update(set map[string]string, unset []string) error {
	if err := e.p.op(); err != nil {
		return err
	}
	return e.env.Update(set, unset)
}

type powerFS struct {
	journal.FS
	p *Power
}

func (c powerFS) CreateTemp(dir, pattern string) (journal.File, error) {
	if err := c.p.op(); err != nil {
		return nil, err
	}
	f, err := c.FS.CreateTemp(dir, pattern)
	if err != nil {
		return nil, err
	}
	return powerFile{f, c.p}, nil
}

func (c powerFS) Rename(o, n string) error {
	if err := c.p.op(); err != nil {
		return err
	}
	return c.FS.Rename(o, n)
}

func (c powerFS) SyncDir(d string) error {
	if err := c.p.op(); err != nil {
		return err
	}
	return c.FS.SyncDir(d)
}

func (c powerFS) Remove(n string) error {
	if err := c.p.op(); err != nil {
		return err
	}
	return c.FS.Remove(n)
}

func (c powerFS) ReadFile(n string, limit int64) ([]byte, error) {
	if err := c.p.check(); err != nil {
		return nil, err
	}
	return c.FS.ReadFile(n, limit)
}

type powerFile struct {
	journal.File
	p *Power
}

func (f powerFile) Write(b []byte) (int, error) {
	if err := f.p.op(); err != nil {
		return 0, err
	}
	return f.File.Write(b)
}

func (f powerFile) Sync() error {
	if err := f.p.op(); err != nil {
		return err
	}
	return f.File.Sync()
}
