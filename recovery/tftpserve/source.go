package tftpserve

import (
	"context"
	"crypto/sha256"
	"fmt"
	"hash"
	"io"
	"os"

	"github.com/aduflash/aduflash/image"
	"github.com/aduflash/aduflash/install"
)

// source is a file of the catalog opened for the bytes it is served as, verified as they
// stream (install.OpenPayload): Open reads it once to make the catalog, and every transfer
// reads it again.
type source struct {
	*install.Payload
	f        *os.File
	fileSize int64
}

func (s *source) Close() error { return s.f.Close() }

// open opens a file of the catalog (never outside its folder: os.Root) and the reader of its
// served bytes: an aduimg's verified payload, an MCUboot image checked as it streams, or the
// file as it is.
func (c *Catalog) open(e entry) (*source, error) {
	f, err := e.root.OpenFile(e.path, openFlags, 0)
	if err != nil {
		return nil, err
	}
	s, err := c.reader(f)
	if err != nil {
		f.Close()
		return nil, err
	}
	return s, nil
}

func (c *Catalog) reader(f *os.File) (*source, error) {
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%w: not a regular file any more", ErrChanged)
	}
	prefix := make([]byte, install.SniffSize)
	n, _ := f.ReadAt(prefix, 0)
	raw := c.opts.Raw || install.Sniff(prefix[:n]) == ""
	if !raw && c.opts.Keyring == nil {
		return nil, ErrNoTrust
	}
	p, err := install.OpenPayload(f, st.Size(), c.opts.Keyring, raw)
	if err != nil {
		return nil, err
	}
	return &source{Payload: p, f: f, fileSize: st.Size()}, nil
}

// pinned hands out the bytes of r, holding the last one back until r ended and their SHA-256
// equals want: a TFTP client completes a transfer only with its last (short) block, so it
// never completes one that differs from the catalog.
type pinned struct {
	r       io.Reader
	sum     hash.Hash
	want    image.Digest
	buf     []byte
	pending []byte // read, not handed out yet; its last byte is held
	err     error  // r's end: io.EOF once the sum matched
}

func newPinned(r io.Reader, want image.Digest) *pinned {
	return &pinned{r: r, sum: sha256.New(), want: want, buf: make([]byte, 64<<10)}
}

func (p *pinned) Read(b []byte) (int, error) {
	for len(p.pending) < 2 && p.err == nil {
		p.fill()
	}
	n := len(p.pending) - 1
	if p.err == io.EOF {
		n = len(p.pending)
	}
	if n <= 0 {
		return 0, p.err
	}
	n = copy(b, p.pending[:n])
	p.pending = p.pending[n:]
	return n, nil
}

// fill reads more after what is pending, and checks the sum at the end.
func (p *pinned) fill() {
	k := copy(p.buf, p.pending)
	n, err := p.r.Read(p.buf[k:])
	p.sum.Write(p.buf[k : k+n])
	p.pending = p.buf[:k+n]
	if err == io.EOF {
		var got image.Digest
		copy(got[:], p.sum.Sum(nil))
		if got != p.want {
			err = fmt.Errorf("%w: SHA-256 %s, the catalog says %s", ErrChanged, got, p.want)
		}
	}
	p.err = err
}

// ctxReader ends a read when its context ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c *ctxReader) Read(b []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(b)
}

// countingReader tells a Meter what passes.
type countingReader struct {
	r io.Reader
	m Meter
}

func (c *countingReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.m.Add(int64(n))
	return n, err
}
