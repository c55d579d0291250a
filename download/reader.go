package download

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/aduflash/aduflash/internal/clock"
)

// Reader is a download read as a stream: Read hands out the file's bytes in order from the
// resume point on, reconnecting with Range requests after transient failures as Fetch does,
// and State, between two Reads, is the resume point after exactly the bytes handed out so
// far; a consumer takes it at offsets of its own choosing (where its own state is durable).
//
// With Request.SHA256 set, the Read that would hand out the last byte of the file checks the
// file's SHA-256 first and returns ErrHashMismatch instead of those bytes: a consumer never
// sees the end of a file that is not the one the manifest names. The SHA-256 runs in Read,
// over the caller's buffer: no copy of its own. Request.OnProgress, ProgressEvery and
// BufferSize are Fetch's; a Reader ignores them. A Reader is not safe for concurrent use;
// Close it to end the request in flight.
type Reader struct {
	req    Request
	ctx    context.Context
	client *http.Client
	h      hash.Hash // nil without Request.SHA256
	off    int64
	etag   string
	last   string // Last-Modified
	res    Result
	err    error // sticky: io.EOF at the end, or the error that ended the download
	pend   error // ends the download at the next Read (after bytes handed out before it)
	hashed bool  // the whole file's SHA-256 was checked

	// The response being read.
	body     io.Reader
	closer   io.Closer
	cancel   context.CancelCauseFunc
	stall    *time.Timer
	attempt  context.Context
	end      int64 // exclusive end of its range
	full     bool  // it runs to the end of the file (200): a clean EOF before end is truncation
	retryErr error // the transient error that ended it, to retry at the next Read
	before   int64 // offset when the attempt started
	failures int   // consecutive attempts that delivered no byte
}

// Open prepares a download as a stream; nothing is requested before the first Read. It
// fails on a request that cannot be right (a digest of the wrong length, a negative size)
// and on a Request.Resume that does not belong to the file (ErrBadState).
func Open(ctx context.Context, req Request) (*Reader, error) {
	if len(req.SHA256) != sha256.Size && len(req.SHA256) != 0 {
		return nil, fmt.Errorf("download: expected SHA-256 must be %d bytes, got %d", sha256.Size, len(req.SHA256))
	}
	if req.Size < 0 {
		return nil, fmt.Errorf("download: negative size %d", req.Size)
	}
	r := &Reader{req: req, ctx: ctx, client: req.Client}
	if r.client == nil {
		r.client = http.DefaultClient
	}
	st := NewState(req.Size, req.SHA256)
	if req.Resume != nil {
		st = *req.Resume
	}
	if err := r.restore(st); err != nil {
		return nil, err
	}
	r.res.ResumedFrom = r.off
	if req.Resume != nil && r.off == req.Size {
		// A resumed download that already holds every byte needs no request.
		r.err = r.complete()
	}
	return r, nil
}

func (r *Reader) restore(st State) error {
	if st.Size != r.req.Size || !bytes.Equal(st.SHA256, r.req.SHA256) {
		return fmt.Errorf("%w: state is for another file (size %d, sha256 %x)", ErrBadState, st.Size, st.SHA256)
	}
	if st.Offset < 0 || st.Offset > st.Size {
		return fmt.Errorf("%w: offset %d outside 0..%d", ErrBadState, st.Offset, st.Size)
	}
	r.off, r.etag, r.last = st.Offset, st.ETag, st.LastModified
	if len(r.req.SHA256) == 0 {
		return nil
	}
	h := sha256.New()
	if err := h.(encoding.BinaryUnmarshaler).UnmarshalBinary(st.Hash); err != nil {
		return fmt.Errorf("%w: %v", ErrBadState, err)
	}
	// The marshaled state ends with the number of bytes hashed (big endian).
	if n := len(st.Hash); n < 8 || binary.BigEndian.Uint64(st.Hash[n-8:]) != uint64(st.Offset) {
		return fmt.Errorf("%w: hash state does not cover offset %d", ErrBadState, st.Offset)
	}
	r.h = h
	return nil
}

// State returns the resume point after the bytes handed out so far.
func (r *Reader) State() State {
	var b []byte
	if r.h != nil {
		b, _ = r.h.(encoding.BinaryMarshaler).MarshalBinary()
	}
	return State{Size: r.req.Size, SHA256: bytes.Clone(r.req.SHA256), Offset: r.off, Hash: b,
		ETag: r.etag, LastModified: r.last}
}

// Result reports the download so far: requests, retries and State.
func (r *Reader) Result() Result {
	res := r.res
	res.State = r.State()
	return res
}

// errClosed ends the reads of a closed Reader.
var errClosed = errors.New("download: read after Close")

// Close ends the request in flight, if any; later Reads fail. It does not fail.
func (r *Reader) Close() error {
	r.drop()
	if r.err == nil {
		r.err = errClosed
	}
	return nil
}

