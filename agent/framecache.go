package agent

import (
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/aduflash/aduflash/image"
	"github.com/aduflash/aduflash/internal/atomicfile"
	"github.com/aduflash/aduflash/journal"
)

// FrameCacheDir is the folder in StateDir where an adaptive install into a UBI volume keeps
// the chunk store's ranges it fetched (install.FrameCache): a UBI volume update cannot be
// continued after a power cut, and the install that starts over takes them from here
// instead of fetching them again.
const FrameCacheDir = "adaptive-frames"

// DefaultAdaptiveCache is the adaptive_cache default: the most bytes of fetched ranges kept.
const DefaultAdaptiveCache = 32 << 20

// frameCache keeps the ranges of one image's chunk store in StateDir/FrameCacheDir/<the
// SHA-256 of the image's signed header>/, each range in a file of its own named
// "<offset>-<length>", replaced atomically (a power cut leaves a range whole or absent), up
// to max bytes in all. Nothing it returns is trusted: the install checks it as fetched bytes.
// The first range kept removes the folders of other images; clear removes this one's.
type frameCache struct {
	fsys journal.FS
	root string // StateDir/FrameCacheDir
	dir  string // root/<header SHA-256>
	max  int64

	mu    sync.Mutex
	ready bool  // the folder exists and used counts what it held
	used  int64 // bytes in the folder
}

// newFrameCache returns the cache of the image whose signed header has the SHA-256 header;
// it touches no file until a range is asked for or kept.
func newFrameCache(fsys journal.FS, stateDir string, header image.Digest, max int64) *frameCache {
	root := filepath.Join(stateDir, FrameCacheDir)
	return &frameCache{fsys: fsys, root: root, dir: filepath.Join(root, hex.EncodeToString(header[:])), max: max}
}

func (c *frameCache) name(off, n int64) string {
	return filepath.Join(c.dir, strconv.FormatInt(off, 10)+"-"+strconv.FormatInt(n, 10))
}

// Range returns the range kept at off of n bytes (a file of another length: none).
func (c *frameCache) Range(off, n int64) ([]byte, bool) {
	if n > c.max {
		return nil, false
	}
	b, err := c.fsys.ReadFile(c.name(off, n), n)
	if err != nil || int64(len(b)) != n {
		return nil, false
	}
	return b, true
}

// Keep keeps the range b at off, unless that would take the cache past its size (then it
// keeps nothing, without an error).
func (c *frameCache) Keep(off int64, b []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.ready {
		if err := c.prepare(); err != nil {
			return err
		}
		c.ready = true
	}
	if c.used+int64(len(b)) > c.max {
		return nil
	}
	if err := atomicfile.Replace(c.fsys, c.name(off, int64(len(b))), "", b); err != nil {
		return fmt.Errorf("agent: keeping a range of the chunk store: %w", err)
	}
	c.used += int64(len(b))
	return nil
}

// prepare removes the folders of other images, creates this one's and counts what it holds.
func (c *frameCache) prepare() error {
	names, err := c.fsys.ReadDir(c.root)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("agent: %s: %w", c.root, err)
	}
	for _, n := range names {
		if d := filepath.Join(c.root, n); d != c.dir {
			if err := c.removeDir(d); err != nil {
				return err
			}
		}
	}
	if err := c.fsys.MkdirAll(c.dir); err != nil {
		return fmt.Errorf("agent: %s: %w", c.dir, err)
	}
	held, err := c.fsys.ReadDir(c.dir)
	if err != nil {
		return fmt.Errorf("agent: %s: %w", c.dir, err)
	}
	for _, n := range held {
		if strings.HasPrefix(n, ".") { // a temporary file a power cut left
			if err := c.fsys.Remove(filepath.Join(c.dir, n)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("agent: %s: %w", c.dir, err)
			}
			continue
		}
		b, err := c.fsys.ReadFile(filepath.Join(c.dir, n), c.max)
		if err != nil {
			return fmt.Errorf("agent: %s: %w", filepath.Join(c.dir, n), err)
		}
		c.used += int64(len(b))
	}
	return nil
}

// removeDir removes the folder d and the files in it.
func (c *frameCache) removeDir(d string) error {
	names, err := c.fsys.ReadDir(d)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil { // not a folder (nothing the cache made): removed as a file, if it can be
		if rerr := c.fsys.Remove(d); rerr != nil {
			return fmt.Errorf("agent: %s: %w", d, err)
		}
		return c.fsys.SyncDir(c.root)
	}
	for _, n := range names {
		if err := c.fsys.Remove(filepath.Join(d, n)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("agent: %s: %w", d, err)
		}
	}
	if err := c.fsys.Remove(d); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("agent: %s: %w", d, err)
	}
	return c.fsys.SyncDir(c.root)
}

// clear removes every kept range (the install ended: they are not needed again).
func (c *frameCache) clear() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ready, c.used = false, 0
	return c.removeDir(c.dir)
}

// fsys is the file system of the state folder.
func (a *Agent) fsys() journal.FS {
	if a.o.JournalFS != nil {
		return a.o.JournalFS
	}
	return journal.OSFS()
}
