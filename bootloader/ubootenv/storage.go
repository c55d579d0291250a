package ubootenv

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
)

// Storage is the medium of ONE env copy. A redundant env has two. The byte slices are
// always exactly the env size.
type Storage interface {
	// ReadCopy fills p with the copy's bytes.
	ReadCopy(p []byte) error
	// WriteCopy replaces the copy with p and returns once it is durable (erase, write,
	// fsync as the medium needs).
	WriteCopy(p []byte) error
}

// FlagWriter is implemented by storages that can change the flags byte (offset 4 of a
// redundant copy) in place, without erasing: NOR flash (clearing bits) and files. The
// boolean flag scheme needs it to mark the old copy OBSOLETE.
type FlagWriter interface {
	WriteFlag(b byte) error
}

// DefaultSchemer is implemented by storages whose medium implies a flag scheme (raw MTD:
// boolean for NOR, serial for NAND). Storages without it use FlagsSerial.
type DefaultSchemer interface {
	DefaultScheme() FlagScheme
}

// FileStorage is an env copy in a regular file or a block device at an offset.
//
// Writes open the file read-write (it must exist), write the copy at its offset and
// fsync. A single-copy env is rewritten in place: a power cut during that write leaves a
// torn copy with a bad CRC (U-Boot then uses its default env) — this is what U-Boot and
// libubootenv do; use a redundant env to avoid it.
type FileStorage struct {
	// Path of the file or block device.
	Path string
	// Offset of the copy; negative counts from the end of the file or device (its size is
	// found by seeking to the end).
	Offset int64
	// ForceRO is the sysfs force_ro file of an eMMC boot partition (see ForceROPath), or
	// "". When set, a write stores "0" in it first and restores the old content after.
	ForceRO string
}

func (s *FileStorage) where() string {
	return fmt.Sprintf("%s at offset %d", s.Path, s.Offset)
}

func (s *FileStorage) resolve(f *os.File, n int) (int64, error) {
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return 0, fmt.Errorf("%w: %s: size: %w", ErrStorage, s.where(), err)
	}
	off := s.Offset
	if off < 0 {
		off += size
	}
	if off < 0 || off+int64(n) > size {
		return 0, fmt.Errorf("%w: %s: env of %d bytes does not fit into %d bytes", ErrStorage, s.where(), n, size)
	}
	return off, nil
}

// ReadCopy implements Storage.
func (s *FileStorage) ReadCopy(p []byte) error {
	f, err := os.Open(s.Path)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrStorage, err)
	}
	defer f.Close()
	off, err := s.resolve(f, len(p))
	if err != nil {
		return err
	}
	if _, err := io.ReadFull(io.NewSectionReader(f, off, int64(len(p))), p); err != nil {
		return fmt.Errorf("%w: %s: read: %w", ErrStorage, s.where(), err)
	}
	return nil
}

// WriteCopy implements Storage.
func (s *FileStorage) WriteCopy(p []byte) error {
	return s.write(p, 0)
}

// WriteFlag implements FlagWriter.
func (s *FileStorage) WriteFlag(b byte) error {
	return s.write([]byte{b}, 4)
}

func (s *FileStorage) write(p []byte, at int64) (err error) {
	if s.ForceRO != "" {
		restore, err := clearForceRO(s.ForceRO)
		if err != nil {
			return fmt.Errorf("%w: %s: %w", ErrStorage, s.where(), err)
		}
		defer func() {
			if rerr := restore(); rerr != nil && err == nil {
				err = fmt.Errorf("%w: %s: restoring force_ro: %w", ErrStorage, s.where(), rerr)
			}
		}()
	}
	f, err := os.OpenFile(s.Path, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrStorage, err)
	}
	defer f.Close()
	off, err := s.resolve(f, int(at)+len(p))
	if err != nil {
		return err
	}
	if _, err := f.WriteAt(p, off+at); err != nil {
		return fmt.Errorf("%w: %s: write: %w", ErrStorage, s.where(), err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("%w: %s: fsync: %w", ErrStorage, s.where(), err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("%w: %s: close: %w", ErrStorage, s.where(), err)
	}
	return nil
}

// clearForceRO writes "0" to a force_ro file and returns a function restoring its old
// content. A file that already holds 0 is left alone.
func clearForceRO(path string) (func() error, error) {
	old, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("force_ro: %w", err)
	}
	if string(bytes.TrimSpace(old)) == "0" {
		return func() error { return nil }, nil
	}
	if err := os.WriteFile(path, []byte("0"), 0); err != nil {
		return nil, fmt.Errorf("force_ro: clear: %w", err)
	}
	return func() error {
		if err := os.WriteFile(path, bytes.TrimSpace(old), 0); err != nil {
			return fmt.Errorf("force_ro: %w", err)
		}
		return nil
	}, nil
}

// UBIVolume is a UBI volume: readable, and replaced as a whole by an atomic volume update
// (UBI_IOCVOLUP) of exactly size bytes, committed when the writer is closed.
type UBIVolume interface {
	io.ReaderAt
	Update(size int64) (io.WriteCloser, error)
}

// UBIStorage is one env copy in a UBI volume (a redundant env uses two volumes). A torn
// update leaves the volume marked corrupt; its read fails and the other copy is used.
type UBIStorage struct {
	Vol  UBIVolume
	Name string // for messages
}

// ReadCopy implements Storage.
func (s *UBIStorage) ReadCopy(p []byte) error {
	if _, err := io.ReadFull(io.NewSectionReader(s.Vol, 0, int64(len(p))), p); err != nil {
		return fmt.Errorf("%w: UBI volume %s: read: %w", ErrStorage, s.Name, err)
	}
	return nil
}

// WriteCopy implements Storage: one volume update of exactly len(p) bytes.
func (s *UBIStorage) WriteCopy(p []byte) error {
	w, err := s.Vol.Update(int64(len(p)))
	if err != nil {
		return fmt.Errorf("%w: UBI volume %s: start update: %w", ErrStorage, s.Name, err)
	}
	n, werr := w.Write(p)
	cerr := w.Close()
	if werr == nil && n != len(p) {
		werr = io.ErrShortWrite
	}
	if err := errors.Join(werr, cerr); err != nil {
		return fmt.Errorf("%w: UBI volume %s: update: %w", ErrStorage, s.Name, err)
	}
	return nil
}