// Read hands out the next bytes of the file (see Reader). It returns io.EOF once every byte
// was handed out and the response ended exactly at the file's size; every other error ends
// the download and is returned by every later Read.
func (r *Reader) Read(p []byte) (int, error) {
	if r.err != nil {
		return 0, r.err
	}
	if len(p) == 0 {
		return 0, nil
	}
	for {
		n, err := r.next(p)
		switch {
		case n > 0:
			return n, nil // an error after the bytes waits in r.pend or r.retryErr
		case err == nil:
			continue // the response ended; what comes next is in r.pend or r.retryErr
		}
		var t *transient
		if errors.As(err, &t) {
			if err = r.retry(t); err == nil {
				continue
			}
		}
		r.err = err
		r.drop()
		return 0, err
	}
}

// next reads from the current response (opening one when there is none) into p. It returns
// bytes, or no bytes and an error: a *transient one may be retried.
func (r *Reader) next(p []byte) (int, error) {
	if err := r.pend; err != nil {
		return 0, err
	}
	if err := r.retryErr; err != nil {
		r.retryErr = nil
		return 0, err
	}
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	if r.body == nil {
		if err := r.open(); err != nil {
			return 0, err
		}
	}
	return r.readBody(p)
}

// readBody reads up to the end of the response's range, and one byte more to tell a body
// that is too long; at the end of the range it makes sure the body ends there too.
func (r *Reader) readBody(p []byte) (int, error) {
	remaining := r.end - r.off
	m, rerr := r.body.Read(p[:min(int64(len(p)), remaining+1)])
	if int64(m) > remaining {
		m = int(remaining)
		if r.end == r.req.Size {
			r.pend = fmt.Errorf("%w: more than %d bytes", ErrTooLong, r.req.Size)
		} else {
			r.pend = fmt.Errorf("%w: body longer than its Content-Range", ErrBadResponse)
		}
	}
	if m > 0 {
		if err := r.take(p[:m]); err != nil {
			return 0, err
		}
	}
	switch {
	case r.pend != nil:
	case rerr == io.EOF && r.off == r.end:
		r.drop()
		if r.end == r.req.Size {
			r.pend = r.complete()
		}
		r.failures = 0
	case rerr == io.EOF && r.full:
		r.pend = fmt.Errorf("%w: body ended after %d of %d bytes", ErrTruncated, r.off, r.req.Size)
	case rerr == io.EOF:
		r.retryErr = &transient{err: io.ErrUnexpectedEOF}
		r.drop()
	case rerr != nil:
		r.retryErr = r.wrapNet(rerr)
		r.drop()
	}
	if m > 0 {
		return m, nil
	}
	return 0, nil // what ended the response is in pend or retryErr, or the range goes on
}

// take accounts for b, the next bytes of the file, in the offset and the hash; it checks the
// SHA-256 before the last bytes of the file are handed out, and keeps them back on a
// mismatch.
func (r *Reader) take(b []byte) error {
	if r.h != nil {
		last := r.off+int64(len(b)) == r.req.Size
		var before []byte
		if last {
			before, _ = r.h.(encoding.BinaryMarshaler).MarshalBinary()
		}
		r.h.Write(b)
		if last {
			if got := r.h.Sum(nil); !bytes.Equal(got, r.req.SHA256) {
				r.h.(encoding.BinaryUnmarshaler).UnmarshalBinary(before)
				return fmt.Errorf("%w: got %x, want %x", ErrHashMismatch, got, r.req.SHA256)
			}
			r.hashed = true
		}
	}
	r.off += int64(len(b))
	return nil
}

// complete ends a download that holds every byte: io.EOF, or ErrHashMismatch when the
// SHA-256 was not checked on the way (a resume at the end, an empty file) and differs.
func (r *Reader) complete() error {
	if r.h != nil && !r.hashed {
		if got := r.h.Sum(nil); !bytes.Equal(got, r.req.SHA256) {
			return fmt.Errorf("%w: got %x, want %x", ErrHashMismatch, got, r.req.SHA256)
		}
	}
	return io.EOF
}

// mark and rewind let Fetch make State exact after a writer took only part of a Read.
type mark struct {
	off  int64
	hash []byte
}

func (r *Reader) mark() mark {
	m := mark{off: r.off}
	if r.h != nil {
		m.hash, _ = r.h.(encoding.BinaryMarshaler).MarshalBinary()
	}
	return m
}

// rewind sets the state to m followed by taken.
func (r *Reader) rewind(m mark, taken []byte) {
	r.off = m.off + int64(len(taken))
	if r.h != nil {
		r.h.(encoding.BinaryUnmarshaler).UnmarshalBinary(m.hash)
		r.h.Write(taken)
	}
}

