package slots

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/aduflash/aduflash/mtd"
)

// Target is a slot prepared for writing: its storage resolved once, checked not to be (or
// hold) the storage of the running bank, and its capacity known. OpenWriter opens it.
type Target struct {
	l        *Layout
	slot     *Slot
	path     string  // the resolved storage ("" when it could not be resolved, e.g. behind an Env hook)
	vol      Volume  // a UBI slot's volume
	mcu      MCULink // an MCU's upload (MCUTarget)
	capacity int64
}

// Prepare resolves slot s for a write, refuses it when it is (or shares storage with) a slot
// of the running bank (ErrActiveSlot, or ErrActiveUnknown when the running bank cannot be
// told), and measures its capacity, reading but writing nothing: Target.OpenWriter then opens
// the storage found here.
func (l *Layout) Prepare(s *Slot) (*Target, error) {
	t, locateErr := l.locate(s)
	if err := l.checkWritable(s, t.path, locateErr); err != nil {
		return nil, err
	}
	if locateErr != nil {
		return nil, locateErr
	}
	var err error
	if t.capacity, err = t.measure(); err != nil {
		return nil, err
	}
	return t, nil
}

// Capacity returns how many bytes slot s takes (0: no limit, a file that grows): for raw
// NAND after its bad blocks and reserve, for a UBI volume its reserved size. It opens the
// storage read-only and writes nothing; unlike Prepare it also measures slots of the running
// bank.
func (l *Layout) Capacity(s *Slot) (int64, error) {
	t, err := l.locate(s)
	if err != nil {
		return 0, err
	}
	return t.measure()
}

// OpenWriter opens a writer of size bytes into slot s (Prepare, then Target.OpenWriter).
func (l *Layout) OpenWriter(s *Slot, size int64, resume *Cursor, opts ...Option) (Writer, error) {
	t, err := l.Prepare(s)
	if err != nil {
		return nil, err
	}
	return t.OpenWriter(size, resume, opts...)
}

// Slot returns the slot the target is.
func (t *Target) Slot() *Slot { return t.slot }

// Capacity is the most the slot takes, measured by Prepare (0: no limit, a file that grows).
func (t *Target) Capacity() int64 { return t.capacity }

// locate finds the storage of s: the path of its file, device or volume, and a UBI slot's
// volume. A target is returned with an error too, holding what was found.
func (l *Layout) locate(s *Slot) (*Target, error) {
	t := &Target{l: l, slot: s}
	if s.Type != TypeUBI {
		p, err := l.Resolve(s)
		if err != nil && t.hooked() {
			err = nil // an Env hook opens it without a path
		}
		t.path = p
		return t, err
	}
	if l.Env.OpenVolume != nil {
		v, err := l.Env.OpenVolume(s)
		t.vol = v
		return t, err
	}
	v, err := l.Env.mtdPaths().FindVolume(s.UBIVolume)
	if err != nil {
		return t, fmt.Errorf("slot %s: %w", s, err)
	}
	t.vol, t.path = v, v.Path
	return t, nil
}

// hooked reports whether an Env hook opens the target's storage (UBI aside), so that its
// path is not needed.
func (t *Target) hooked() bool {
	if t.slot.IsMTD() {
		return t.l.Env.OpenFlash != nil
	}
	return t.l.Env.OpenBlock != nil && t.slot.Type != TypeEMMCBoot
}

// measure returns the capacity of the located storage.
func (t *Target) measure() (int64, error) {
	s := t.slot
	switch {
	case s.Type == TypeUBI:
		c := t.vol.ReservedSize()
		if s.Size > 0 {
			c = min(c, int64(s.Size))
		}
		return c, nil
	case s.IsMTD():
		dev, err := t.openFlash(readOnly)
		if err != nil {
			return 0, err
		}
		defer dev.Close()
		return flashCapacity(dev, s.String(), int64(s.Offset), int64(s.Size), s.Reserve(t.l.Config))
	}
	if t.l.Env.OpenBlock == nil {
		fi, err := os.Stat(t.path)
		if s.Type == TypeFile && (err != nil || fi.Mode().IsRegular()) {
			return int64(s.Size), nil
		}
	}
	dev, size, err := t.openBlock(readOnly)
	if err != nil {
		return 0, err
	}
	dev.Close()
	if size > 0 {
		size -= int64(s.Offset)
	}
	if s.Size > 0 {
		return int64(s.Size), nil
	}
	return size, nil
}

