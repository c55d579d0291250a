package tftpserve

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/aduflash/aduflash/image"
	"github.com/aduflash/aduflash/install"
)

// Formats of served files.
const (
	FormatAduimg  = install.FormatAduimg  // served as its verified payload
	FormatMCUboot = install.FormatMCUboot // served as it is, once its signature checked
	FormatRaw     = install.FormatRaw     // neither (or Options.Raw): served as it is
)

// File is one file of the catalog, described by the bytes a transfer of it sends.
type File struct {
	Name      string       `json:"name"` // the TFTP name: slash-separated, relative to the folder
	Format    string       `json:"format"`
	Version   string       `json:"version,omitempty"`    // a signed image's version
	SlotClass string       `json:"slot_class,omitempty"` // the slot class an aduimg is signed for
	Size      int64        `json:"size"`                 // bytes served: an aduimg's payload size
	CRC32     CRC32        `json:"crc32"`                // of the bytes served (U-Boot's crc32)
	SHA256    image.Digest `json:"sha256"`               // of the bytes served
	FileSize  int64        `json:"file_size"`            // the file's own size in the folder
}

// Skipped is an entry of the folder that is not served, and why.
type Skipped struct {
	Name   string `json:"name"`
	Reason string `json:"reason"`
}

// CRC32 is a CRC-32 (IEEE, as zlib and U-Boot's crc32 compute it); it prints and marshals as
// the 8 lower-case hex digits U-Boot prints.
type CRC32 uint32

func (c CRC32) String() string { return fmt.Sprintf("%08x", uint32(c)) }

// MarshalText writes the 8 hex digits.
func (c CRC32) MarshalText() ([]byte, error) { return []byte(c.String()), nil }

// UnmarshalText reads 8 hex digits.
func (c *CRC32) UnmarshalText(b []byte) error {
	if len(b) != 8 {
		return fmt.Errorf("crc32 %q: want 8 hex digits", b)
	}
	v, err := strconv.ParseUint(string(b), 16, 32)
	if err != nil {
		return fmt.Errorf("crc32 %q: want 8 hex digits", b)
	}
	*c = CRC32(v)
	return nil
}

// Meter follows the bytes of one file: its verification in Open, or one transfer.
// progress.Bar of the CLIs is one.
type Meter interface {
	Add(n int64)
	// End ends the file with the error that stopped it (nil: done).
	End(err error)
}

// Options of Open and OpenFiles.
type Options struct {
	// Keyring holds the keys signed images must verify with. Without one, a folder that
	// holds a signed image is refused (ErrNoTrust).
	Keyring *image.Keyring
	// Raw serves every file as it is, a signed image too, without checking it.
	Raw bool
	// Progress, if set, is called before each file is verified, with its name and the size
	// it will be served with, and gets the bytes as they are verified.
	Progress func(name string, size int64) Meter
}

// Catalog is the verified content of a folder, or of a list of files, fixed when it was
// opened.
type Catalog struct {
	roots   []*os.Root
	opts    Options
	files   []entry // by name
	skipped []Skipped
}

// entry is a served file and where it is: a name inside one of the catalog's roots.
type entry struct {
	File
	root *os.Root
	path string
}

// Open verifies every file of dir (see the package doc) and returns the catalog of what
// will be served. Errors name the file (relative to dir) and wrap the verification's cause.
func Open(ctx context.Context, dir string, o Options) (*Catalog, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, err
	}
	c := &Catalog{roots: []*os.Root{root}, opts: o}
	if err := c.scan(ctx, root); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// OpenFiles verifies the files at paths as Open verifies a folder's and returns the catalog
// that serves each under its base name ("images/rootfs.aduimg" as "rootfs.aduimg"), in the
// order given. A symbolic link is served under its own name. A path that is not a regular
// file, and two paths with one base name, are refused (ErrNotServable).
func OpenFiles(ctx context.Context, paths []string, o Options) (*Catalog, error) {
	c := &Catalog{opts: o}
	if err := c.add(ctx, paths); err != nil {
		c.Close()
		return nil, err
	}
	slices.SortFunc(c.files, func(a, b entry) int { return strings.Compare(a.Name, b.Name) })
	return c, nil
}

