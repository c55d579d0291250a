// Package outfile writes the artifacts of the host CLIs so that a failure never leaves a
// half-written file under the requested name: a regular file (or a new one) is written to a
// temporary file beside it, which Commit syncs and renames into place (atomicfile.Commit). A
// symbolic link is followed and stays a link. A path that is not a regular file (a device
// such as /dev/null or a block device, a FIFO) is written through, as a shell redirection
// would, and never replaced.
package outfile

import (
	"io"
	"os"
	"path/filepath"

	"github.com/aduflash/aduflash/internal/atomicfile"
)

// File is an output being written. Write or WriteAt to it, then Commit; Abort (safe to defer,
// a no-op after Commit) removes what a failed run wrote.
type File struct {
	f       *os.File
	path    string
	tmp     bool // f is a temporary file to be renamed to path
	mode    os.FileMode
	settled bool
}

// Create starts writing path; mode applies to a file it creates.
func Create(path string, mode os.FileMode) (*File, error) {
	// A symbolic link is followed: its target is what gets replaced (or written through).
	if real, err := filepath.EvalSymlinks(path); err == nil {
		path = real
	}
	if fi, err := os.Stat(path); err == nil && !fi.Mode().IsRegular() {
		f, err := os.OpenFile(path, os.O_WRONLY, 0)
		if err != nil {
			return nil, err
		}
		return &File{f: f, path: path}, nil
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return nil, err
	}
	return &File{f: f, path: path, tmp: true, mode: mode}, nil
}

// Write implements io.Writer.
func (o *File) Write(p []byte) (int, error) { return o.f.Write(p) }

// WriteAt implements io.WriterAt.
func (o *File) WriteAt(p []byte, off int64) (int, error) { return o.f.WriteAt(p, off) }

// Truncate cuts a regular output to size; on a device or FIFO it does nothing.
func (o *File) Truncate(size int64) error {
	if !o.tmp {
		return nil
	}
	return o.f.Truncate(size)
}

// Commit makes the output durable and visible under its name (atomicfile.Commit).
func (o *File) Commit() error {
	if o.settled {
		return os.ErrClosed
	}
	o.settled = true
	if !o.tmp {
		return o.f.Close()
	}
	if err := o.f.Chmod(o.mode); err != nil {
		o.f.Close()
		os.Remove(o.f.Name())
		return err
	}
	return atomicfile.Commit(atomicfile.OS{}, o.f, o.path)
}

// Abort discards a temporary output. It does nothing after Commit.
func (o *File) Abort() {
	if o.settled {
		return
	}
	o.settled = true
	o.f.Close()
	if o.tmp {
		os.Remove(o.f.Name())
	}
}

// WriteFile writes data to path through Create and Commit.
func WriteFile(path string, data []byte, mode os.FileMode) error {
	o, err := Create(path, mode)
	if err != nil {
		return err
	}
	defer o.Abort()
	if _, err := o.Write(data); err != nil {
		return err
	}
	return o.Commit()
}

var _ io.WriterAt = (*File)(nil)
