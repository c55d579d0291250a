package slots

import (
	"bytes"
	"errors"
	"fmt"
	"hash/crc32"
	"io"

	"github.com/aduflash/aduflash/mtd"
)

// Flash is raw flash as a writer needs it: the method set of *mtd.Device, which
// *mtdsim.Flash has too.
type Flash interface {
	Info() mtd.Info
	ReadAt(p []byte, off int64) (int, error)
	WriteAt(p []byte, off int64) (int, error)
	Erase(off, length int64) error
	IsBad(off int64) (bool, error)
	MarkBad(off int64) error
	Sync() error
	Close() error
}

// BlockDevice is a block device, partition or file: *os.File and *mtdsim.Block have it.
type BlockDevice interface {
	io.ReaderAt
	io.WriterAt
	Sync() error
	Close() error
}

// Volume is a UBI volume: *mtd.Volume has it.
type Volume interface {
	Update(size int64) (io.WriteCloser, error)
	ReadAt(p []byte, off int64) (int, error)
	ReservedSize() int64
}

// Cursor is a resumable position of a write. Everything before Offset is in the slot,
// synced and (on flash) read back. Persist it (it marshals to JSON) and pass it to
// OpenWriter to continue; then feed the payload from Offset, i.e. from image chunk Chunk.
type Cursor struct {
	Slot      string `json:"slot"`                 // slot name (or target path)
	Size      int64  `json:"size"`                 // bytes of the whole write
	Offset    int64  `json:"offset"`               // logical bytes written, synced and verified
	Physical  int64  `json:"physical"`             // storage offset where the next byte goes (after skipped bad blocks)
	Chunk     int    `json:"chunk"`                // image chunk index that starts at Offset (Offset / ChunkSize)
	ChunkSize int    `json:"chunk_size,omitempty"` // image chunk size the cursor positions respect (0: none)
}

// Done reports whether the cursor covers the whole write.
func (c Cursor) Done() bool { return c.Offset == c.Size }

// Stats count what a writer did.
type Stats struct {
	BytesWritten  int64 `json:"bytes_written"`  // bytes programmed / written to the storage
	BytesSkipped  int64 `json:"bytes_skipped"`  // bytes already identical, not written
	UnitsWritten  int   `json:"units_written"`  // erase blocks (flash) or buffer units (block) written
	UnitsSkipped  int   `json:"units_skipped"`  // ... skipped because identical
	Erases        int   `json:"erases"`         // flash erases issued
	BadSkipped    int   `json:"bad_skipped"`    // bad blocks stepped over
	BadGrown      int   `json:"bad_grown"`      // blocks marked bad during this write
	Syncs         int   `json:"syncs"`          // syncs
	Cursors       int   `json:"cursors"`        // cursors handed to the cursor function
	UnitSize      int   `json:"unit_size"`      // erase block or buffer unit
	ReserveBlocks int   `json:"reserve_blocks"` // NAND reserve in force
}

// Writer streams exactly the announced size into a slot. Write the payload from
// Cursor().Offset on, then Finish; Verify, VerifyWritten and ReadAt read the slot back
// (logical offsets; an aduimg header checks its chunks over ReadAt) until Close, which releases the storage. A Writer is not safe for
// concurrent use. After an error (e.g. a power cut) only Close is useful.
type Writer interface {
	io.Writer
	io.ReaderAt
	// Cursor returns the last resumable position.
	Cursor() Cursor
	// Finish writes the buffered rest and syncs; it fails if fewer bytes than announced came.
	Finish() error
	// Verify compares the slot's first Size bytes with r (which must hold Size bytes).
	Verify(r io.Reader) error
	// VerifyWritten reads back every unit this writer wrote and has not read back yet and
	// checks it against the CRC-32C of the data it was given. Units found identical (and
	// skipped) were compared byte for byte, and flash blocks are read back as they are
	// programmed, so after a write without resume this covers the whole payload without the
	// caller reading the payload again. Units written before a resume are not covered: use
	// Verify, or (*image.Header).VerifyAt over the writer, for them.
	VerifyWritten() error
	// Capacity is the most the slot takes (after the bad-block reserve).
	Capacity() int64
	Stats() Stats
	Close() error
}

// Option tunes a writer.
type Option func(*options)

type options struct {
	chunkSize int
	syncEvery int64
	onCursor  func(Cursor) error
	unit      int
	reserve   int
	noSkip    bool
	noCRC     bool
}

// WithChunkSize makes resume cursors fall on image chunk boundaries (aduimg Header.ChunkSize).
func WithChunkSize(n int) Option { return func(o *options) { o.chunkSize = n } }

// WithSyncInterval syncs and offers a cursor every n bytes, at the next unit and chunk
// boundary, when a WithCursorFunc keeps the cursors; without one, Finish syncs once.
func WithSyncInterval(n int64) Option { return func(o *options) { o.syncEvery = n } }

// WithCursorFunc calls fn with every new resume cursor, after the sync that makes it true;
// an error from fn stops the write.
func WithCursorFunc(fn func(Cursor) error) Option { return func(o *options) { o.onCursor = fn } }

