// Package memfs is the in-memory file system that the power-cut simulations share (the
// journal's tests, internal/powersim): it tells what a power cut may leave behind.
//
// Model: every file (Inode) has the data written to it and the data as of its last Sync;
// every folder has its live entries and its entries as of its last SyncDir, plus the ordered
// creations, renames and removals made in it since. After a power cut a folder holds its
// synced entries plus a prefix of those changes (journalling file systems keep metadata
// changes in order; AfterCut), and a file written since its last Sync holds its synced data
// or some of what was written since (the caller's choice).
//
// An FS is not safe for concurrent use: its callers hold their own lock.
package memfs

import (
	"fmt"
	"io/fs"
	"maps"
	"path/filepath"
	"slices"
	"sort"
	"strings"
)

// Inode is a file: Data as written, Synced as of its last Sync.
type Inode struct{ Data, Synced []byte }

// FS is a tree of folders and files.
type FS struct {
	live    map[string]*Inode // path → file
	synced  map[string]*Inode // the entries as of each folder's last SyncDir
	changes []change          // folder changes since their folder's last SyncDir
	seq     int
}

type change struct {
	op   string // "create", "rename", "remove"
	a, b string
	ino  *Inode
}

func (c change) apply(entries map[string]*Inode) {
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

// New returns an empty FS.
func New() *FS { return &FS{live: map[string]*Inode{}, synced: map[string]*Inode{}} }

// CreateTemp creates an empty file in dir named as os.CreateTemp names it (the last "*" of
// pattern replaced by a number) and returns its path and inode.
func (m *FS) CreateTemp(dir, pattern string) (string, *Inode) {
	m.seq++
	i := strings.LastIndex(pattern, "*")
	name := filepath.Join(dir, pattern[:i]+fmt.Sprint(m.seq)+pattern[i+1:])
	ino := &Inode{}
	m.live[name] = ino
	m.changes = append(m.changes, change{op: "create", a: name, ino: ino})
	return name, ino
}

// Rename moves oldpath to newpath, replacing what was there.
func (m *FS) Rename(oldpath, newpath string) error {
	ino, ok := m.live[oldpath]
	if !ok {
		return &fs.PathError{Op: "rename", Path: oldpath, Err: fs.ErrNotExist}
	}
	m.live[newpath] = ino
	delete(m.live, oldpath)
	m.changes = append(m.changes, change{op: "rename", a: oldpath, b: newpath})
	return nil
}

// Remove removes the file name.
func (m *FS) Remove(name string) error {
	if _, ok := m.live[name]; !ok {
		return &fs.PathError{Op: "remove", Path: name, Err: fs.ErrNotExist}
	}
	delete(m.live, name)
	m.changes = append(m.changes, change{op: "remove", a: name})
	return nil
}

// SyncDir makes the changes made in dir durable.
func (m *FS) SyncDir(dir string) {
	var rest []change
	for _, c := range m.changes {
		if filepath.Dir(c.a) == filepath.Clean(dir) {
			c.apply(m.synced)
		} else {
			rest = append(rest, c)
		}
	}
	m.changes = rest
}

// ReadFile returns the data of the file name, at most limit+1 bytes (so that the caller
// sees that the file is longer than limit).
func (m *FS) ReadFile(name string, limit int64) ([]byte, error) {
	ino, ok := m.live[name]
	if !ok {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	}
	return slices.Clone(ino.Data[:min(int64(len(ino.Data)), limit+1)]), nil
}

// ReadDir returns the names of the files in dir, sorted.
func (m *FS) ReadDir(dir string) []string {
	var names []string
	for p := range m.live {
		if filepath.Dir(p) == filepath.Clean(dir) {
			names = append(names, filepath.Base(p))
		}
	}
	sort.Strings(names)
	return names
}

// Put creates the durable file name holding data: synced, and its folder synced.
func (m *FS) Put(name string, data []byte) {
	m.SyncDir(filepath.Dir(name))
	ino := &Inode{Data: slices.Clone(data), Synced: slices.Clone(data)}
	m.live[name], m.synced[name] = ino, ino
}

// AfterCut returns the entries a power cut leaves: in each folder, the synced entries plus
// the first keep(dir, n) of the n changes made there since its last SyncDir. keep is called
// once for each folder with changes, in the order of their first change. The inodes are
// the live ones, with all their data.
func (m *FS) AfterCut(keep func(dir string, n int) int) map[string]*Inode {
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
		for _, c := range cs[:keep(d, len(cs))] {
			c.apply(entries)
		}
	}
	return entries
}

// Restore makes entries the whole file system, synced (what the power came back to).
func (m *FS) Restore(entries map[string]*Inode) {
	m.live, m.synced, m.changes = entries, maps.Clone(entries), nil
}

// Unsynced returns the number of folder changes not yet made durable by a SyncDir.
func (m *FS) Unsynced() int { return len(m.changes) }
