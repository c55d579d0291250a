package mtd

import (
	"errors"
	"fmt"
	"io"
	"os"
)

// Device is an open MTD character device (/dev/mtdN). Its methods are safe for use by one
// goroutine at a time, except ReadAt which may run concurrently.
type Device struct {
	f    *os.File
	path string
	info Info
}

// Info returns the geometry found at Open.
func (d *Device) Info() Info { return d.info }

// Path returns the path the device was opened with.
func (d *Device) Path() string { return d.path }

// ReadAt reads len(p) bytes at off. Reading a bad block returns whatever the flash holds.
// At the end of the device it returns io.EOF like any io.ReaderAt.
func (d *Device) ReadAt(p []byte, off int64) (int, error) {
	if d.f == nil {
		return 0, ErrClosed
	}
	if off < 0 || off > d.info.Size {
		return 0, fmt.Errorf("mtd: read at %#x of %s (size %#x): %w", off, d.path, d.info.Size, ErrOutOfRange)
	}
	want := len(p)
	if rest := d.info.Size - off; int64(want) > rest {
		p = p[:rest]
	}
	n, err := d.f.ReadAt(p, off)
	if err != nil && !errors.Is(err, io.EOF) {
		return n, fmt.Errorf("mtd: read %s at %#x: %w", d.path, off, err)
	}
	if n < want {
		return n, io.EOF
	}
	return n, nil
}

// Close closes the device.
func (d *Device) Close() error {
	if d.f == nil {
		return ErrClosed
	}
	err := d.f.Close()
	d.f = nil
	if err != nil {
		return fmt.Errorf("mtd: close %s: %w", d.path, err)
	}
	return nil
}

// ReadAt reads from the volume's character device (opened for this call only). Reads
// beyond Size end with io.EOF.
func (v *Volume) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("mtd: UBI volume %q: read at %d: %w", v.Name, off, ErrOutOfRange)
	}
	f, err := os.Open(v.Path)
	if err != nil {
		return 0, fmt.Errorf("mtd: UBI volume %q: %w", v.Name, err)
	}
	defer f.Close()
	want := len(p)
	size := v.Size()
	if off >= size {
		return 0, io.EOF
	}
	if rest := size - off; int64(want) > rest {
		p = p[:rest]
	}
	n, err := f.ReadAt(p, off)
	if err != nil && !errors.Is(err, io.EOF) {
		return n, fmt.Errorf("mtd: UBI volume %q: read at %#x: %w", v.Name, off, err)
	}
	if n < want {
		return n, io.EOF
	}
	return n, nil
}

// volWriter streams exactly size bytes into an update started with UBI_IOCVOLUP.
type volWriter struct {
	w       io.WriteCloser
	name    string
	size, n int64
	closed  bool
}

func (w *volWriter) Write(p []byte) (int, error) {
	if w.closed {
		return 0, ErrClosed
	}
	var over error
	if rest := w.size - w.n; int64(len(p)) > rest {
		p = p[:rest]
		over = fmt.Errorf("mtd: UBI volume %q: update of %d bytes: more bytes written: %w", w.name, w.size, ErrUpdateSize)
	}
	n, err := w.w.Write(p)
	w.n += int64(n)
	if err != nil {
		return n, fmt.Errorf("mtd: UBI volume %q: update write at %#x: %w", w.name, w.n, err)
	}
	return n, over
}

// Close ends the update. Fewer bytes than announced give ErrUpdateSize: the kernel then
// leaves the volume marked as interrupted (upd_marker), and it must be updated again.
func (w *volWriter) Close() error {
	if w.closed {
		return ErrClosed
	}
	w.closed = true
	err := w.w.Close()
	if w.n != w.size {
		return fmt.Errorf("mtd: UBI volume %q: update announced %d bytes, %d written: %w", w.name, w.size, w.n, ErrUpdateSize)
	}
	if err != nil {
		return fmt.Errorf("mtd: UBI volume %q: close after update: %w", w.name, err)
	}
	return nil
}
