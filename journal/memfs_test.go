package journal

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"

	"github.com/aduflash/aduflash/internal/memfs"
)

var errPowerCut = errors.New("memfs: power cut")

// memFS is an in-memory, single-folder FS that tells what a power cut would
// leave behind (the model is package memfs): after a power cut
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
	fs       *memfs.FS
	ops      int
	cutAfter int
	// in-flight temporary files (created, not yet renamed or removed); more
	// than one at a time means two Saves overlapped.
	inflight int
	overlap  bool
	yield    bool // runtime.Gosched in every operation, to shake out races
}

func newMemFS(dir string) *memFS {
	return &memFS{dir: dir, fs: memfs.New(), cutAfter: -1}
}

// do runs op as one operation: it fails without effect once the power is cut.
func (m *memFS) do(op func() error) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.yield {
		m.mu.Unlock()
		runtime.Gosched()
		m.mu.Lock()
	}
	if m.cutAfter >= 0 && m.ops >= m.cutAfter {
		return errPowerCut
	}
	m.ops++
	return op()
}

func (m *memFS) inDir(p string) error {
	if filepath.Dir(p) != m.dir {
		return &fs.PathError{Op: "open", Path: p, Err: fs.ErrNotExist}
	}
	return nil
}

func (m *memFS) MkdirAll(dir string) error {
	return m.do(func() error {
		if dir != m.dir {
			return fmt.Errorf("memfs: only folder %s exists", m.dir)
		}
		return nil
	})
}

func (m *memFS) CreateTemp(dir, pattern string) (File, error) {
	var f File
	err := m.do(func() error {
		if err := m.inDir(filepath.Join(dir, pattern)); err != nil {
			return err
		}
		name, ino := m.fs.CreateTemp(dir, pattern)
		m.inflight++
		if m.inflight > 1 {
			m.overlap = true
		}
		f = &memFile{m: m, name: name, ino: ino}
		return nil
	})
	return f, err
}

func (m *memFS) Rename(oldpath, newpath string) error {
	return m.do(func() error {
		if m.inDir(newpath) != nil {
			return &fs.PathError{Op: "rename", Path: oldpath, Err: fs.ErrNotExist}
		}
		if err := m.fs.Rename(oldpath, newpath); err != nil {
			return err
		}
		m.inflight--
		return nil
	})
}

func (m *memFS) SyncDir(dir string) error {
	return m.do(func() error {
		m.fs.SyncDir(m.dir)
		return nil
	})
}

func (m *memFS) Remove(name string) error {
	return m.do(func() error {
		if err := m.fs.Remove(name); err != nil {
			return err
		}
		if strings.Contains(filepath.Base(name), tempInfix) {
			m.inflight--
		}
		return nil
	})
}

func (m *memFS) ReadFile(name string, limit int64) ([]byte, error) {
	var b []byte
	err := m.do(func() (err error) {
		b, err = m.fs.ReadFile(name, limit)
		return err
	})
	return b, err
}

func (m *memFS) ReadDir(dir string) ([]string, error) {
	var names []string
	err := m.do(func() error {
		names = m.names()
		return nil
	})
	return names, err
}

// names lists the live entries (base names, sorted).
func (m *memFS) names() []string { return m.fs.ReadDir(m.dir) }

// put creates a durable file (synced data, synced folder entry).
func (m *memFS) put(name string, data []byte) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.fs.Put(filepath.Join(m.dir, name), data)
}

type memFile struct {
	m      *memFS
	name   string
	ino    *memfs.Inode
	closed bool
}

func (f *memFile) Name() string { return f.name }

// do runs op as an operation of the file system on the open file.
func (f *memFile) do(op func()) error {
	return f.m.do(func() error {
		if f.closed {
			return fs.ErrClosed
		}
		op()
		return nil
	})
}

func (f *memFile) Write(p []byte) (int, error) {
	if err := f.do(func() { f.ino.Data = append(f.ino.Data, p...) }); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (f *memFile) Sync() error { return f.do(func() { f.ino.Synced = slices.Clone(f.ino.Data) }) }

func (f *memFile) Close() error { return f.do(func() { f.closed = true }) }

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
	changes := m.fs.Unsynced()
	for k := 0; k <= changes; k++ {
		entries := m.fs.AfterCut(func(_ string, n int) int { return min(k, n) })
		paths := slices.Sorted(maps.Keys(entries))
		// Cartesian product of each file's possible contents.
		type pick struct {
			contents map[string][]byte
			desc     string
		}
		picks := []pick{{contents: map[string][]byte{}, desc: fmt.Sprintf("%d/%d folder changes", k, changes)}}
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
				n.fs.Put(p, data)
			}
			out = append(out, crashState{fs: n, desc: pk.desc})
		}
	}
	return out
}

type content struct {
	data []byte
	desc string
}

func contentChoices(ino *memfs.Inode) []content {
	if slices.Equal(ino.Data, ino.Synced) {
		return []content{{data: ino.Synced}}
	}
	d := ino.Data
	out := []content{{data: ino.Synced, desc: "unsynced writes lost"}}
	seen := map[string]bool{string(ino.Synced): true}
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
