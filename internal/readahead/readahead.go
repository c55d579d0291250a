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
func New(r io.Reader, size, depth int) io.ReadCloser {
	ra := &readAhead{
		full: make(chan block, depth),
		free: make(chan []byte, depth+1),
		stop: make(chan struct{}),
	}
	for i := 0; i < depth+1; i++ {
		ra.free <- make([]byte, size)
	}
	ra.wg.Add(1)
	go ra.fill(r)
	return ra
}

type block struct {
	buf []byte
	n   int
	err error
}

type readAhead struct {
	full chan block
	free chan []byte
	stop chan struct{}
	wg   sync.WaitGroup
	cur  block
	off  int
	err  error
	once sync.Once
}

func (ra *readAhead) fill(r io.Reader) {
	defer ra.wg.Done()
	defer close(ra.full)
	for {
		var buf []byte
		select {
		case buf = <-ra.free:
		case <-ra.stop:
			return
		}
		n, err := io.ReadFull(r, buf)
		if err == io.ErrUnexpectedEOF {
			err = io.EOF
		}
		select {
		case ra.full <- block{buf: buf, n: n, err: err}:
		case <-ra.stop:
			return
		}
		if err != nil {
			return
		}
	}
}

// Read implements io.Reader.
func (ra *readAhead) Read(p []byte) (int, error) {
	for ra.off == ra.cur.n {
		if ra.err != nil {
			return 0, ra.err
		}
		if ra.cur.buf != nil {
			ra.free <- ra.cur.buf
		}
		b, ok := <-ra.full
		if !ok {
			ra.cur, ra.err = block{}, io.ErrClosedPipe
			return 0, ra.err
		}
		ra.cur, ra.off, ra.err = b, 0, b.err
		if b.n == 0 && b.err != nil {
			return 0, b.err
		}
	}
	n := copy(p, ra.cur.buf[ra.off:ra.cur.n])
	ra.off += n
	return n, nil
}

// Close stops the reading goroutine and waits for it.
func (ra *readAhead) Close() error {
	ra.once.Do(func() { close(ra.stop) })
	ra.wg.Wait()
	return nil
}

// WriteTo hands the read-ahead blocks straight to w, sparing io.Copy a copy of every byte.
func (ra *readAhead) WriteTo(w io.Writer) (int64, error) {
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
		if ra.cur.buf != nil {
			ra.free <- ra.cur.buf
		}
		b, ok := <-ra.full
		if !ok {
			ra.cur, ra.err = block{}, io.ErrClosedPipe
			return total, ra.err
		}
		ra.cur, ra.off, ra.err = b, 0, b.err
	}
}
