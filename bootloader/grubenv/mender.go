package grubenv

import (
	"fmt"
	"path/filepath"

	"github.com/aduflash/aduflash/internal/errkind"
)

// ErrMenderCorrupt: neither of Mender's two environment copies is marked consistent by its
// lock file.
var ErrMenderCorrupt = errkind.New(errkind.Input, "grubenv: both Mender environment copies are being edited or missing")

// Mender is the redundant GRUB environment of Mender's grub-mender-grubenv: two copies,
// Dir/mender_grubenv1/env and Dir/mender_grubenv2/env, each guarded by a lock file next to it
// (a GRUB environment block holding editing=0 when the copy is consistent, editing=1 while it
// is written). Copy 2 is written first, then copy 1; readers use copy 1 unless its lock says
// it was being edited. Dir is e.g. /boot/efi/grub-mender-grubenv (Mender's ENV_DIR).
//
// Mender's shell tools additionally compare each lock file with a lock.sha256sum made at
// build time; this package keeps the lock files' bytes (only the editing value changes, in
// place), so that checksum keeps matching, but it judges a lock by its editing value, as
// Mender's GRUB script does.
type Mender struct {
	Dir string
}

func (m Mender) paths(i int) (env, lock string) {
	d := filepath.Join(m.Dir, fmt.Sprintf("mender_grubenv%d", i))
	return filepath.Join(d, "env"), filepath.Join(d, "lock")
}

// lockOK reports whether copy i's lock says the copy is consistent (editing=0).
func (m Mender) lockOK(i int) bool {
	_, lock := m.paths(i)
	e, err := ReadFile(lock)
	if err != nil {
		return false
	}
	v, ok := e.Get("editing")
	return ok && v == "0"
}

// current returns the copy readers use: 1 unless its lock is bad, then 2.
func (m Mender) current() (int, error) {
	switch {
	case m.lockOK(1):
		return 1, nil
	case m.lockOK(2):
		return 2, nil
	}
	return 0, fmt.Errorf("%w (in %s)", ErrMenderCorrupt, m.Dir)
}

// Read returns the environment Mender's tools and GRUB script would use, without writing.
func (m Mender) Read() (*Env, error) {
	i, err := m.current()
	if err != nil {
		return nil, err
	}
	env, _ := m.paths(i)
	return ReadFile(env)
}

func (m Mender) setLock(i int, v string) error {
	_, lock := m.paths(i)
	return Update(lock, func(e *Env) error { return e.Set("editing", v) })
}

// writeCopy writes e into copy i under its lock (editing=1, write, editing=0), keeping the
// copy's existing block size.
func (m Mender) writeCopy(i int, e *Env) error {
	env, _ := m.paths(i)
	out := *e
	if old, err := ReadFile(env); err == nil {
		out.size = old.size
	}
	if err := m.setLock(i, "1"); err != nil {
		return err
	}
	if err := WriteFile(env, &out); err != nil {
		return err
	}
	return m.setLock(i, "0")
}

// Update changes Mender's environment like its fw_setenv: it takes the consistent copy,
// lets fn change it, and writes copy 2 then copy 1, each under its lock, so that a power
// cut at any point leaves at least one consistent copy. A copy left inconsistent by an
// earlier interruption is overwritten from the other one. Nothing is written when fn fails.
func (m Mender) Update(fn func(*Env) error) error {
	e, err := m.Read()
	if err != nil {
		return err
	}
	if err := fn(e); err != nil {
		return err
	}
	if err := m.writeCopy(2, e); err != nil {
		return fmt.Errorf("mender copy 2: %w", err)
	}
	if err := m.writeCopy(1, e); err != nil {
		return fmt.Errorf("mender copy 1: %w", err)
	}
	return nil
}
