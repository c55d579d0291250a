package vmtest

import (
	"bufio"
	"fmt"
	"io"
	"path"
	"strings"
)

// cpioWriter writes an uncompressed newc ("070701") cpio archive, the format the Linux
// kernel unpacks as an initramfs. Parent directories are emitted automatically, once.
type cpioWriter struct {
	w    *bufio.Writer
	n    int64 // bytes written, for 4-byte alignment
	ino  uint32
	dirs map[string]bool
	err  error
}

const (
	modeDir  = 0o040000
	modeReg  = 0o100000
	modeLink = 0o120000
	modeChr  = 0o020000
)

func newCPIO(w io.Writer) *cpioWriter {
	return &cpioWriter{w: bufio.NewWriterSize(w, 1<<20), ino: 1000, dirs: map[string]bool{".": true, "/": true, "": true}}
}

func (c *cpioWriter) write(p []byte) {
	if c.err != nil {
		return
	}
	var n int
	n, c.err = c.w.Write(p)
	c.n += int64(n)
}

func (c *cpioWriter) pad() {
	if r := c.n % 4; r != 0 {
		c.write(make([]byte, 4-r))
	}
}

func (c *cpioWriter) entry(name string, mode uint32, data []byte, rmaj, rmin uint32) {
	name = strings.TrimPrefix(path.Clean("/"+name), "/")
	if name == "" {
		return
	}
	c.ino++
	nlink := uint32(1)
	if mode&0o170000 == modeDir {
		nlink = 2
	}
	hdr := fmt.Sprintf("070701%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x",
		c.ino, mode, 0, 0, nlink, 0, len(data), 0, 0, rmaj, rmin, len(name)+1, 0)
	c.write([]byte(hdr))
	c.write([]byte(name))
	c.write([]byte{0})
	c.pad()
	c.write(data)
	c.pad()
}

func (c *cpioWriter) mkdirAll(dir string) {
	dir = path.Clean("/" + dir)
	if c.dirs[dir] {
		return
	}
	c.mkdirAll(path.Dir(dir))
	c.dirs[dir] = true
	c.entry(dir, modeDir|0o755, nil, 0, 0)
}

// File adds a regular file with permission bits perm.
func (c *cpioWriter) File(name string, perm uint32, data []byte) {
	c.mkdirAll(path.Dir(path.Clean("/" + name)))
	c.entry(name, modeReg|perm&0o7777, data, 0, 0)
}

// Symlink adds name pointing at target.
func (c *cpioWriter) Symlink(name, target string) {
	c.mkdirAll(path.Dir(path.Clean("/" + name)))
	c.entry(name, modeLink|0o777, []byte(target), 0, 0)
}

// Dir adds a directory (and its parents).
func (c *cpioWriter) Dir(name string) { c.mkdirAll(name) }

// CharDev adds a character device node.
func (c *cpioWriter) CharDev(name string, perm, major, minor uint32) {
	c.mkdirAll(path.Dir(path.Clean("/" + name)))
	c.entry(name, modeChr|perm&0o7777, nil, major, minor)
}

// Close writes the trailer and flushes; the archive length stays a multiple of 4 so that
// another archive can be appended (the kernel unpacks concatenated archives).
func (c *cpioWriter) Close() error {
	c.entry("TRAILER!!!", 0, nil, 0, 0)
	if c.err != nil {
		return c.err
	}
	return c.w.Flush()
}