// retry decides whether a failed attempt is retried, and waits the backoff if so.
func (r *Reader) retry(t *transient) error {
	if err := r.ctx.Err(); err != nil {
		return err
	}
	p := r.req.Retry
	attempts, backoff, maxBackoff, maxAfter := p.Attempts, p.Backoff, p.MaxBackoff, p.MaxRetryAfter
	if attempts <= 0 {
		attempts = 5
	}
	if backoff <= 0 {
		backoff = time.Second
	}
	if maxBackoff <= 0 {
		maxBackoff = time.Minute
	}
	if maxAfter <= 0 {
		maxAfter = 10 * time.Minute
	}
	if r.off > r.before {
		r.failures = 0
	}
	r.failures++
	if r.failures >= attempts {
		return fmt.Errorf("download: giving up after %d consecutive failed attempts: %w", r.failures, t.err)
	}
	d := backoff
	for i := 1; i < r.failures && d < maxBackoff; i++ {
		d *= 2
	}
	d = min(d, maxBackoff)
	if t.hasAfter {
		if t.retryAfter > maxAfter {
			return fmt.Errorf("download: Retry-After %v exceeds %v: %w", t.retryAfter, maxAfter, t.err)
		}
		d = max(d, t.retryAfter)
	}
	r.res.Retries++
	sleep := p.Sleep
	if sleep == nil {
		sleep = clock.Sleep
	}
	return sleep(r.ctx, d)
}

// drop ends the current response.
func (r *Reader) drop() {
	if r.closer != nil {
		r.closer.Close()
	}
	if r.stall != nil {
		r.stall.Stop()
	}
	if r.cancel != nil {
		r.cancel(nil)
	}
	r.body, r.closer, r.stall, r.cancel, r.attempt = nil, nil, nil, nil, nil
}

// wrapNet classifies an error of the request or its body: the caller's cancellation ends
// the download, a stall or a network error is retried, a certificate that does not verify
// is not.
func (r *Reader) wrapNet(err error) error {
	if r.ctx.Err() != nil {
		return r.ctx.Err()
	}
	if r.attempt != nil && context.Cause(r.attempt) == ErrStalled {
		return &transient{err: ErrStalled}
	}
	var cv *tls.CertificateVerificationError
	if errors.As(err, &cv) {
		return err
	}
	return &transient{err: err}
}

// open sends one request for the bytes from r.off on and checks its response; on success
// r.body reads the range [r.off, r.end).
func (r *Reader) open() error {
	r.before = r.off
	ctx, cancel := context.WithCancelCause(r.ctx)
	r.attempt, r.cancel = ctx, cancel
	stallTimeout := r.req.StallTimeout
	if stallTimeout == 0 {
		stallTimeout = time.Minute
	}
	if stallTimeout > 0 {
		r.stall = time.AfterFunc(stallTimeout, func() { cancel(ErrStalled) })
	}
	err := r.request(ctx, stallTimeout)
	if err != nil {
		r.drop()
	}
	return err
}

