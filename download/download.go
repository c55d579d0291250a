// Package download streams one update file over HTTP into a consumer,
// verifying its size and SHA-256 and resuming with HTTP Range requests.
//
// Fetch copies the file into an io.Writer through one fixed buffer: no temporary
// files, no whole-file buffers. Every byte reaches the writer exactly once, in
// order, even when the connection drops mid-body and Fetch reconnects with
// "Range: bytes=<offset>-". The running SHA-256 is part of the resumable State,
// so a process that persisted a State (after the bytes up to State.Offset were
// durably consumed) continues in a later Fetch without downloading those bytes
// again, and the final digest still covers the whole file. A caller that hashes
// what it consumes itself (at boundaries of its own choosing) leaves
// Request.SHA256 empty: Fetch then only enforces the size.
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
)

// Errors. Use errors.Is; HTTP status failures are *StatusError values.
var (
	// ErrTooLong: the server sent more than Request.Size bytes (detected from
	// Content-Length / Content-Range, or when the first extra byte arrives).
	ErrTooLong = errors.New("download: file longer than expected size")
	// ErrTruncated: the body ended (complete by HTTP framing) before Request.Size bytes.
	ErrTruncated = errors.New("download: file shorter than expected size")
	// ErrHashMismatch: all Size bytes arrived but their SHA-256 differs.
	ErrHashMismatch = errors.New("download: sha256 mismatch")
	// ErrHTTPStatus: a status that is not retried (4xx other than 408/429, 1xx/3xx).
	ErrHTTPStatus = errors.New("download: unexpected HTTP status")
	// ErrNotFound: 404. Also matches ErrHTTPStatus.
	ErrNotFound = errors.New("download: not found")
	// ErrChanged: the remote file is no longer the one whose first bytes were
	// already consumed (ETag/Last-Modified changed, 416, or a re-sent prefix differs).
	// Fetch never restarts from 0 on its own; the caller decides.
	ErrChanged = errors.New("download: remote file changed during download")
	// ErrBadResponse: a protocol violation that retrying will not fix
	// (206 with a missing/wrong Content-Range, a range longer than requested).
	ErrBadResponse = errors.New("download: bad HTTP response")
	// ErrBadState: Request.Resume does not belong to this file or is corrupt.
	ErrBadState = errors.New("download: invalid resume state")
	// ErrStalled: no body byte arrived for Request.StallTimeout (retried).
	ErrStalled = errors.New("download: transfer stalled")
)

// StatusError is returned for HTTP statuses that end the download, and wrapped
// in the final error when retries for 5xx/408/429 are exhausted.
type StatusError struct {
	StatusCode int
	Status     string
}

func (e *StatusError) Error() string { return "download: HTTP status " + e.Status }

// Is makes a StatusError match ErrHTTPStatus, and ErrNotFound for 404.
func (e *StatusError) Is(target error) bool {
	return target == ErrHTTPStatus || (target == ErrNotFound && e.StatusCode == http.StatusNotFound)
}

// State is the resume point: everything needed to continue a download after a
// process restart. It is JSON-marshalable; persist it only after the bytes up to
// Offset have been durably consumed by the writer.
type State struct {
	Size   int64  `json:"size"`   // Request.Size of the file this state belongs to
	SHA256 []byte `json:"sha256"` // expected digest (identifies the file)
	Offset int64  `json:"offset"` // bytes delivered to the writer
	// Hash is the marshaled SHA-256 state (encoding.BinaryMarshaler) after the
	// first Offset bytes.
	Hash []byte `json:"hashState"`
	// Validators of the remote file seen when the bytes were fetched; sent as
	// If-Range and compared, so a changed file yields ErrChanged.
	ETag         string `json:"etag,omitempty"`
	LastModified string `json:"lastModified,omitempty"`
}