// OpenWriter opens a writer of size bytes into the target, continuing from resume when it is
// not nil. Options add to the config's (sync interval, NAND reserve).
func (t *Target) OpenWriter(size int64, resume *Cursor, opts ...Option) (Writer, error) {
	s, l := t.slot, t.l
	base := []Option{WithSyncInterval(int64(l.Config.SyncInterval)), WithReserve(s.Reserve(l.Config))}
	opts = append(base, opts...)
	name := s.String()
	switch {
	case t.mcu != nil:
		return t.openMCUWriter(size)
	case s.Type == TypeUBI:
		if s.Size > 0 && size > int64(s.Size) {
			return nil, fmt.Errorf("%w: %s: the payload has %d bytes, the slot takes %d (size in the config)", ErrTooLarge, name, size, s.Size)
		}
		return NewVolumeWriter(t.vol, name, size, resume, opts...)
	case s.IsMTD():
		dev, err := t.openFlash(readWrite)
		if err != nil {
			return nil, err
		}
		kind := dev.Info().Type
		if s.Type == TypeNAND && !kind.IsNAND() || s.Type == TypeNOR && kind.IsNAND() {
			dev.Close()
			return nil, fmt.Errorf("%w: slot %s is configured as %s, the device is %s", ErrConfig, name, s.Type, kind)
		}
		w, err := NewFlashWriter(dev, name, int64(s.Offset), int64(s.Size), size, resume, opts...)
		if err != nil {
			dev.Close()
			return nil, err
		}
		return w, nil
	}
	return t.openBlockWriter(size, resume, opts)
}

// openBlockWriter opens a writer into a file, block device or eMMC boot partition (whose
// force_ro is cleared for the write and restored by Close).
func (t *Target) openBlockWriter(size int64, resume *Cursor, opts []Option) (Writer, error) {
	s := t.slot
	cleanup := func() error { return nil }
	if s.Type == TypeEMMCBoot {
		var err error
		if cleanup, err = t.l.clearForceRO(t.path); err != nil {
			return nil, err
		}
	}
	fail := func(err error) (Writer, error) {
		cleanup()
		return nil, err
	}
	dev, capacity, err := t.openBlock(readWrite)
	if err != nil {
		return fail(err)
	}
	capacity -= int64(s.Offset)
	if s.Size > 0 {
		if capacity > 0 && int64(s.Size) > capacity {
			dev.Close()
			return fail(fmt.Errorf("%w: slot %s: size %d in the config, the storage has %d bytes from offset %d", ErrConfig, s, s.Size, capacity, s.Offset))
		}
		capacity = int64(s.Size)
	}
	w, err := NewBlockWriter(dev, s.String(), int64(s.Offset), capacity, size, resume, opts...)
	if err != nil {
		dev.Close()
		return fail(err)
	}
	w.(*streamWriter).cleanup = cleanup
	return w, nil
}

// access is how a target's storage is opened.
type access int

const (
	readOnly access = iota
	readWrite
)

// openFlash opens the target's raw flash (through the Env hook when there is one).
func (t *Target) openFlash(a access) (Flash, error) {
	if t.l.Env.OpenFlash != nil {
		return t.l.Env.OpenFlash(t.slot)
	}
	open := t.l.Env.mtdPaths().OpenReadOnly
	if a == readWrite {
		open = t.l.Env.mtdPaths().Open
	}
	d, err := open(t.path)
	if err != nil {
		return nil, fmt.Errorf("slot %s: %w", t.slot, err)
	}
	return d, nil
}

// openBlock opens the target's file or block device (through the Env hook when there is
// one) and returns its size (0 for a regular file: it may grow). Opened for writing, a file
// slot's file is created if it does not exist.
func (t *Target) openBlock(a access) (BlockDevice, int64, error) {
	if t.l.Env.OpenBlock != nil {
		return t.l.Env.OpenBlock(t.slot)
	}
	flag := os.O_RDONLY
	if a == readWrite {
		flag = os.O_RDWR
		if t.slot.Type == TypeFile {
			flag |= os.O_CREATE
		}
	}
	f, err := os.OpenFile(t.path, flag, 0o644)
	if err != nil {
		return nil, 0, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, err
	}
	if fi.Mode().IsRegular() {
		return f, 0, nil
	}
	n, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		f.Close()
		return nil, 0, fmt.Errorf("%s: cannot tell its size: %w", t.path, err)
	}
	return f, n, nil
}

// clearForceRO clears /sys/block/<dev>/force_ro of an eMMC boot partition and returns the
// function that restores it.
func (l *Layout) clearForceRO(devPath string) (func() error, error) {
	real := devPath
	if r, err := filepath.EvalSymlinks(devPath); err == nil {
		real = r
	}
	ro := filepath.Join(l.Env.sysfs(), "block", filepath.Base(real), "force_ro")
	b, err := os.ReadFile(ro)
	if err != nil {
		return nil, fmt.Errorf("eMMC boot partition %s: %w", devPath, err)
	}
	old := strings.TrimSpace(string(b))
	if old == "0" {
		return func() error { return nil }, nil
	}
	if err := os.WriteFile(ro, []byte("0"), 0); err != nil {
		return nil, fmt.Errorf("eMMC boot partition %s: clearing force_ro: %w", devPath, err)
	}
	return func() error {
		if err := os.WriteFile(ro, []byte(old), 0); err != nil {
			return fmt.Errorf("eMMC boot partition %s: restoring force_ro: %w", devPath, err)
		}
		return nil
	}, nil
}

var _ Flash = (*mtd.Device)(nil)
var _ Volume = (*mtd.Volume)(nil)
var _ BlockDevice = (*os.File)(nil)
