package journal

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
)

var errPowerCut = errors.New("memfs: power cut")

// memFS is an in-memory, single-folder FS that tells what a power cut would
// leave behind.
//
// Model: every file (inode) has its written data and the data as of its last
// Sync; the folder has its live entries and the entries as of its last
// SyncDir, plus the ordered list of entry changes (create, rename, remove)
// since then. After a power cut:
//   - the folder holds the synced entries plus any prefix of the changes made
//     since (a rename before the folder sync may or may not have happened, and
//     journalling file systems keep metadata changes in order);
//   - a file written since its last Sync holds its synced data, or a torn
//     version of what was written: a prefix of several lengths, or the data
//     with its second half zeroed (delayed allocation).
//
// cutAfter >= 0 makes every operation after the first cutAfter ones fail with
// errPowerCut, without effect.
type memFS struct {
	mu       sync.Mutex
	dir      string
	live     map[string]*inode // path -> file
	synced   map[string]*inode
	changes  []change
	ops      int
	cutAfter int
	seq      int
	// in-flight temporary files (created, not yet renamed or removed); more
	// than one at a time means two Saves overlapped.
	inflight int
	overlap  bool
	yield    bool // runtime.Gosched in every operation, to shake out races
}

type inode struct{ data, synced []byte }

type change struct {
	op   string // "create", "rename", "remove"
	a, b string
	ino  *inode
}

func newMemFS(dir string) *memFS {
	return &memFS{dir: dir, live: map[string]*inode{}, synced: map[string]*inode{}, cutAfter: -1}
}

func (m *memFS) step() error {
	if m.yield {
		m.mu.Unlock()
		runtime.Gosched()
		m.mu.Lock()
	}
	if m.cutAfter >= 0 && m.ops >= m.cutAfter {
		return errPowerCut
	}
	m.ops++
	return nil
}

func (m *memFS) inDir(p string) error {
	if filepath.Dir(p) != m.dir {
		return &fs.PathError{Op: "open", Path: p, Err: fs.ErrNotExist}
	}
	return nil
}

func (m *memFS) MkdirAll(dir string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.step(); err != nil {
		return err
	}
	if dir != m.dir {
		return fmt.Errorf("memfs: only folder %s exists", m.dir)
	}
	return nil
}

func (m *memFS) CreateTemp(dir, pattern string) (File, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.step(); err != nil {
		return nil, err
	}
	m.seq++
	i := strings.LastIndex(pattern, "*")
	name := filepath.Join(dir, pattern[:i]+fmt.Sprint(m.seq)+pattern[i+1:])
	if err := m.inDir(name); err != nil {
		return nil, err
	}
	ino := &inode{}
	m.live[name] = ino
	m.changes = append(m.changes, change{op: "create", a: name, ino: ino})
	m.inflight++
	if m.inflight > 1 {
		m.overlap = true
	}
	return &memFile{m: m, name: name, ino: ino}, nil
}

func (m *memFS) Rename(oldpath, newpath string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.step(); err != nil {
		return err
	}
	ino, ok := m.live[oldpath]
	if !ok || m.inDir(newpath) != nil {
		return &fs.PathError{Op: "rename", Path: oldpath, Err: fs.ErrNotExist}
	}
	m.live[newpath] = ino
	delete(m.live, oldpath)
	m.changes = append(m.changes, change{op: "rename", a: oldpath, b: newpath})
	m.inflight--
	return nil
}

func (m *memFS) SyncDir(dir string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.step(); err != nil {
		return err
	}
	m.synced = maps.Clone(m.live)
	m.changes = nil
	return nil
}

func (m *memFS) Remove(name string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.step(); err != nil {
		return err
	}
	if _, ok := m.live[name]; !ok {
		return &fs.PathError{Op: "remove", Path: name, Err: fs.ErrNotExist}
	}
	if strings.Contains(filepath.Base(name), tempInfix) {
		m.inflight--
	}
	delete(m.live, name)
	m.changes = append(m.changes, change{op: "remove", a: name})
	return nil
}

func (m *memFS) ReadFile(name string, limit int64) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.step(); err != nil {
		return nil, err
	}
	ino, ok := m.live[name]
	if !ok {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	}
	return slices.Clone(ino.data[:min(int64(len(ino.data)), limit+1)]), nil
}

