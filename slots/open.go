package slots

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/aduflash/aduflash/mtd"
)

// OpenWriter opens a writer of size bytes into slot s, continuing from resume when it is
// not nil. It refuses slots of the active bank and targets that share storage with them
// (ErrActiveSlot). Options add to the config's (sync interval, NAND reserve).
func (l *Layout) OpenWriter(s *Slot, size int64, resume *Cursor, opts ...Option) (Writer, error) {
	if err := l.CheckWritable(s); err != nil {
		return nil, err
	}
	base := []Option{WithSyncInterval(int64(l.Config.SyncInterval)), WithReserve(s.Reserve(l.Config))}
	opts = append(base, opts...)
	name := s.String()
	switch {
	case s.Type == TypeUBI:
		var vol Volume
		if l.Env.OpenVolume != nil {
			v, err := l.Env.OpenVolume(s)
			if err != nil {
				return nil, err
			}
			vol = v
		} else {
			v, err := l.Env.mtdPaths().FindVolume(s.UBIVolume)
			if err != nil {
				return nil, fmt.Errorf("slot %s: %w", name, err)
			}
			vol = v
		}
		if s.Size > 0 && size > int64(s.Size) {
			return nil, fmt.Errorf("%w: %s: the payload has %d bytes, the slot takes %d (size in the config)", ErrTooLarge, name, size, s.Size)
		}
		return NewVolumeWriter(vol, name, size, resume, opts...)
	case s.IsMTD():
		dev, err := l.openFlash(s)
		if err != nil {
			return nil, err
		}
		t := dev.Info().Type
		if s.Type == TypeNAND && !t.IsNAND() || s.Type == TypeNOR && t.IsNAND() {
			dev.Close()
			return nil, fmt.Errorf("%w: slot %s is configured as %s, the device is %s", ErrConfig, name, s.Type, t)
		}
		w, err := NewFlashWriter(dev, name, int64(s.Offset), int64(s.Size), size, resume, opts...)
		if err != nil {
			dev.Close()
			return nil, err
		}
		return w, nil
	}
	var cleanup func() error
	if s.Type == TypeEMMCBoot {
		p, err := l.Resolve(s)
		if err != nil {
			return nil, err
		}
		if cleanup, err = l.clearForceRO(p); err != nil {
			return nil, err
		}
	}
	dev, capacity, err := l.openBlock(s)
	if err != nil {
		if cleanup != nil {
			cleanup()
		}
		return nil, err
	}
	capacity -= int64(s.Offset)
	if s.Size > 0 {
		if capacity > 0 && int64(s.Size) > capacity {
			dev.Close()
			if cleanup != nil {
				cleanup()
			}
			return nil, fmt.Errorf("%w: slot %s: size %d in the config, the storage has %d bytes from offset %d", ErrConfig, name, s.Size, capacity, s.Offset)
		}
		capacity = int64(s.Size)
	}
	w, err := NewBlockWriter(dev, name, int64(s.Offset), capacity, size, resume, opts...)
	if err != nil {
		dev.Close()
		if cleanup != nil {
			cleanup()
		}
		return nil, err
	}
	w.(*streamWriter).cleanup = cleanup
	return w, nil
}

func (l *Layout) openFlash(s *Slot) (Flash, error) {
	if l.Env.OpenFlash != nil {
		return l.Env.OpenFlash(s)
	}
	p, err := l.Resolve(s)
	if err != nil {
		return nil, err
	}
	d, err := l.Env.mtdPaths().Open(p)
	if err != nil {
		return nil, fmt.Errorf("slot %s: %w", s, err)
	}
	return d, nil
}

// openBlock opens a file or block device for reading and writing and returns its size
// (0 for a regular file: it may grow).
func (l *Layout) openBlock(s *Slot) (BlockDevice, int64, error) {
	if l.Env.OpenBlock != nil {
		return l.Env.OpenBlock(s)
	}
	p, err := l.Resolve(s)
	if err != nil {
		return nil, 0, err
	}
	flag := os.O_RDWR
	if s.Type == TypeFile {
		flag |= os.O_CREATE
	}
	f, err := os.OpenFile(p, flag, 0o644)
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
		return nil, 0, fmt.Errorf("%s: cannot tell its size: %w", p, err)
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

// Capacity returns how many bytes slot s takes (0: no limit, a file that grows): for raw
// NAND after its bad blocks and reserve, for a UBI volume its reserved size. It opens the
// storage read-only where it can and writes nothing.
func (l *Layout) Capacity(s *Slot) (int64, error) {
	switch {
	case s.Type == TypeUBI:
		var vol Volume
		if l.Env.OpenVolume != nil {
			v, err := l.Env.OpenVolume(s)
			if err != nil {
				return 0, err
			}
			vol = v
		} else {
			v, err := l.Env.mtdPaths().FindVolume(s.UBIVolume)
			if err != nil {
				return 0, fmt.Errorf("slot %s: %w", s, err)
			}
			vol = v
		}
		c := vol.ReservedSize()
		if s.Size > 0 {
			c = min(c, int64(s.Size))
		}
		return c, nil
	case s.IsMTD():
		dev, err := l.openFlash(s)
		if err != nil {
			return 0, err
		}
		defer dev.Close()
		return flashCapacity(dev, s.String(), int64(s.Offset), int64(s.Size), s.Reserve(l.Config))
	}
	if l.Env.OpenBlock == nil {
		p, err := l.Resolve(s)
		if err != nil {
			return 0, err
		}
		fi, err := os.Stat(p)
		if s.Type == TypeFile && (err != nil || fi.Mode().IsRegular()) {
			return int64(s.Size), nil
		}
	}
	dev, size, err := l.openBlock(s)
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
