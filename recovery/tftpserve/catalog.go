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
	"slices"
	"strconv"
	"strings"

	"github.com/aduflash/aduflash/image"
)

// Formats of served files.
const (
	FormatAduimg  = "aduimg"  // served as its verified payload
	FormatMCUboot = "mcuboot" // served as it is, once its signature checked
	FormatRaw     = "raw"     // neither: served as it is
)

// File is one file of the catalog, described by the bytes a transfer of it sends.
type File struct {
	Name     string       `json:"name"` // the TFTP name: slash-separated, relative to the folder
	Format   string       `json:"format"`
	Version  string       `json:"version,omitempty"` // a signed image's version
	Size     int64        `json:"size"`              // bytes served: an aduimg's payload size
	CRC32    CRC32        `json:"crc32"`             // of the bytes served (U-Boot's crc32)
	SHA256   image.Digest `json:"sha256"`            // of the bytes served
	FileSize int64        `json:"file_size"`         // the file's own size in the folder
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

// Options of Open.
type Options struct {
	// Keyring holds the keys signed images must verify with. Without one, a folder that
	// holds a signed image is refused (ErrNoTrust).
	Keyring *image.Keyring
	// Progress, if set, is called before each file is verified, with its name and the size
	// it will be served with, and gets the bytes as they are verified.
	Progress func(name string, size int64) Meter
}

// Catalog is the verified content of a folder, fixed when it was opened.
type Catalog struct {
	root    *os.Root
	keyring *image.Keyring
	files   []File // by name
	skipped []Skipped
}

// Open verifies every file of dir (see the package doc) and returns the catalog of what
// will be served. Errors name the file (relative to dir) and wrap the verification's cause.
func Open(ctx context.Context, dir string, o Options) (*Catalog, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, err
	}
	c := &Catalog{root: root, keyring: o.Keyring}
	if err := c.scan(ctx, o.Progress); err != nil {
		root.Close()
		return nil, err
	}
	return c, nil
}

// Close releases the folder.
func (c *Catalog) Close() error { return c.root.Close() }

// Files returns the served files, sorted by name.
func (c *Catalog) Files() []File { return slices.Clone(c.files) }

// Skipped returns the entries of the folder that are not served.
func (c *Catalog) Skipped() []Skipped { return slices.Clone(c.skipped) }

// Lookup returns the catalog's file of a requested name: ErrOutside for a name that is not a
// clean relative name (it could leave the folder), ErrNotFound for one the catalog lacks.
func (c *Catalog) Lookup(name string) (File, error) {
	if err := checkName(name); err != nil {
		return File{}, err
	}
	i, ok := slices.BinarySearchFunc(c.files, name, func(f File, n string) int { return strings.Compare(f.Name, n) })
	if !ok {
		return File{}, fmt.Errorf("%w: %q", ErrNotFound, name)
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

// scan walks the folder and verifies each file it will serve.
func (c *Catalog) scan(ctx context.Context, progress func(string, int64) Meter) error {
	return fs.WalkDir(c.root.FS(), ".", func(name string, d fs.DirEntry, err error) error {
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
		info, err := c.root.Stat(name) // follows a symbolic link, but only inside the folder
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
		f, err := c.verify(ctx, name, progress)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		c.files = append(c.files, f)
		return nil
	})
}

func (c *Catalog) skip(name, reason string) {
	c.skipped = append(c.skipped, Skipped{Name: name, Reason: reason})
}

// verify reads a file's served bytes once, through their verification, and describes them.
func (c *Catalog) verify(ctx context.Context, name string, progress func(string, int64) Meter) (f File, err error) {
	src, err := c.open(name)
	if err != nil {
		return File{}, err
	}
	defer src.Close()
	var m Meter = nopMeter{}
	if progress != nil {
		m = progress(name, src.size)
	}
	defer func() { m.End(err) }()
	crc, sum := crc32.NewIEEE(), sha256.New()
	in := &countingReader{r: &ctxReader{ctx: ctx, r: src}, m: m}
	n, err := io.Copy(io.MultiWriter(crc, sum), in)
	if err != nil {
		return File{}, err
	}
	if n != src.size {
		return File{}, fmt.Errorf("%w: %d bytes served, %d expected", ErrChanged, n, src.size)
	}
	f = File{Name: name, Format: src.format, Version: src.version, Size: n, CRC32: CRC32(crc.Sum32()), FileSize: src.fileSize}
	copy(f.SHA256[:], sum.Sum(nil))
	return f, nil
}

type nopMeter struct{}

func (nopMeter) Add(int64) {}
func (nopMeter) End(error) {}