// WithUnit sets the block-device write unit (default 1 MiB): the read-compare and write size.
func WithUnit(n int) Option { return func(o *options) { o.unit = n } }

// WithReserve sets the NAND bad-block reserve in blocks (overrides the config).
func WithReserve(n int) Option { return func(o *options) { o.reserve = n } }

// WithoutReadBack tells the writer that VerifyWritten will not be called: it then keeps no
// checksum of the units it writes (CRC-32C of every byte, a tenth of a fast write's time).
// Verify and reads over ReadAt, which compare with the source, still work.
func WithoutReadBack() Option { return func(o *options) { o.noCRC = true } }

// WithoutSkip writes every unit even when its content is already identical.
func WithoutSkip() Option { return func(o *options) { o.noSkip = true } }

// backend writes whole units at the writer's position.
type backend interface {
	unit() int
	// commit stores data (≤ unit bytes) as logical unit at logical offset off, at the
	// current physical position, and advances that position.
	commit(off int64, data []byte, st *Stats) error
	physical() int64
	sync() error
	// readsBack: commit reads every unit it writes back itself.
	readsBack() bool
	readAt(p []byte, off int64) (int, error)
	capacity() int64
	close() error
}

// streamWriter is the common layer: size limit, unit buffering, sync points and cursors.
type streamWriter struct {
	be      backend
	o       options
	name    string
	size    int64
	off     int64 // logical bytes committed
	buf     []byte
	cur     Cursor
	last    int64 // offset of the last sync
	st      Stats
	err     error
	done    bool
	closed  bool
	cleanup func() error
	pending []pendingUnit // units written but not read back yet
}