// add verifies each file of paths into the catalog, each under a root of its folder.
func (c *Catalog) add(ctx context.Context, paths []string) error {
	for _, p := range paths {
		name := filepath.Base(p)
		if slices.ContainsFunc(c.files, func(e entry) bool { return e.Name == name }) {
			return fmt.Errorf("%s: %w: another file is served as %q", p, ErrNotServable, name)
		}
		target, err := filepath.EvalSymlinks(p)
		if err != nil {
			return err
		}
		if st, err := os.Stat(target); err != nil {
			return err
		} else if !st.Mode().IsRegular() {
			return fmt.Errorf("%s: %w: not a regular file (%s)", p, ErrNotServable, st.Mode().Type())
		}
		root, err := os.OpenRoot(filepath.Dir(target))
		if err != nil {
			return err
		}
		c.roots = append(c.roots, root)
		e := entry{File: File{Name: name}, root: root, path: filepath.Base(target)}
		if err := c.verify(ctx, &e); err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		c.files = append(c.files, e)
	}
	return nil
}

// Close releases the folders.
func (c *Catalog) Close() error {
	var errs []error
	for _, r := range c.roots {
		errs = append(errs, r.Close())
	}
	return errors.Join(errs...)
}

// Files returns the served files, sorted by name.
func (c *Catalog) Files() []File {
	files := make([]File, len(c.files))
	for i, e := range c.files {
		files[i] = e.File
	}
	return files
}

// Skipped returns the entries of the folder that are not served.
func (c *Catalog) Skipped() []Skipped { return slices.Clone(c.skipped) }

// Lookup returns the catalog's file of a requested name: ErrOutside for a name that is not a
// clean relative name (it could leave the folder), ErrNotFound for one the catalog lacks.
func (c *Catalog) Lookup(name string) (File, error) {
	e, err := c.lookup(name)
	return e.File, err
}

func (c *Catalog) lookup(name string) (entry, error) {
	if err := checkName(name); err != nil {
		return entry{}, err
	}
	i, ok := slices.BinarySearchFunc(c.files, name, func(e entry, n string) int { return strings.Compare(e.Name, n) })
	if !ok {
		return entry{}, fmt.Errorf("%w: %q", ErrNotFound, name)
	}
	return c.files[i], nil
}

// checkName accepts only slash-separated names of the folder's own files: no absolute name,
// no "..", "." or empty element, no backslash (a separator on Windows).
func checkName(name string) error {
	if name == "." || strings.ContainsAny(name, "\\\x00") || !fs.ValidPath(name) {
		return fmt.Errorf("%w: %q", ErrOutside, name)
	}
	return nil
}

// scan walks the folder of root and verifies each file it will serve.
func (c *Catalog) scan(ctx context.Context, root *os.Root) error {
	return fs.WalkDir(root.FS(), ".", func(name string, d fs.DirEntry, err error) error {
		switch {
		case err != nil:
			c.skip(name, "unreadable: "+errors.Unwrap(err).Error())
			return nil
		case d.IsDir():
			return nil
		case checkName(name) != nil:
			c.skip(name, "a name TFTP clients cannot ask for (backslash)")
			return nil
		}
		info, err := root.Stat(name) // follows a symbolic link, but only inside the folder
		switch {
		case err != nil && d.Type()&fs.ModeSymlink != 0:
			c.skip(name, "a symbolic link out of the folder or to nothing")
			return nil
		case err != nil:
			return err
		case !info.Mode().IsRegular():
			c.skip(name, "not a regular file ("+info.Mode().Type().String()+")")
			return nil
		}
		e := entry{File: File{Name: name}, root: root, path: name}
		if err := c.verify(ctx, &e); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		c.files = append(c.files, e)
		return nil
	})
}

func (c *Catalog) skip(name, reason string) {
	c.skipped = append(c.skipped, Skipped{Name: name, Reason: reason})
}

// verify reads a file's served bytes once, through their verification, and describes them
// in e.File (whose Name is set).
func (c *Catalog) verify(ctx context.Context, e *entry) (err error) {
	src, err := c.open(*e)
	if err != nil {
		return err
	}
	defer src.Close()
	var m Meter = nopMeter{}
	if c.opts.Progress != nil {
		m = c.opts.Progress(e.Name, src.Info.RawSize)
	}
	defer func() { m.End(err) }()
	crc, sum := crc32.NewIEEE(), sha256.New()
	in := &countingReader{r: &ctxReader{ctx: ctx, r: src}, m: m}
	n, err := io.Copy(io.MultiWriter(crc, sum), in)
	if err != nil {
		return err
	}
	if n != src.Info.RawSize {
		return fmt.Errorf("%w: %d bytes served, %d expected", ErrChanged, n, src.Info.RawSize)
	}
	e.Format, e.Version, e.SlotClass = src.Info.Format, src.Info.Version, src.Info.SlotClass
	e.Size, e.CRC32, e.FileSize = n, CRC32(crc.Sum32()), src.fileSize
	copy(e.SHA256[:], sum.Sum(nil))
	return nil
}

type nopMeter struct{}

func (nopMeter) Add(int64) {}
func (nopMeter) End(error) {}