// RetryPolicy controls retries of transient failures: transport errors
// (connection reset, unexpected EOF, timeouts, stalls), 5xx, 408 and 429.
type RetryPolicy struct {
	// Attempts is the number of consecutive failed attempts (HTTP requests that
	// delivered no new byte) after which Fetch gives up. An attempt that delivers
	// at least one byte resets the count. 0 means 5; 1 means no retries.
	Attempts int
	// Backoff is the delay after the first failure, doubled after each further
	// consecutive failure up to MaxBackoff. 0 means 1s; MaxBackoff 0 means 1m.
	Backoff    time.Duration
	MaxBackoff time.Duration
	// A Retry-After (seconds or HTTP date) on 429/5xx replaces the backoff when
	// longer. If it exceeds MaxRetryAfter (0 means 10m) Fetch gives up instead.
	MaxRetryAfter time.Duration
	// Sleep waits d or until ctx is done (nil: a timer). Now is used for
	// Retry-After dates (nil: time.Now). Both are injectable for tests.
	Sleep func(ctx context.Context, d time.Duration) error
	Now   func() time.Time
}

// Request describes one file to download.
type Request struct {
	URL  string
	Size int64 // sizeInBytes from the manifest
	// SHA256 is the raw 32-byte digest (the manifest's base64 "sha256" decoded). Empty:
	// Fetch neither hashes nor checks the file, for a caller that hashes what it consumes
	// itself (resuming from its own hash state); Size is still enforced.
	SHA256 []byte

	// Client performs the requests (nil: http.DefaultClient). Do not give it a
	// Timeout shorter than the whole transfer; use StallTimeout instead.
	Client *http.Client
	Header http.Header // extra request headers, e.g. User-Agent (optional)
	Retry  RetryPolicy

	// Resume continues from a persisted State (nil: start at byte 0).
	Resume *State

	// OnProgress, if set, is called with the current State each time at least
	// ProgressEvery (0 means 1 MiB) bytes have been written to dst since the
	// previous call, right after dst.Write returned. The State covers exactly the
	// bytes handed to dst so far: flush/sync dst, then persist the State, to make
	// a checkpoint. A non-nil error aborts Fetch with that error.
	OnProgress    func(State) error
	ProgressEvery int64

	// StallTimeout aborts and retries an attempt when no body byte arrives for
	// this long (0 means 60s, negative disables).
	StallTimeout time.Duration
	// MaxRange, if positive, limits each request to MaxRange bytes
	// ("Range: bytes=a-b"), for CDNs that reject large ranges. 0: open-ended.
	MaxRange int64
	// BufferSize is the size of the single copy buffer (0 means 256 KiB).
	BufferSize int
}

// Result reports a Fetch. It is filled in on error too: State then describes the
// bytes already delivered to dst, and can be persisted to resume later.
type Result struct {
	State       State
	ResumedFrom int64 // offset Fetch started at
	Requests    int   // HTTP requests sent
	Retries     int   // failed attempts that were retried
}

// NewState returns the State of a download that has not started.
func NewState(size int64, sum []byte) State {
	if len(sum) == 0 {
		return State{Size: size}
	}
	h := sha256.New()
	b, _ := h.(encoding.BinaryMarshaler).MarshalBinary()
	return State{Size: size, SHA256: bytes.Clone(sum), Hash: b}
}

type fetcher struct {
	req     Request
	client  *http.Client
	dst     io.Writer
	buf     []byte
	h       hash.Hash
	off     int64
	etag    string
	lastMod string

	progressEvery int64
	lastReport    int64
	complete      bool // body ended exactly at Size
	res           *Result
}