type pendingUnit struct {
	off int64
	n   int
	crc uint32
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func newStreamWriter(be backend, name string, size int64, resume *Cursor, o options) (*streamWriter, error) {
	u := be.unit()
	if o.chunkSize < 0 {
		return nil, fmt.Errorf("slots: chunk size %d", o.chunkSize)
	}
	if size < 0 {
		return nil, fmt.Errorf("slots: negative size %d", size)
	}
	if c := be.capacity(); size > c {
		return nil, fmt.Errorf("%w: %s: the payload has %d bytes, the slot takes %d", ErrTooLarge, name, size, c)
	}
	w := &streamWriter{be: be, o: o, name: name, size: size, buf: make([]byte, 0, u)}
	w.st.UnitSize = u
	w.cur = Cursor{Slot: name, Size: size, Physical: be.physical(), ChunkSize: o.chunkSize}
	if resume != nil {
		w.off, w.last, w.cur = resume.Offset, resume.Offset, *resume
		w.cur.ChunkSize = o.chunkSize
		if o.chunkSize > 0 {
			w.cur.Chunk = int(resume.Offset / int64(o.chunkSize))
		}
	}
	return w, nil
}

func (w *streamWriter) Cursor() Cursor  { return w.cur }
func (w *streamWriter) Capacity() int64 { return w.be.capacity() }
func (w *streamWriter) Stats() Stats    { return w.st }

func (w *streamWriter) Write(p []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	if w.done || w.closed {
		return 0, errors.New("slots: write after Finish or Close")
	}
	n := 0
	if rest := w.size - w.off - int64(len(w.buf)); int64(len(p)) > rest {
		w.err = fmt.Errorf("%w: %s: more than the announced %d bytes", ErrTooLarge, w.name, w.size)
		p = p[:rest]
	}
	u := w.be.unit()
	for len(p) > 0 {
		if len(w.buf) == 0 && len(p) >= u {
			// A whole unit straight from the caller's buffer.
			if err := w.commit(p[:u]); err != nil {
				return n, err
			}
			p, n = p[u:], n+u
			continue
		}
		k := copy(w.buf[len(w.buf):u], p)
		w.buf = w.buf[:len(w.buf)+k]
		p, n = p[k:], n+k
		if len(w.buf) == u {
			if err := w.commit(w.buf); err != nil {
				return n, err
			}
			w.buf = w.buf[:0]
		}
	}
	if w.err != nil {
		return n, w.err
	}
	return n, nil
}

func (w *streamWriter) commit(data []byte) error {
	written := w.st.UnitsWritten
	if err := w.be.commit(w.off, data, &w.st); err != nil {
		w.err = err
		return err
	}
	if w.st.UnitsWritten != written && !w.be.readsBack() && !w.o.noCRC {
		w.pending = append(w.pending, pendingUnit{off: w.off, n: len(data), crc: crc32.Checksum(data, castagnoli)})
	}
	w.off += int64(len(data))
	// Sync points make a resume cursor true; with nobody keeping cursors (no WithCursorFunc)
	// they would only cost time, so the data is synced once, by Finish.
	if w.o.onCursor != nil && w.off-w.last >= w.o.syncEvery && (w.o.chunkSize == 0 || w.off%int64(w.o.chunkSize) == 0) {
		return w.syncPoint()
	}
	return nil
}

func (w *streamWriter) syncPoint() error {
	if err := w.be.sync(); err != nil {
		w.err = err
		return err
	}
	w.st.Syncs++
	w.last = w.off
	w.cur.Offset, w.cur.Physical = w.off, w.be.physical()
	if w.o.chunkSize > 0 {
		w.cur.Chunk = int(w.off / int64(w.o.chunkSize))
		if w.off == w.size {
			w.cur.Chunk = int((w.size + int64(w.o.chunkSize) - 1) / int64(w.o.chunkSize))
		}
	}
	if w.o.onCursor != nil {
		w.st.Cursors++
		if err := w.o.onCursor(w.cur); err != nil {
			w.err = fmt.Errorf("slots: saving the cursor: %w", err)
			return w.err
		}
	}
	return nil
}

func (w *streamWriter) Finish() error {
	if w.err != nil {
		return w.err
	}
	if w.done {
		return nil
	}
	if len(w.buf) > 0 {
		if err := w.commit(w.buf); err != nil {
			return err
		}
		w.buf = w.buf[:0]
	}
	if w.off != w.size {
		w.err = fmt.Errorf("slots: %s: %d of %d bytes written", w.name, w.off, w.size)
		return w.err
	}
	if w.cur.Offset != w.size || w.st.Syncs == 0 {
		if err := w.syncPoint(); err != nil {
			return err
		}
	}
	w.done = true
	return nil
}

func (w *streamWriter) ReadAt(p []byte, off int64) (int, error) {
	if w.closed {
		return 0, errors.New("slots: read after Close")
	}
	return readWritten(w.be.readAt, w.size, p, off)
}

func (w *streamWriter) Verify(r io.Reader) error { return VerifyReader(w, w.size, r) }

func (w *streamWriter) VerifyWritten() error {
	if w.o.noCRC && !w.be.readsBack() {
		return fmt.Errorf("slots: %s: written WithoutReadBack: no checksums to verify against", w.name)
	}
	buf := make([]byte, w.be.unit())
	for len(w.pending) > 0 {
		u := w.pending[0]
		if _, err := readFull(w.ReadAt, buf[:u.n], u.off); err != nil {
			return fmt.Errorf("slots: verify: reading %s at %d: %w", w.name, u.off, err)
		}
		if crc32.Checksum(buf[:u.n], castagnoli) != u.crc {
			return fmt.Errorf("%w: %s: the %d bytes at %d do not read back as written", ErrMismatch, w.name, u.n, u.off)
		}
		w.pending = w.pending[1:]
	}
	return nil
}

func (w *streamWriter) Close() error {
	if w.closed {
		return nil
	}
	w.closed = true
	err := w.be.close()
	if w.cleanup != nil {
		if cerr := w.cleanup(); err == nil {
			err = cerr
		}
	}
	return err
}

// VerifyReader compares the first size bytes of ra with r, 1 MiB at a time.
func VerifyReader(ra io.ReaderAt, size int64, r io.Reader) error {
	const bs = 1 << 20
	a, b := make([]byte, bs), make([]byte, bs)
	for off := int64(0); off < size; off += bs {
		n := int(min(bs, size-off))
		if _, err := io.ReadFull(r, b[:n]); err != nil {
			return fmt.Errorf("slots: verify: reading the expected data at %d: %w", off, err)
		}
		if _, err := readFull(ra.ReadAt, a[:n], off); err != nil {
			return fmt.Errorf("slots: verify: reading the slot at %d: %w", off, err)
		}
		if !bytes.Equal(a[:n], b[:n]) {
			i := 0
			for a[i] == b[i] {
				i++
			}
			return fmt.Errorf("%w: first difference at byte %d", ErrMismatch, off+int64(i))
		}
	}
	return nil
}

// readWritten is a writer's ReadAt over the size bytes written so far: it fills p from off,
// up to size, with readFull, and says io.EOF when p reaches past size.
func readWritten(read func([]byte, int64) (int, error), size int64, p []byte, off int64) (int, error) {
	if off >= size {
		return 0, io.EOF
	}
	want := len(p)
	if rest := size - off; int64(want) > rest {
		p = p[:rest]
	}
	n, err := readFull(read, p, off)
	if err == nil && n < want {
		err = io.EOF
	}
	return n, err
}

// readFull reads len(p) bytes at off with read (a ReadAt). A read that returns fewer bytes
// without saying why fails with io.ErrUnexpectedEOF naming the first byte missing, so that
// no caller compares a buffer with what an earlier read left in it.
func readFull(read func([]byte, int64) (int, error), p []byte, off int64) (int, error) {
	n, err := read(p, off)
	switch {
	case n == len(p) && (err == nil || err == io.EOF):
		return n, nil
	case err == nil || err == io.EOF:
		return n, fmt.Errorf("%w: the read of %d bytes at %d stopped at %d", io.ErrUnexpectedEOF, len(p), off, off+int64(n))
	}
	return n, err
}