func (r *Reader) request(ctx context.Context, stallTimeout time.Duration) error {
	hreq, err := http.NewRequestWithContext(ctx, http.MethodGet, r.req.URL, nil)
	if err != nil {
		return fmt.Errorf("download: %w", err)
	}
	for k, v := range r.req.Header {
		hreq.Header[k] = v
	}
	// Ranges address the stored bytes: no transparent gzip.
	hreq.Header.Set("Accept-Encoding", "identity")
	end := r.req.Size // exclusive end of the requested range
	if r.req.MaxRange > 0 && r.off+r.req.MaxRange < end {
		end = r.off + r.req.MaxRange
	}
	if r.off > 0 || end < r.req.Size {
		rng := "bytes=" + strconv.FormatInt(r.off, 10) + "-"
		if end < r.req.Size {
			rng += strconv.FormatInt(end-1, 10)
		}
		hreq.Header.Set("Range", rng)
		if r.off > 0 {
			if r.etag != "" && !strings.HasPrefix(r.etag, "W/") {
				hreq.Header.Set("If-Range", r.etag)
			} else if r.last != "" {
				hreq.Header.Set("If-Range", r.last)
			}
		}
	}
	r.res.Requests++
	resp, err := r.client.Do(hreq)
	if err != nil {
		return r.wrapNet(err)
	}
	r.closer = resp.Body
	body := &stallReader{r: resp.Body, t: r.stall, d: stallTimeout}
	switch code := resp.StatusCode; {
	case code == http.StatusOK:
		if err := r.checkValidators(resp); err != nil {
			return err
		}
		if resp.ContentLength > r.req.Size {
			return fmt.Errorf("%w: Content-Length %d > %d", ErrTooLong, resp.ContentLength, r.req.Size)
		}
		if resp.ContentLength >= 0 && resp.ContentLength < r.req.Size {
			return fmt.Errorf("%w: Content-Length %d < %d", ErrTruncated, resp.ContentLength, r.req.Size)
		}
		if r.off > 0 {
			// The server ignored Range: re-read the prefix, and check it is the one already
			// handed out by comparing SHA-256 states.
			if err := r.skipPrefix(body); err != nil {
				return err
			}
		}
		r.body, r.end, r.full = body, r.req.Size, true
		return nil

	case code == http.StatusPartialContent:
		if err := r.checkValidators(resp); err != nil {
			return err
		}
		start, last, total, err := parseContentRange(resp.Header.Get("Content-Range"))
		if err != nil {
			return fmt.Errorf("%w: %v", ErrBadResponse, err)
		}
		if start != r.off {
			return fmt.Errorf("%w: Content-Range %q does not start at %d", ErrBadResponse, resp.Header.Get("Content-Range"), r.off)
		}
		if total >= 0 && total > r.req.Size {
			return fmt.Errorf("%w: Content-Range total %d > %d", ErrTooLong, total, r.req.Size)
		}
		if total >= 0 && total < r.req.Size {
			return fmt.Errorf("%w: Content-Range total %d < %d", ErrTruncated, total, r.req.Size)
		}
		if last >= r.req.Size {
			return fmt.Errorf("%w: Content-Range %q beyond %d", ErrTooLong, resp.Header.Get("Content-Range"), r.req.Size)
		}
		if last+1 > end {
			return fmt.Errorf("%w: Content-Range %q longer than requested", ErrBadResponse, resp.Header.Get("Content-Range"))
		}
		r.body, r.end, r.full = body, last+1, false
		return nil

	case code == http.StatusRequestedRangeNotSatisfiable:
		// We never request at or past Size, so the file is now shorter than what was
		// already handed out.
		return errors.Join(fmt.Errorf("%w: range from %d not satisfiable (Content-Range %q)",
			ErrChanged, r.off, resp.Header.Get("Content-Range")), statusErr(resp))

	case code >= 500 || code == http.StatusTooManyRequests || code == http.StatusRequestTimeout:
		io.CopyN(io.Discard, resp.Body, 4<<10)
		t := &transient{err: statusErr(resp)}
		t.retryAfter, t.hasAfter = parseRetryAfter(resp.Header.Get("Retry-After"), r.now())
		return t

	default:
		return statusErr(resp)
	}
}

func (r *Reader) now() time.Time {
	if r.req.Retry.Now != nil {
		return r.req.Retry.Now()
	}
	return time.Now()
}

// checkValidators compares ETag/Last-Modified with the ones recorded when the bytes
// already handed out were fetched; records them if none are.
func (r *Reader) checkValidators(resp *http.Response) error {
	etag, lm := resp.Header.Get("ETag"), resp.Header.Get("Last-Modified")
	if r.off == 0 {
		// Nothing handed out: whatever the file is now, start over silently.
		r.etag, r.last = etag, lm
		return nil
	}
	if r.etag != "" && etag != "" && etag != r.etag {
		return fmt.Errorf("%w: ETag %s, was %s, after %d bytes", ErrChanged, etag, r.etag, r.off)
	}
	if r.last != "" && lm != "" && lm != r.last {
		return fmt.Errorf("%w: Last-Modified %s, was %s, after %d bytes", ErrChanged, lm, r.last, r.off)
	}
	if r.etag == "" {
		r.etag = etag
	}
	if r.last == "" {
		r.last = lm
	}
	return nil
}

// skipPrefix reads r.off bytes from a 200 body and checks that they hash to the current
// state, i.e. they are exactly the bytes already handed out.
func (r *Reader) skipPrefix(body io.Reader) error {
	buf := make([]byte, 32<<10)
	if r.h == nil { // the caller checks what it consumed
		n, err := io.CopyBuffer(io.Discard, io.LimitReader(body, r.off), buf)
		if err != nil {
			return r.wrapNet(err)
		}
		if n < r.off {
			return fmt.Errorf("%w: full body ended at %d, before resume offset %d", ErrChanged, n, r.off)
		}
		return nil
	}
	h := sha256.New()
	n, err := io.CopyBuffer(h, io.LimitReader(body, r.off), buf)
	if err != nil {
		return r.wrapNet(err)
	}
	if n < r.off {
		return fmt.Errorf("%w: full body ended at %d, before resume offset %d", ErrChanged, n, r.off)
	}
	got, _ := h.(encoding.BinaryMarshaler).MarshalBinary()
	want, _ := r.h.(encoding.BinaryMarshaler).MarshalBinary()
	if !bytes.Equal(got, want) {
		return fmt.Errorf("%w: the first %d bytes differ from those already handed out", ErrChanged, r.off)
	}
	return nil
}
