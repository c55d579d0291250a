package powersim

import (
	"bytes"
	"errors"
	"io/fs"
	"maps"
	"slices"
	"sync"

	"github.com/aduflash/aduflash/internal/memfs"
	"github.com/aduflash/aduflash/journal"
)

// MemFS is a journal file system in memory behind the switch, that loses at a power cut
// what a real one may lose: a file keeps the data of its last Sync plus a prefix of what
// was written since, and a folder keeps its entries as of its last SyncDir plus a prefix of
// the creations, renames and removals made since (journalling file systems keep metadata
// changes in order; the model is package memfs). The prefix lengths are drawn from the
// switch's seed when the power comes back. It is safe for concurrent use.
type MemFS struct {
	p  *Power
	mu sync.Mutex
	fs *memfs.FS
}

// NewMemFS returns an empty file system behind p.
func NewMemFS(p *Power) *MemFS {
	m := &MemFS{p: p, fs: memfs.New()}
	p.AfterCut(m.settle)
	return m
}

// Inspect returns a read-only view that ignores the switch (for looking at the journal while
// the board is off).
func (m *MemFS) Inspect() journal.FS { return inspect{m} }

// settle keeps what the cut left: a prefix of every folder's unsynced changes and of every
// file's unsynced writes.
func (m *MemFS) settle() {
	m.mu.Lock()
	defer m.mu.Unlock()
	entries := m.fs.AfterCut(func(_ string, n int) int { return m.p.intN(n + 1) })
	paths := slices.Sorted(maps.Keys(entries))
	for _, p := range paths {
		ino := entries[p]
		if tail, ok := bytes.CutPrefix(ino.Data, ino.Synced); ok {
			ino.Data = append(slices.Clone(ino.Synced), tail[:m.p.intN(len(tail)+1)]...)
		} else {
			ino.Data = slices.Clone(ino.Synced)
		}
		ino.Synced = slices.Clone(ino.Data)
	}
	m.fs.Restore(entries)
}

// MkdirAll succeeds: folders exist as the paths in them do.
func (m *MemFS) MkdirAll(dir string) error { return m.p.Check() }

func (m *MemFS) CreateTemp(dir, pattern string) (journal.File, error) {
	var f journal.File
	err := m.p.Do(Op{FileCreate, "journal"}, func() error {
		m.mu.Lock()
		defer m.mu.Unlock()
		name, ino := m.fs.CreateTemp(dir, pattern)
		f = &memFile{m: m, name: name, ino: ino}
		return nil
	}, nil)
	return f, err
}

func (m *MemFS) Rename(oldpath, newpath string) error {
	return m.p.Do(Op{Rename, "journal"}, func() error {
		m.mu.Lock()
		defer m.mu.Unlock()
		return m.fs.Rename(oldpath, newpath)
	}, nil)
}

func (m *MemFS) SyncDir(dir string) error {
	return m.p.Do(Op{SyncDir, "journal"}, func() error {
		m.mu.Lock()
		defer m.mu.Unlock()
		m.fs.SyncDir(dir)
		return nil
	}, nil)
}

func (m *MemFS) Remove(name string) error {
	return m.p.Do(Op{Remove, "journal"}, func() error {
		m.mu.Lock()
		defer m.mu.Unlock()
		return m.fs.Remove(name)
	}, nil)
}

func (m *MemFS) ReadFile(name string, limit int64) ([]byte, error) {
	if err := m.p.Check(); err != nil {
		return nil, err
	}
	return m.readFile(name, limit)
}

func (m *MemFS) readFile(name string, limit int64) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.fs.ReadFile(name, limit)
}

func (m *MemFS) ReadDir(dir string) ([]string, error) {
	if err := m.p.Check(); err != nil {
		return nil, err
	}
	return m.readDir(dir), nil
}

func (m *MemFS) readDir(dir string) []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.fs.ReadDir(dir)
}

type memFile struct {
	m      *MemFS
	name   string
	ino    *memfs.Inode
	closed bool
}

func (f *memFile) Name() string { return f.name }

func (f *memFile) Write(p []byte) (int, error) {
	add := func(b []byte) {
		f.m.mu.Lock()
		f.ino.Data = append(f.ino.Data, b...)
		f.m.mu.Unlock()
	}
	err := f.m.p.Do(Op{FileWrite, "journal"}, func() error {
		if f.closed {
			return fs.ErrClosed
		}
		add(p)
		return nil
	}, func() { add(p[:f.m.p.intN(len(p)+1)]) })
	if err != nil {
		return 0, err
	}
	return len(p), nil
}

func (f *memFile) Sync() error {
	return f.m.p.Do(Op{FileSync, "journal"}, func() error {
		f.m.mu.Lock()
		defer f.m.mu.Unlock()
		f.ino.Synced = slices.Clone(f.ino.Data)
		return nil
	}, nil)
}

func (f *memFile) Close() error {
	if f.closed {
		return fs.ErrClosed
	}
	f.closed = true
	return nil
}

// errReadOnly is what the inspection view answers to writes.
var errReadOnly = errors.New("powersim: the inspection view is read-only")

type inspect struct{ m *MemFS }

func (i inspect) MkdirAll(string) error                           { return nil }
func (i inspect) CreateTemp(string, string) (journal.File, error) { return nil, errReadOnly }
func (i inspect) Rename(string, string) error                     { return errReadOnly }
func (i inspect) SyncDir(string) error                            { return errReadOnly }
func (i inspect) Remove(string) error                             { return errReadOnly }
func (i inspect) ReadDir(dir string) ([]string, error)            { return i.m.readDir(dir), nil }
func (i inspect) ReadFile(name string, limit int64) ([]byte, error) {
	return i.m.readFile(name, limit)
}
