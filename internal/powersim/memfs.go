package powersim

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/aduflash/aduflash/journal"
)

// MemFS is a journal file system in memory behind the switch, that loses at a power cut
// what a real one may lose: a file keeps the data of its last Sync plus a prefix of what
// was written since, and a folder keeps its entries as of its last SyncDir plus a prefix of
// the creations, renames and removals made since (journalling file systems keep metadata
// changes in order). The prefix lengths are drawn from the switch's seed when the power
// comes back. It is safe for concurrent use.
type MemFS struct {
	p       *Power
	mu      sync.Mutex
	live    map[string]*inode // path → file
	synced  map[string]*inode // the entries as of each folder's last SyncDir
	changes []change          // folder changes since their folder's last SyncDir
	seq     int
}

type inode struct{ data, synced []byte }

type change struct {
	op   string // "create", "rename", "remove"
	a, b string
	ino  *inode
}

// NewMemFS returns an empty file system behind p.
func NewMemFS(p *Power) *MemFS {
	m := &MemFS{p: p, live: map[string]*inode{}, synced: map[string]*inode{}}
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
	entries := maps.Clone(m.synced)
	byDir := map[string][]change{}
	var dirs []string
	for _, c := range m.changes {
		d := filepath.Dir(c.a)
		if byDir[d] == nil {
			dirs = append(dirs, d)
		}
		byDir[d] = append(byDir[d], c)
	}
	for _, d := range dirs {
		cs := byDir[d]
		for _, c := range cs[:m.p.intN(len(cs)+1)] {
			c.apply(entries)
		}
	}
	paths := slices.Sorted(maps.Keys(entries))
	for _, p := range paths {
		ino := entries[p]
		if tail, ok := bytes.CutPrefix(ino.data, ino.synced); ok {
			ino.data = append(slices.Clone(ino.synced), tail[:m.p.intN(len(tail)+1)]...)
		} else {
			ino.data = slices.Clone(ino.synced)
		}
		ino.synced = slices.Clone(ino.data)
	}
	m.live, m.synced, m.changes = entries, maps.Clone(entries), nil
}

func (c change) apply(entries map[string]*inode) {
	switch c.op {
	case "create":
		entries[c.a] = c.ino
	case "rename":
		if ino, ok := entries[c.a]; ok {
			entries[c.b] = ino
			delete(entries, c.a)
		}
	case "remove":
		delete(entries, c.a)
	}
}

// MkdirAll succeeds: folders exist as the paths in them do.
func (m *MemFS) MkdirAll(dir string) error { return m.p.Check() }

func (m *MemFS) CreateTemp(dir, pattern string) (journal.File, error) {
	var f journal.File
	err := m.p.Do(Op{FileCreate, "journal"}, func() error {
		m.mu.Lock()
		defer m.mu.Unlock()
		m.seq++
		i := strings.LastIndex(pattern, "*")
		name := filepath.Join(dir, pattern[:i]+fmt.Sprint(m.seq)+pattern[i+1:])
		ino := &inode{}
		m.live[name] = ino
		m.changes = append(m.changes, change{op: "create", a: name, ino: ino})
		f = &memFile{m: m, name: name, ino: ino}
		return nil
	}, nil)
	return f, err
}

func (m *MemFS) Rename(oldpath, newpath string) error {
	return m.p.Do(Op{Rename, "journal"}, func() error {
		m.mu.Lock()
		defer m.mu.Unlock()
		ino, ok := m.live[oldpath]
		if !ok {
			return &fs.PathError{Op: "rename", Path: oldpath, Err: fs.ErrNotExist}
		}
		m.live[newpath] = ino
		delete(m.live, oldpath)
		m.changes = append(m.changes, change{op: "rename", a: oldpath, b: newpath})
		return nil
	}, nil)
}

func (m *MemFS) SyncDir(dir string) error {
	return m.p.Do(Op{SyncDir, "journal"}, func() error {
		m.mu.Lock()
		defer m.mu.Unlock()
		var rest []change
		for _, c := range m.changes {
			if filepath.Dir(c.a) == filepath.Clean(dir) {
				c.apply(m.synced)
			} else {
				rest = append(rest, c)
			}
		}
		m.changes = rest
		return nil
	}, nil)
}

func (m *MemFS) Remove(name string) error {
	return m.p.Do(Op{Remove, "journal"}, func() error {
		m.mu.Lock()
		defer m.mu.Unlock()
		if _, ok := m.live[name]; !ok {
			return &fs.PathError{Op: "remove", Path: name, Err: fs.ErrNotExist}
		}
		delete(m.live, name)
		m.changes = append(m.changes, change{op: "remove", a: name})
		return nil
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
	ino, ok := m.live[name]
	if !ok {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	}
	return slices.Clone(ino.data[:min(int64(len(ino.data)), limit+1)]), nil
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
	var names []string
	for p := range m.live {
		if filepath.Dir(p) == filepath.Clean(dir) {
			names = append(names, filepath.Base(p))
		}
	}
	sort.Strings(names)
	return names
}

type memFile struct {
	m      *MemFS
	name   string
	ino    *inode
	closed bool
}

func (f *memFile) Name() string { return f.name }

func (f *memFile) Write(p []byte) (int, error) {
	add := func(b []byte) {
		f.m.mu.Lock()
		f.ino.data = append(f.ino.data, b...)
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
		f.ino.synced = slices.Clone(f.ino.data)
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
