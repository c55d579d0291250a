package install

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"

	"github.com/aduflash/aduflash/download"
	"github.com/aduflash/aduflash/internal/readahead"
)

// input is the file's bytes from the resume point on, with the download state after the
// bytes read so far. Its errors (but io.EOF) wrap ErrDownload, ErrFileHash or ErrRead.
type input interface {
	io.Reader
	// State is the download's state after the bytes read so far. Once the input streams,
	// it is exact at the stops and at the end only (the download is read ahead); elsewhere
	// its offset is not the reader's, which checkpoint refuses.
	State() download.State
	// head returns the file's first n bytes (fewer for a shorter file) and the file from its
	// start.
	head(n int) ([]byte, io.Reader, error)
	// stream is called when the payload starts: what the format needed before it (a header)
	// is read. From then on the input is read ahead of its reader in a goroutine, and no
	// Read runs past a stop: stop(off) is the first file offset after off where State must
	// be exact (nil: none).
	stream(stop func(off int64) int64)
	// close stops the reading ahead and ends the input; it may be called more than once,
	// and while another goroutine reads (which then fails).
	close()
}

// openInput opens the download (from the resume record's state) or the local file.
func (r *run) openInput() (input, error) {
	if r.src.Adaptive != nil {
		a := &assembly{r: r, ad: r.src.Adaptive, x: r.src.Adaptive.Index, baseDownloaded: r.rec.Downloaded}
		if r.rec.Adaptive != nil {
			a.base = *r.rec.Adaptive
		}
		return a, nil
	}
	if r.src.Local != nil {
		return &local{ra: r.src.Local, size: r.src.Size}, nil
	}
	if r.src.Copy != nil {
		l := &local{ra: r.src.Copy, size: r.src.Size}
		if r.resume != nil {
			l.off = r.resume.Download.Offset
		}
		return l, nil
	}
	req := download.Request{URL: r.src.URL, Size: r.src.Size, SHA256: r.src.SHA256, Client: r.client(),
		Retry: r.in.Retry, StallTimeout: r.in.StallTimeout}
	if r.resume != nil {
		st := r.resume.Download
		req.Resume = &st
	}
	// The download has a context of its own, so that close ends a request the read-ahead
	// waits for.
	ctx, cancel := context.WithCancel(r.ctx)
	d, err := download.Open(ctx, req)
	if err != nil {
		cancel()
		if r.resume != nil && errors.Is(err, download.ErrBadState) {
			return nil, errStale
		}
		return nil, fmt.Errorf("%w: %w", ErrDownload, err)
	}
	return &fetched{d: d, from: d.State().Offset, cancel: cancel}, nil
}

// client is the installer's HTTP client, or DefaultHTTPClient.
func (r *run) client() *http.Client {
	if r.in.HTTP != nil {
		return r.in.HTTP
	}
	return DefaultHTTPClient()
}

// closeInput ends the input and counts the bytes it fetched.
func (r *run) closeInput() {
	r.input.close()
	switch in := r.input.(type) {
	case *fetched:
		r.rec.Downloaded += in.d.State().Offset - in.from
	case *assembly:
		in.count(&r.rec)
	}
}

// fetched is a download; its errors say which stage failed. Once it streams, a goroutine
// reads it ahead (the HTTP body and the file hash on one core, what follows on another),
// marking the download's state after every block.
type fetched struct {
	d      *download.Reader
	from   int64
	cancel context.CancelFunc
	ahead  *readahead.Reader[download.State]
	once   sync.Once
}

// The download's read-ahead: blocks of 256 KiB, four ahead (the agent's memory is small).
const (
	fetchBlock = 256 << 10
	fetchDepth = 4
)

func (f *fetched) Read(p []byte) (int, error) {
	var n int
	var err error
	if f.ahead != nil {
		n, err = f.ahead.Read(p)
	} else {
		n, err = f.d.Read(p)
	}
	switch {
	case err == nil, err == io.EOF:
	case errors.Is(err, download.ErrHashMismatch):
		err = fmt.Errorf("%w: %w", ErrFileHash, err)
	default:
		err = fmt.Errorf("%w: %w", ErrDownload, err)
	}
	return n, err
}

func (f *fetched) State() download.State {
	if f.ahead == nil {
		return f.d.State()
	}
	st, _ := f.ahead.Mark()
	return st
}

// head reads the first bytes and replays them before the rest.
func (f *fetched) head(n int) ([]byte, io.Reader, error) {
	prefix := make([]byte, n)
	k, err := io.ReadFull(f, prefix)
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
		return nil, nil, err
	}
	return prefix[:k], io.MultiReader(bytes.NewReader(prefix[:k]), f), nil
}

func (f *fetched) stream(stop func(off int64) int64) {
	base := f.d.State().Offset
	m := readahead.Marks[download.State]{Mark: f.d.State}
	if stop != nil {
		m.Stop = func(off int64) int64 { return stop(base+off) - base }
	}
	f.ahead = readahead.NewMarked(f.d, fetchBlock, fetchDepth, m)
}

func (f *fetched) close() {
	f.once.Do(func() {
		f.cancel()
		if f.ahead != nil {
			f.ahead.Close()
		}
		f.d.Close()
	})
}

// local is a file or device read once from its start (a slot copy: from where it resumes):
// straight while the format reads what it needs first (a header the image may be refused
// for), then ahead of the slot writer in a goroutine.
type local struct {
	ra    io.ReaderAt
	size  int64
	off   int64
	ahead io.ReadCloser
}

// The read-ahead: blocks of a unit of the block slot writer, four ahead.
const (
	aheadBlock = 1 << 20
	aheadDepth = 4
)

func (l *local) Read(p []byte) (int, error) {
	var n int
	var err error
	if l.ahead != nil {
		n, err = l.ahead.Read(p)
	} else {
		n, err = io.NewSectionReader(l.ra, l.off, l.size-l.off).Read(p)
	}
	l.off += int64(n)
	return n, l.wrap(err)
}

// WriteTo hands the read-ahead blocks to w as they are, whole units for the slot writer.
func (l *local) WriteTo(w io.Writer) (int64, error) {
	l.stream(nil)
	n, err := l.ahead.(io.WriterTo).WriteTo(w)
	l.off += n
	return n, l.wrap(err)
}

func (l *local) wrap(err error) error {
	if err != nil && err != io.EOF {
		err = fmt.Errorf("%w: %w", ErrRead, err)
	}
	return err
}

func (l *local) State() download.State { return download.State{Size: l.size, Offset: l.off} }

// head reads the first bytes without consuming them.
func (l *local) head(n int) ([]byte, io.Reader, error) {
	prefix := make([]byte, min(int64(n), l.size))
	k, err := l.ra.ReadAt(prefix, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, nil, l.wrap(err)
	}
	return prefix[:k], l, nil
}

// stream starts the read-ahead; a local file is not resumed, so it has no stops.
func (l *local) stream(func(int64) int64) {
	if l.ahead == nil {
		l.ahead = readahead.New(io.NewSectionReader(l.ra, l.off, l.size-l.off), aheadBlock, aheadDepth)
	}
}

func (l *local) close() {
	if l.ahead != nil {
		l.ahead.Close()
	}
}