// Fetch downloads req.URL into dst, starting at req.Resume (if any), and
// verifies size and SHA-256. See the package documentation and Request.
func Fetch(ctx context.Context, req Request, dst io.Writer) (res Result, err error) {
	f := &fetcher{req: req, dst: dst, client: req.Client, res: &res}
	if f.client == nil {
		f.client = http.DefaultClient
	}
	if len(req.SHA256) != sha256.Size && len(req.SHA256) != 0 {
		return res, fmt.Errorf("download: expected SHA-256 must be %d bytes, got %d", sha256.Size, len(req.SHA256))
	}
	if req.Size < 0 {
		return res, fmt.Errorf("download: negative size %d", req.Size)
	}
	st := NewState(req.Size, req.SHA256)
	if req.Resume != nil {
		st = *req.Resume
	}
	if err := f.restore(st); err != nil {
		return res, err
	}
	res.ResumedFrom = f.off
	res.State = f.state()
	f.progressEvery = req.ProgressEvery
	if f.progressEvery <= 0 {
		f.progressEvery = 1 << 20
	}
	f.lastReport = f.off
	bs := req.BufferSize
	if bs <= 0 {
		bs = 256 << 10
	}
	f.buf = make([]byte, bs)

	defer func() { res.State = f.state() }()
	// A resumed download that already holds every byte needs no request.
	f.complete = req.Resume != nil && f.off == req.Size
	if err := f.loop(ctx); err != nil {
		return res, err
	}
	if f.h != nil && !bytes.Equal(f.h.Sum(nil), req.SHA256) {
		return res, fmt.Errorf("%w: got %x, want %x", ErrHashMismatch, f.h.Sum(nil), req.SHA256)
	}
	return res, nil
}

