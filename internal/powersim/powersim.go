// Package powersim is the power switch of a simulated board: it counts the board's mutating
// operations (flash program/erase/sync, bootloader environment writes, journal file
// operations) through thin wrappers around the simulators, and fails every operation once a
// cut is armed and reached. The agent's power-cut tests and package devicesim share it.
package powersim

import (
	"errors"
	"sync"

	"github.com/aduflash/aduflash/journal"
	"github.com/aduflash/aduflash/mtd/mtdsim"
)

// ErrPowerCut is what every operation returns once the power is gone.
var ErrPowerCut = errors.New("power cut")

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

// New returns a switch that is on, with no cut armed.
func New() *Power { return &Power{left: -1} }

// CutAfter arms a cut after n more operations.
func (p *Power) CutAfter(n int) { p.mu.Lock(); p.left, p.off = n, false; p.mu.Unlock() }

// On restores power (and disarms a pending cut).
func (p *Power) On() { p.mu.Lock(); p.left, p.off = -1, false; p.mu.Unlock() }

// IsOff tells whether the power is cut.
func (p *Power) IsOff() bool { p.mu.Lock(); defer p.mu.Unlock(); return p.off }

// Ops counts the operations done with power on.
func (p *Power) Ops() int { p.mu.Lock(); defer p.mu.Unlock(); return p.ops }

// Op counts one mutating operation, or fails with ErrPowerCut.
func (p *Power) Op() error {
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

// Check fails with ErrPowerCut while the power is off (reads).
func (p *Power) Check() error {
	if p.IsOff() {
		return ErrPowerCut
	}
	return nil
}

// Flash is simulated flash behind the switch.
type Flash struct {
	*mtdsim.Flash
	P *Power
}

func (f Flash) ReadAt(b []byte, off int64) (int, error) {
	if err := f.P.Check(); err != nil {
		return 0, err
	}
	return f.Flash.ReadAt(b, off)
}

func (f Flash) WriteAt(b []byte, off int64) (int, error) {
	if err := f.P.Op(); err != nil {
		return 0, err
	}
	return f.Flash.WriteAt(b, off)
}

func (f Flash) Erase(off, n int64) error {
	if err := f.P.Op(); err != nil {
		return err
	}
	return f.Flash.Erase(off, n)
}

func (f Flash) MarkBad(off int64) error {
	if err := f.P.Op(); err != nil {
		return err
	}
	return f.Flash.MarkBad(off)
}

func (f Flash) Sync() error {
	if err := f.P.Op(); err != nil {
		return err
	}
	return f.Flash.Sync()
}

// EnvStore is the bootloader's view of an environment (bootloader.EnvStore).
type EnvStore interface {
	Vars() (map[string]string, error)
	Update(set map[string]string, unset []string) error
}

// Env is an environment store behind the switch.
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
	if err := e.P.Op(); err != nil {
		return err
	}
	return e.Store.Update(set, unset)
}

// FS is a journal file system behind the switch.
type FS struct {
	journal.FS
	P *Power
}

func (c FS) CreateTemp(dir, pattern string) (journal.File, error) {
	if err := c.P.Op(); err != nil {
		return nil, err
	}
	f, err := c.FS.CreateTemp(dir, pattern)
	if err != nil {
		return nil, err
	}
	return file{f, c.P}, nil
}

func (c FS) Rename(o, n string) error {
	if err := c.P.Op(); err != nil {
		return err
	}
	return c.FS.Rename(o, n)
}

func (c FS) SyncDir(d string) error {
	if err := c.P.Op(); err != nil {
		return err
	}
	return c.FS.SyncDir(d)
}

func (c FS) Remove(n string) error {
	if err := c.P.Op(); err != nil {
		return err
	}
	return c.FS.Remove(n)
}

func (c FS) ReadFile(n string, limit int64) ([]byte, error) {
	if err := c.P.Check(); err != nil {
		return nil, err
	}
	return c.FS.ReadFile(n, limit)
}

type file struct {
	journal.File
	P *Power
}

func (f file) Write(b []byte) (int, error) {
	if err := f.P.Op(); err != nil {
		return 0, err
	}
	return f.File.Write(b)
}

func (f file) Sync() error {
	if err := f.P.Op(); err != nil {
		return err
	}
	return f.File.Sync()
}
