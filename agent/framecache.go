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

// frameCache keeps the ranges of one image's chunk store in StateDir/FrameCacheDir, each range
// in a file of its own named "<the SHA-256 of the image's signed header>-<offset>-<length>",
// replaced atomically (a power cut leaves a range whole or absent), up to max bytes in all.
// Nothing it returns is trusted: the install checks it as it checks fetched bytes. The first
// range kept removes the files of other images; clear removes them all.
type frameCache struct {
	fsys   journal.FS
	dir    string // StateDir/FrameCacheDir
	prefix string // "<header SHA-256>-"
	max    int64

	mu    sync.Mutex
	ready bool  // the folder exists and used counts what it held
	used  int64 // bytes of this image's ranges in the folder
}

// newFrameCache returns the cache of the image whose signed header has the SHA-256 header;
// it touches no file until a range is asked for or kept.
func newFrameCache(fsys journal.FS, stateDir string, header image.Digest, max int64) *frameCache {
	return &frameCache{fsys: fsys, dir: filepath.Join(stateDir, FrameCacheDir), prefix: hex.EncodeToString(header[:]) + "-", max: max}
}

func (c *frameCache) name(off, n int64) string {
	return filepath.Join(c.dir, c.prefix+strconv.FormatInt(off, 10)+"-"+strconv.FormatInt(n, 10))
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

// prepare creates the folder, removes what is not a range of this image (other images',
// temporary files a power cut left) and counts what is.
func (c *frameCache) prepare() error {
	if err := c.fsys.MkdirAll(c.dir); err != nil {
		return fmt.Errorf("agent: %s: %w", c.dir, err)
	}
	return c.remove(func(name string) (bool, error) {
		if !strings.HasPrefix(name, c.prefix) {
			return true, nil
		}
		b, err := c.fsys.ReadFile(filepath.Join(c.dir, name), c.max)
		c.used += int64(len(b))
		return false, err
	})
}

// remove removes the files of the folder that drop says to (nil: all).
func (c *frameCache) remove(drop func(name string) (bool, error)) error {
	names, err := c.fsys.ReadDir(c.dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("agent: %s: %w", c.dir, err)
	}
	removed := false
	for _, n := range names {
		if drop != nil {
			if ok, err := drop(n); err != nil {
				return fmt.Errorf("agent: %s: %w", filepath.Join(c.dir, n), err)
			} else if !ok {
				continue
			}
		}
		if err := c.fsys.Remove(filepath.Join(c.dir, n)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("agent: %s: %w", c.dir, err)
		}
		removed = true
	}
	if !removed {
		return nil
	}
	return c.fsys.SyncDir(c.dir)
}

// clear removes every kept range (the install ended: they are not needed again).
func (c *frameCache) clear() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ready, c.used = false, 0
	return c.remove(nil)
}

// clearFrameCaches removes every range kept in stateDir: at a start with no deployment in
// progress, what an install cut while it cleared up, or one cancelled, left.
func clearFrameCaches(fsys journal.FS, stateDir string) error {
	return (&frameCache{fsys: fsys, dir: filepath.Join(stateDir, FrameCacheDir)}).clear()
}

// fsys is the file system of the state folder.
func (a *Agent) fsys() journal.FS {
	if a.o.JournalFS != nil {
		return a.o.JournalFS
	}
	return journal.OSFS()
}
