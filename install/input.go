package install

import (
	"errors"
	"fmt"
	"io"

	"github.com/aduflash/aduflash/download"
)

// input is the file's bytes from the resume point on, with the download state after the
// bytes read so far. Its errors (but io.EOF) wrap ErrDownload, ErrFileHash or ErrRead.
type input interface {
	io.Reader
	State() download.State
}

// openInput opens the download (from the resume record's state) or the local file.
func (r *run) openInput() (input, error) {
	if r.src.Local != nil {
		return &local{r: r.src.Local, size: r.src.Size}, nil
	}
	client := r.in.HTTP
	if client == nil {
		client = DefaultHTTPClient()
	}
	req := download.Request{URL: r.src.URL, Size: r.src.Size, SHA256: r.src.SHA256, Client: client,
		Retry: r.in.Retry, StallTimeout: r.in.StallTimeout}
	if r.resume != nil {
		st := r.resume.Download
		req.Resume = &st
	}
	d, err := download.Open(r.ctx, req)
	if err != nil {
		if r.resume != nil && errors.Is(err, download.ErrBadState) {
			return nil, errStale
		}
		return nil, fmt.Errorf("%w: %w", ErrDownload, err)
	}
	return &fetched{d: d, from: d.State().Offset}, nil
}

// closeInput ends the download and counts the bytes it fetched.
func (r *run) closeInput() {
	if f, ok := r.input.(*fetched); ok {
		r.rec.Downloaded += f.d.State().Offset - f.from
		f.d.Close()
	}
}

// fetched is a download; its errors say which stage failed.
type fetched struct {
	d    *download.Reader
	from int64
}

func (f *fetched) Read(p []byte) (int, error) {
	n, err := f.d.Read(p)
	switch {
	case err == nil, err == io.EOF:
	case errors.Is(err, download.ErrHashMismatch):
		err = fmt.Errorf("%w: %w", ErrFileHash, err)
	default:
		err = fmt.Errorf("%w: %w", ErrDownload, err)
	}
	return n, err
}

func (f *fetched) State() download.State { return f.d.State() }

// local is a local file read once from its start.
type local struct {
	r    io.Reader
	off  int64
	size int64
}

func (l *local) Read(p []byte) (int, error) {
	n, err := l.r.Read(p)
	l.off += int64(n)
	if err != nil && err != io.EOF {
		err = fmt.Errorf("%w: %w", ErrRead, err)
	}
	return n, err
}

func (l *local) State() download.State { return download.State{Size: l.size, Offset: l.off} }
