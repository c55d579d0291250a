package journal

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/aduflash/aduflash/internal/atomicfile"
)

// FS is the file system operations a Journal uses: what atomicfile.Replace needs to save a
// record, and the rest. Paths are as built with filepath.Join from the folder given to
// Open. Missing files must be reported with errors satisfying errors.Is(err,
// fs.ErrNotExist). Implementations used by one Journal need not be safe for concurrent use
// by several Journals, but a test fake shared between goroutines should be.
type FS interface {
	atomicfile.FS
	// MkdirAll creates dir and missing parents, durably.
	MkdirAll(dir string) error
	// ReadFile returns the file's contents, or its first limit+1 bytes when
	// it is longer than limit.
	ReadFile(name string, limit int64) ([]byte, error)
	// ReadDir returns the names of the entries in dir.
	ReadDir(dir string) ([]string, error)
}

// File is a file created by FS.CreateTemp.
type File = atomicfile.File

// OSFS returns the FS of the operating system. SyncDir fsyncs the folder on
// Linux and does nothing on other systems.
func OSFS() FS { return osFS{} }

type osFS struct{ atomicfile.OS }

func (osFS) MkdirAll(dir string) error {
	// Find the folders that do not exist yet, so that their creation can be
	// made durable by syncing each one's parent.
	var missing []string
	for d := filepath.Clean(dir); ; d = filepath.Dir(d) {
		if _, err := os.Stat(d); err == nil || !errors.Is(err, fs.ErrNotExist) {
			break
		}
		missing = append(missing, d)
		if filepath.Dir(d) == d {
			break
		}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	for i := len(missing) - 1; i >= 0; i-- {
		if err := atomicfile.SyncDir(filepath.Dir(missing[i])); err != nil {
			return err
		}
	}
	return nil
}

func (osFS) ReadFile(name string, limit int64) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, limit+1))
}

func (osFS) ReadDir(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	names := make([]string, len(entries))
	for i, e := range entries {
		names[i] = e.Name()
	}
	return names, err
}