func (m *memFS) ReadDir(dir string) ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.step(); err != nil {
		return nil, err
	}
	return m.names(), nil
}

// names lists the live entries (base names, sorted).
func (m *memFS) names() []string {
	var names []string
	for p := range m.live {
		names = append(names, filepath.Base(p))
	}
	sort.Strings(names)
	return names
}

// put creates a durable file (synced data, synced folder entry).
func (m *memFS) put(name string, data []byte) {
	m.mu.Lock()
	defer m.mu.Unlock()
	p := filepath.Join(m.dir, name)
	m.live[p] = &inode{data: slices.Clone(data), synced: slices.Clone(data)}
	m.synced = maps.Clone(m.live)
	m.changes = nil
}

type memFile struct {
	m      *memFS
	name   string
	ino    *inode
	closed bool
}

func (f *memFile) Name() string { return f.name }

func (f *memFile) Write(p []byte) (int, error) {
	f.m.mu.Lock()
	defer f.m.mu.Unlock()
	if err := f.m.step(); err != nil {
		return 0, err
	}
	if f.closed {
		return 0, fs.ErrClosed
	}
	f.ino.data = append(f.ino.data, p...)
	return len(p), nil
}

func (f *memFile) Sync() error {
	f.m.mu.Lock()
	defer f.m.mu.Unlock()
	if err := f.m.step(); err != nil {
		return err
	}
	if f.closed {
		return fs.ErrClosed
	}
	f.ino.synced = slices.Clone(f.ino.data)
	return nil
}

func (f *memFile) Close() error {
	f.m.mu.Lock()
	defer f.m.mu.Unlock()
	if err := f.m.step(); err != nil {
		return err
	}
	if f.closed {
		return fs.ErrClosed
	}
	f.closed = true
	return nil
}

// crashState is one file system that a power cut could leave behind.
type crashState struct {
	fs   *memFS
	desc string
}

// crashStates enumerates what a power cut at this instant could leave.
func (m *memFS) crashStates() []crashState {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []crashState
	for k := 0; k <= len(m.changes); k++ {
		entries := maps.Clone(m.synced)
		for _, c := range m.changes[:k] {
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
		paths := slices.Sorted(maps.Keys(entries))
		// Cartesian product of each file's possible contents.
		type pick struct {
			contents map[string][]byte
			desc     string
		}
		picks := []pick{{contents: map[string][]byte{}, desc: fmt.Sprintf("%d/%d folder changes", k, len(m.changes))}}
		for _, p := range paths {
			var next []pick
			for _, c := range contentChoices(entries[p]) {
				for _, pk := range picks {
					cont := make(map[string][]byte, len(pk.contents)+1)
					for a, b := range pk.contents {
						cont[a] = b
					}
					cont[p] = c.data
					d := pk.desc
					if c.desc != "" {
						d += ", " + filepath.Base(p) + " " + c.desc
					}
					next = append(next, pick{cont, d})
				}
			}
			picks = next
		}
		for _, pk := range picks {
			n := newMemFS(m.dir)
			for p, data := range pk.contents {
				n.live[p] = &inode{data: slices.Clone(data), synced: slices.Clone(data)}
			}
			n.synced = maps.Clone(n.live)
			out = append(out, crashState{fs: n, desc: pk.desc})
		}
	}
	return out
}

type content struct {
	data []byte
	desc string
}

func contentChoices(ino *inode) []content {
	if slices.Equal(ino.data, ino.synced) {
		return []content{{data: ino.synced}}
	}
	d := ino.data
	out := []content{{data: ino.synced, desc: "unsynced writes lost"}}
	seen := map[string]bool{string(ino.synced): true}
	add := func(b []byte, desc string) {
		if !seen[string(b)] {
			seen[string(b)] = true
			out = append(out, content{data: b, desc: desc})
		}
	}
	for _, n := range []int{0, 1, len(d) / 3, len(d) / 2, len(d) - 1, len(d)} {
		if n >= 0 && n <= len(d) {
			add(d[:n], fmt.Sprintf("torn at %d/%d bytes", n, len(d)))
		}
	}
	z := slices.Clone(d)
	clear(z[len(z)/2:])
	add(z, "second half zeroed")
	return out
}
