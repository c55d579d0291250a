// Package readahead reads a stream in a goroutine ahead of its consumer, so that reading
// the input overlaps with what the consumer does with it.
package readahead

import (
	"io"
	"sync"
)

// New reads r in a goroutine, up to depth blocks of size bytes ahead of the consumer,
// so that reading the input overlaps with whatever the consumer does with it (on two cores,
// reading the next MiB of an image while the current one is written). Close stops the
// goroutine; it must be called.
func New(r io.Reader, size, depth int) *Reader[struct{}] {
	return NewMarked(r, size, depth, Marks[struct{}]{})
}

// Marks let a consumer know, at the places of its choosing, what the source's own state was
// when it stood there, while the source is already read further: a download's resume point
// at a chunk boundary, say.
type Marks[M any] struct {
	// Stop returns the first stop after off (bytes read from the source so far): no block
	// runs past it. Nil: no stops.
	Stop func(off int64) int64
	// Mark, if set, is called after each block that ends at a stop or ends the stream, in
	// the reading goroutine (between two reads of the source); Reader.Mark hands it to the
	// consumer at that block's end.
	Mark func() M
}

// NewMarked is New with blocks that end at m's stops, each marked as it is read.
func NewMarked[M any](r io.Reader, size, depth int, m Marks[M]) *Reader[M] {
	ra := &Reader[M]{
		full:  make(chan block[M], depth),
		free:  make(chan []byte, depth+1),
		stop:  make(chan struct{}),
		marks: m,
	}
	for i := 0; i < depth+1; i++ {
		ra.free <- make([]byte, size)
	}
	ra.wg.Add(1)
	go ra.fill(r)
	return ra
}

type block[M any] struct {
	buf    []byte
	n      int
	err    error
	mark   M
	marked bool
}

// Reader is a read-ahead of a stream; M is the type of its marks (struct{} without). Its
// Read, WriteTo and Mark belong to one consumer goroutine; Close may come from another.
type Reader[M any] struct {
	full  chan block[M]
	free  chan []byte
	stop  chan struct{}
	marks Marks[M]
	wg    sync.WaitGroup
	cur   block[M]
	seen  bool // cur is a block of the source, not the zero block before the first
	off   int
	err   error
	once  sync.Once
}

func (ra *Reader[M]) fill(r io.Reader) {
	defer ra.wg.Done()
	defer close(ra.full)
	var off int64
	for {
		var buf []byte
		select {
		case buf = <-ra.free:
		case <-ra.stop:
			return
		}
		stop := int64(-1)
		if ra.marks.Stop != nil {
			stop = ra.marks.Stop(off)
			if rest := stop - off; rest > 0 && rest < int64(len(buf)) {
				buf = buf[:rest]
			}
		}
		n, err := io.ReadFull(r, buf)
		if err == io.ErrUnexpectedEOF {
			err = io.EOF
		}
		off += int64(n)
		b := block[M]{buf: buf[:cap(buf)], n: n, err: err}
		if ra.marks.Mark != nil && (off == stop || err != nil) {
			b.mark, b.marked = ra.marks.Mark(), true
		}
		select {
		case ra.full <- b:
		case <-ra.stop:
			return
		}
		if err != nil {
			return
		}
	}
}

// Read implements io.Reader.
func (ra *Reader[M]) Read(p []byte) (int, error) {
	for ra.off == ra.cur.n {
		if ra.err != nil {
			return 0, ra.err
		}
		if err := ra.next(); err != nil {
			return 0, err
		}
		if ra.cur.n == 0 && ra.cur.err != nil {
			return 0, ra.cur.err
		}
	}
	n := copy(p, ra.cur.buf[ra.off:ra.cur.n])
	ra.off += n
	return n, nil
}

// next hands the consumed block back and takes the next one.
func (ra *Reader[M]) next() error {
	if ra.cur.buf != nil {
		ra.free <- ra.cur.buf
	}
	b, ok := <-ra.full
	if !ok {
		ra.cur, ra.seen, ra.err = block[M]{}, false, io.ErrClosedPipe
		return ra.err
	}
	ra.cur, ra.seen, ra.off, ra.err = b, true, 0, b.err
	return nil
}

// Mark returns the mark taken after the block whose end the consumer stands at, and
// whether there is one: only at a stop and at the end of the stream.
func (ra *Reader[M]) Mark() (M, bool) {
	return ra.cur.mark, ra.seen && ra.off == ra.cur.n && ra.cur.marked
}

// Close stops the reading goroutine and waits for it.
func (ra *Reader[M]) Close() error {
	ra.once.Do(func() { close(ra.stop) })
	ra.wg.Wait()
	return nil
}

// WriteTo hands the read-ahead blocks straight to w, sparing io.Copy a copy of every byte.
func (ra *Reader[M]) WriteTo(w io.Writer) (int64, error) {
	var total int64
	for {
		if ra.off < ra.cur.n {
			n, err := w.Write(ra.cur.buf[ra.off:ra.cur.n])
			ra.off += n
			total += int64(n)
			if err != nil {
				return total, err
			}
		}
		if ra.err != nil {
			if ra.err == io.EOF {
				return total, nil
			}
			return total, ra.err
		}
		if err := ra.next(); err != nil {
			return total, err
		}
	}
}