func (f *fetcher) restore(st State) error {
	if st.Size != f.req.Size || !bytes.Equal(st.SHA256, f.req.SHA256) {
		return fmt.Errorf("%w: state is for another file (size %d, sha256 %x)", ErrBadState, st.Size, st.SHA256)
	}
	if st.Offset < 0 || st.Offset > st.Size {
		return fmt.Errorf("%w: offset %d outside 0..%d", ErrBadState, st.Offset, st.Size)
	}
	if len(f.req.SHA256) == 0 {
		f.off, f.etag, f.lastMod = st.Offset, st.ETag, st.LastModified
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
	f.h, f.off, f.etag, f.lastMod = h, st.Offset, st.ETag, st.LastModified
	return nil
}

func (f *fetcher) state() State {
	var b []byte
	if f.h != nil {
		b, _ = f.h.(encoding.BinaryMarshaler).MarshalBinary()
	}
	return State{Size: f.req.Size, SHA256: bytes.Clone(f.req.SHA256), Offset: f.off, Hash: b,
		ETag: f.etag, LastModified: f.lastMod}
}

// transient marks an attempt failure that may be retried.
type transient struct {
	err        error
	retryAfter time.Duration
	hasAfter   bool
}

func (t *transient) Error() string { return t.err.Error() }
func (t *transient) Unwrap() error { return t.err }

func (f *fetcher) loop(ctx context.Context) error {
	p := f.req.Retry
	attempts := p.Attempts
	if attempts <= 0 {
		attempts = 5
	}
	backoff, maxBackoff, maxAfter := p.Backoff, p.MaxBackoff, p.MaxRetryAfter
	if backoff <= 0 {
		backoff = time.Second
	}
	if maxBackoff <= 0 {
		maxBackoff = time.Minute
	}
	if maxAfter <= 0 {
		maxAfter = 10 * time.Minute
	}
	sleep := p.Sleep
	if sleep == nil {
		sleep = sleepCtx
	}
	failures := 0
	for !f.complete {
		if err := ctx.Err(); err != nil {
			return err
		}
		before := f.off
		err := f.attempt(ctx)
		if err == nil {
			failures = 0
			continue
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		var t *transient
		if !errors.As(err, &t) {
			return err
		}
		if f.off > before {
			failures = 0
		}
		failures++
		if failures >= attempts {
			return fmt.Errorf("download: giving up after %d consecutive failed attempts: %w", failures, t.err)
		}
		d := backoff
		for i := 1; i < failures && d < maxBackoff; i++ {
			d *= 2
		}
		d = min(d, maxBackoff)
		if t.hasAfter {
			if t.retryAfter > maxAfter {
				return fmt.Errorf("download: Retry-After %v exceeds %v: %w", t.retryAfter, maxAfter, t.err)
			}
			d = max(d, t.retryAfter)
		}
		f.res.Retries++
		if err := sleep(ctx, d); err != nil {
			return err
		}
	}
	return nil
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// attempt sends one request and consumes its body. nil means progress was made
// and either the file is complete or the next range must be requested.
func (f *fetcher) attempt(parent context.Context) error {
	ctx, cancel := context.WithCancelCause(parent)
	defer cancel(nil)
	var stall *time.Timer
	stallTimeout := f.req.StallTimeout
	if stallTimeout == 0 {
		stallTimeout = time.Minute
	}
	if stallTimeout > 0 {
		stall = time.AfterFunc(stallTimeout, func() { cancel(ErrStalled) })
		defer stall.Stop()
	}
	wrapNet := func(err error) error {
		if parent.Err() != nil {
			return parent.Err()
		}
		if context.Cause(ctx) == ErrStalled {
			return &transient{err: ErrStalled}
		}
		var cv *tls.CertificateVerificationError
		if errors.As(err, &cv) {
			return err
		}
		return &transient{err: err}
	}

	hreq, err := http.NewRequestWithContext(ctx, http.MethodGet, f.req.URL, nil)
	if err != nil {
		return fmt.Errorf("download: %w", err)
	}
	for k, v := range f.req.Header {
		hreq.Header[k] = v
	}
	// Ranges address the stored bytes: no transparent gzip.
	hreq.Header.Set("Accept-Encoding", "identity")
	end := f.req.Size // exclusive end of the requested range
	if f.req.MaxRange > 0 && f.off+f.req.MaxRange < end {
		end = f.off + f.req.MaxRange
	}
	if f.off > 0 || end < f.req.Size {
		r := "bytes=" + strconv.FormatInt(f.off, 10) + "-"
		if end < f.req.Size {
			r += strconv.FormatInt(end-1, 10)
		}
		hreq.Header.Set("Range", r)
		if f.off > 0 {
			if f.etag != "" && !strings.HasPrefix(f.etag, "W/") {
				hreq.Header.Set("If-Range", f.etag)
			} else if f.lastMod != "" {
				hreq.Header.Set("If-Range", f.lastMod)
			}
		}
	}
	f.res.Requests++
	resp, err := f.client.Do(hreq)
	if err != nil {
		return wrapNet(err)
	}
	defer resp.Body.Close()

	switch code := resp.StatusCode; {
	case code == http.StatusOK:
		if err := f.checkValidators(resp); err != nil {
			return err
		}
		if resp.ContentLength > f.req.Size {
			return fmt.Errorf("%w: Content-Length %d > %d", ErrTooLong, resp.ContentLength, f.req.Size)
		}
		if resp.ContentLength >= 0 && resp.ContentLength < f.req.Size {
			return fmt.Errorf("%w: Content-Length %d < %d", ErrTruncated, resp.ContentLength, f.req.Size)
		}
		body := &stallReader{r: resp.Body, t: stall, d: stallTimeout}
		if f.off > 0 {
			// The server ignored Range: re-read the prefix, and check it is the
			// one already consumed by comparing SHA-256 states.
			if err := f.skipPrefix(body); err != nil {
				return wrapIfNet(err, wrapNet)
			}
		}
		return f.copyBody(parent, body, f.req.Size, true, wrapNet)

	case code == http.StatusPartialContent:
		if err := f.checkValidators(resp); err != nil {
			return err
		}
		start, last, total, err := parseContentRange(resp.Header.Get("Content-Range"))
		if err != nil {
			return fmt.Errorf("%w: %v", ErrBadResponse, err)
		}
		if start != f.off {
			return fmt.Errorf("%w: Content-Range %q does not start at %d", ErrBadResponse, resp.Header.Get("Content-Range"), f.off)
		}
		if total >= 0 && total > f.req.Size {
			return fmt.Errorf("%w: Content-Range total %d > %d", ErrTooLong, total, f.req.Size)
		}
		if total >= 0 && total < f.req.Size {
			return fmt.Errorf("%w: Content-Range total %d < %d", ErrTruncated, total, f.req.Size)
		}
		if last >= f.req.Size {
			return fmt.Errorf("%w: Content-Range %q beyond %d", ErrTooLong, resp.Header.Get("Content-Range"), f.req.Size)
		}
		if last+1 > end {
			return fmt.Errorf("%w: Content-Range %q longer than requested", ErrBadResponse, resp.Header.Get("Content-Range"))
		}
		body := &stallReader{r: resp.Body, t: stall, d: stallTimeout}
		return f.copyBody(parent, body, last+1, false, wrapNet)

	case code == http.StatusRequestedRangeNotSatisfiable:
		// We never request at or past Size, so the file is now shorter than
		// what was already consumed.
		return errors.Join(fmt.Errorf("%w: range from %d not satisfiable (Content-Range %q)",
			ErrChanged, f.off, resp.Header.Get("Content-Range")), statusErr(resp))

	case code >= 500 || code == http.StatusTooManyRequests || code == http.StatusRequestTimeout:
		io.CopyN(io.Discard, resp.Body, 4<<10)
		t := &transient{err: statusErr(resp)}
		t.retryAfter, t.hasAfter = parseRetryAfter(resp.Header.Get("Retry-After"), f.now())
		return t

	default:
		return statusErr(resp)
	}
}

func wrapIfNet(err error, wrapNet func(error) error) error {
	var t *transient
	if errors.As(err, &t) {
		return wrapNet(t.err)
	}
	return err
}

func (f *fetcher) now() time.Time {
	if f.req.Retry.Now != nil {
		return f.req.Retry.Now()
	}
	return time.Now()
}

func statusErr(resp *http.Response) error {
	return &StatusError{StatusCode: resp.StatusCode, Status: resp.Status}
}

// checkValidators compares ETag/Last-Modified with the ones recorded when the
// consumed bytes were fetched; records them if none are.
func (f *fetcher) checkValidators(resp *http.Response) error {
	etag, lm := resp.Header.Get("ETag"), resp.Header.Get("Last-Modified")
	if f.off == 0 {
		// Nothing consumed: whatever the file is now, start over silently.
		f.etag, f.lastMod = etag, lm
		return nil
	}
	if f.etag != "" && etag != "" && etag != f.etag {
		return fmt.Errorf("%w: ETag %s, was %s, after %d bytes", ErrChanged, etag, f.etag, f.off)
	}
	if f.lastMod != "" && lm != "" && lm != f.lastMod {
		return fmt.Errorf("%w: Last-Modified %s, was %s, after %d bytes", ErrChanged, lm, f.lastMod, f.off)
	}
	if f.etag == "" {
		f.etag = etag
	}
	if f.lastMod == "" {
		f.lastMod = lm
	}
	return nil
}

// skipPrefix reads f.off bytes from a 200 body and checks that they hash to the
// current state, i.e. they are exactly the bytes already delivered.
func (f *fetcher) skipPrefix(body io.Reader) error {
	if f.h == nil { // the caller checks what it consumed
		n, err := io.CopyBuffer(io.Discard, io.LimitReader(body, f.off), f.buf)
		if err != nil {
			return &transient{err: err}
		}
		if n < f.off {
			return fmt.Errorf("%w: full body ended at %d, before resume offset %d", ErrChanged, n, f.off)
		}
		return nil
	}
	h := sha256.New()
	n, err := io.CopyBuffer(h, io.LimitReader(body, f.off), f.buf)
	if err != nil {
		return &transient{err: err}
	}
	if n < f.off {
		return fmt.Errorf("%w: full body ended at %d, before resume offset %d", ErrChanged, n, f.off)
	}
	got, _ := h.(encoding.BinaryMarshaler).MarshalBinary()
	want, _ := f.h.(encoding.BinaryMarshaler).MarshalBinary()
	if !bytes.Equal(got, want) {
		return fmt.Errorf("%w: the first %d bytes differ from those already consumed", ErrChanged, f.off)
	}
	return nil
}

// copyBody writes body bytes from f.off up to end (exclusive) to dst. full
// means the body runs to the end of the file (200), so a clean EOF before end
// is truncation; in a 206 it is a dropped connection.
func (f *fetcher) copyBody(ctx context.Context, body io.Reader, end int64, full bool, wrapNet func(error) error) error {
	for {
		// Buffered body bytes may still be readable after cancellation.
		if err := ctx.Err(); err != nil {
			return err
		}
		n, rerr := body.Read(f.buf)
		if n > 0 {
			p := f.buf[:n]
			extra := f.off+int64(n) > end
			if extra {
				p = p[:end-f.off]
			}
			if len(p) > 0 {
				if err := f.write(p); err != nil {
					return err
				}
			}
			if extra {
				if end == f.req.Size {
					return fmt.Errorf("%w: more than %d bytes", ErrTooLong, f.req.Size)
				}
				return fmt.Errorf("%w: body longer than its Content-Range", ErrBadResponse)
			}
		}
		if rerr == io.EOF {
			switch {
			case f.off == end:
				f.complete = end == f.req.Size
				return nil
			case full:
				return fmt.Errorf("%w: body ended after %d of %d bytes", ErrTruncated, f.off, f.req.Size)
			default:
				return &transient{err: io.ErrUnexpectedEOF}
			}
		}
		if rerr != nil {
			return wrapNet(rerr)
		}
	}
}

func (f *fetcher) write(p []byte) error {
	n, err := f.dst.Write(p)
	if n > len(p) || n < 0 {
		n = 0
		if err == nil {
			err = errors.New("invalid write count")
		}
	}
	if f.h != nil {
		f.h.Write(p[:n])
	}
	f.off += int64(n)
	if err == nil && n < len(p) {
		err = io.ErrShortWrite
	}
	if err != nil {
		return fmt.Errorf("download: writing at offset %d: %w", f.off, err)
	}
	if f.req.OnProgress != nil && f.off-f.lastReport >= f.progressEvery {
		f.lastReport = f.off
		if err := f.req.OnProgress(f.state()); err != nil {
			return err
		}
	}
	return nil
}

// stallReader runs the stall timer only while waiting in Read, so a slow
// consumer (dst.Write, OnProgress) does not count as a stalled server.
type stallReader struct {
	r io.Reader
	t *time.Timer
	d time.Duration
}

func (s *stallReader) Read(p []byte) (int, error) {
	if s.t == nil {
		return s.r.Read(p)
	}
	s.t.Reset(s.d)
	n, err := s.r.Read(p)
	s.t.Stop()
	return n, err
}

// parseContentRange parses "bytes first-last/total" (total -1 when "*").
func parseContentRange(s string) (first, last, total int64, err error) {
	rest, ok := strings.CutPrefix(strings.TrimSpace(s), "bytes ")
	if !ok {
		return 0, 0, 0, fmt.Errorf("Content-Range %q", s)
	}
	rng, tot, ok := strings.Cut(rest, "/")
	if !ok {
		return 0, 0, 0, fmt.Errorf("Content-Range %q", s)
	}
	a, b, ok := strings.Cut(rng, "-")
	if !ok {
		return 0, 0, 0, fmt.Errorf("Content-Range %q", s)
	}
	if first, err = strconv.ParseInt(a, 10, 64); err != nil || first < 0 {
		return 0, 0, 0, fmt.Errorf("Content-Range %q", s)
	}
	if last, err = strconv.ParseInt(b, 10, 64); err != nil || last < first {
		return 0, 0, 0, fmt.Errorf("Content-Range %q", s)
	}
	total = -1
	if tot != "*" {
		if total, err = strconv.ParseInt(tot, 10, 64); err != nil || total <= last {
			return 0, 0, 0, fmt.Errorf("Content-Range %q", s)
		}
	}
	return first, last, total, nil
}

// parseRetryAfter accepts delay-seconds or an HTTP date.
func parseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if s, err := strconv.ParseInt(v, 10, 64); err == nil && s >= 0 {
		if s > int64(365*24*time.Hour/time.Second) {
			s = int64(365 * 24 * time.Hour / time.Second)
		}
		return time.Duration(s) * time.Second, true
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(t.Sub(now), 0), true
	}
	return 0, false
}
