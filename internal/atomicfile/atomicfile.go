// Package atomicfile replaces a file so that a crash or a power cut at any instant leaves
// the old content or the new one under its name, never a mix and never nothing: the new
// content goes to a temporary file in the same folder, which is synced, closed and renamed
// over the name, and then the folder is synced so that the rename itself survives.
//
// WriteFile does it on the operating system's files. Replace and Commit take the file
// system as an FS, so that a test can cut the power at any operation (journal's tests do).
package atomicfile

import (
	"cmp"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// FS is what Replace and Commit need of a file system. Missing files are reported with
// errors satisfying errors.Is(err, fs.ErrNotExist).
type FS interface {
	// CreateTemp creates a new file in dir, named by pattern with its last "*" replaced by
	// a unique string, open for writing.
	CreateTemp(dir, pattern string) (File, error)
	// Rename atomically replaces newpath with oldpath.
	Rename(oldpath, newpath string) error
	// SyncDir makes the folder's entries (creations, renames, removals) durable.
	SyncDir(dir string) error
	// Remove deletes a file.
	Remove(name string) error
}

// File is a file created by FS.CreateTemp.
type File interface {
	io.Writer
	Name() string // the path, including the folder
	Sync() error  // make the written data durable
	Close() error
}

// WriteFile replaces path with data, on the operating system's files; the file gets perm.
func WriteFile(path string, data []byte, perm fs.FileMode) error {
	return Replace(OS{Perm: perm}, path, "", data)
}

// Replace replaces path with data: it writes data to a new temporary file beside path,
// named by pattern (as for os.CreateTemp; "" is ".<name>.tmp-*"), and Commits it. On an
// error the temporary file is removed and path is as it was, unless the error came from
// the final folder sync (then path may hold either content).
func Replace(fsys FS, path, pattern string, data []byte) error {
	f, err := fsys.CreateTemp(filepath.Dir(path), cmp.Or(pattern, "."+filepath.Base(path)+".tmp-*"))
	if err != nil {
		return fmt.Errorf("create a temporary file beside %s: %w", path, err)
	}
	n, err := f.Write(data)
	if err == nil && n != len(data) {
		err = io.ErrShortWrite
	}
	if err != nil {
		_ = f.Close()
		_ = fsys.Remove(f.Name())
		return fmt.Errorf("write %s: %w", f.Name(), err)
	}
	return Commit(fsys, f, path)
}

// Commit puts the written temporary file f in place of path: it syncs and closes f,
// renames it over path and syncs the folder. An error before the rename removes f and
// leaves path as it was.
func Commit(fsys FS, f File, path string) error {
	tmp := f.Name()
	fail := func(err error) error {
		_ = fsys.Remove(tmp)
		return err
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		return fail(fmt.Errorf("sync %s: %w", tmp, err))
	}
	if err := f.Close(); err != nil {
		return fail(fmt.Errorf("close %s: %w", tmp, err))
	}
	if err := fsys.Rename(tmp, path); err != nil {
		return fail(fmt.Errorf("rename %s to %s: %w", tmp, path, err))
	}
	dir := filepath.Dir(path)
	if err := fsys.SyncDir(dir); err != nil {
		return fmt.Errorf("sync folder %s: %w", dir, err)
	}
	return nil
}

// OS is the operating system's file system. CreateTemp gives a new file Perm (0: 0600, as
// os.CreateTemp does); SyncDir is the package's SyncDir.
type OS struct{ Perm fs.FileMode }

func (o OS) CreateTemp(dir, pattern string) (File, error) {
	f, err := os.CreateTemp(dir, pattern)
	if err != nil {
		return nil, err
	}
	if o.Perm != 0 {
		if err := f.Chmod(o.Perm); err != nil {
			f.Close()
			os.Remove(f.Name())
			return nil, err
		}
	}
	return f, nil
}

func (OS) Rename(oldpath, newpath string) error { return os.Rename(oldpath, newpath) }
func (OS) SyncDir(dir string) error             { return SyncDir(dir) }
func (OS) Remove(name string) error             { return os.Remove(name) }
