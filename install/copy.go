package install

import (
	"errors"
	"fmt"
	"io"

	"github.com/aduflash/aduflash/slots"
)

// slotCopy: the first Size bytes of another slot (Source.Copy) as they are, resumable at raw
// units, read back against the source (read once more), and not written at all when the
// slot holds them already.
type slotCopy struct{}

func (slotCopy) open(r *run, src io.Reader) (*payload, error) { return copyPayload(r, src, 0), nil }

func (slotCopy) resume(r *run, src io.Reader, rec *Record) (*payload, error) {
	c := rec.Cursor
	if r.src.Copy == nil || c.ChunkSize != rawUnit || c.Size != r.src.Size || c.Offset != rec.Download.Offset {
		return nil, errStale
	}
	return copyPayload(r, src, c.Offset), nil
}

func copyPayload(r *run, src io.Reader, off int64) *payload {
	from, size := r.src.Copy, r.src.Size
	return &payload{format: FormatCopy, r: &unitReader{r: src, off: off}, size: size, info: &Info{Format: FormatCopy, RawSize: size},
		unit: rawUnit, resumable: true, at: func(c slots.Cursor) int64 { return c.Offset },
		check: func(_ sink, ra io.ReaderAt) error { return compareSlot(ra, from, size) },
		holds: func(t *slots.Target) (bool, error) {
			spare, err := t.OpenReader()
			if err != nil {
				return false, nil // unreadable: write it
			}
			defer spare.Close()
			err = compareSlot(spare, from, size)
			if errors.Is(err, ErrRead) {
				return false, err
			}
			return err == nil, nil // a difference, or a spare that cannot be read: write it
		}}
}

// unitReader never reads across a multiple of rawUnit, so that the source stands exactly at
// a cursor's offset when the slot writer hands it out (the local input's own state is where
// its reader stands).
type unitReader struct {
	r   io.Reader
	off int64
}

func (u *unitReader) Read(p []byte) (int, error) {
	next := (u.off/rawUnit + 1) * rawUnit
	if int64(len(p)) > next-u.off {
		p = p[:next-u.off]
	}
	n, err := u.r.Read(p)
	u.off += int64(n)
	return n, err
}

// compareSlot compares the first size bytes of slot with those of from: a difference is
// slots.ErrMismatch, an error reading from wraps ErrRead.
func compareSlot(slot, from io.ReaderAt, size int64) error {
	return slots.VerifyReader(slot, size, readErrors{io.NewSectionReader(from, 0, size)})
}

// readErrors wraps the errors of a source slot's reads in ErrRead.
type readErrors struct{ r io.Reader }

func (e readErrors) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err != nil && err != io.EOF {
		err = fmt.Errorf("%w: %w", ErrRead, err)
	}
	return n, err
}

// CopySize is how many bytes of slot src a copy into a slot that takes capacity bytes (0: no
// limit) copies when nothing tells how much of src is content (a factory image): all that src
// holds, or, when that is more than the capacity (raw NAND banks with different bad blocks,
// a smaller partition), the capacity, provided every byte of src past it is erased (0xFF):
// else the copy would lose content, and it fails with slots.ErrTooLarge.
func CopySize(src slots.Reader, capacity int64) (int64, error) {
	n := src.Size()
	if capacity <= 0 || n <= capacity {
		return n, nil
	}
	buf := make([]byte, 1<<20)
	last := int64(-1) // the last byte past the capacity that is not erased
	for off := capacity; off < n; off += int64(len(buf)) {
		b := buf[:min(int64(len(buf)), n-off)]
		if _, err := src.ReadAt(b, off); err != nil {
			return 0, fmt.Errorf("%w: %w", ErrRead, err)
		}
		for i := len(b) - 1; i >= 0 && last < off; i-- {
			if b[i] != 0xFF {
				last = off + int64(i)
			}
		}
	}
	if last >= 0 {
		return 0, fmt.Errorf("%w: the slot holds data up to byte %d, the spare slot takes %d bytes", slots.ErrTooLarge, last, capacity)
	}
	return capacity, nil
}
