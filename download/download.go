// Package download streams one update file over HTTP into a consumer,
// verifying its size and SHA-256 and resuming with HTTP Range requests.
//
// A Reader hands the file out as an io.Reader: no temporary files, no whole-file
// buffers, no copy of its own (the body is read into the caller's buffer). Every byte
// arrives exactly once, in order, even when the connection drops mid-body and the Reader
// reconnects with "Range: bytes=<offset>-". The running SHA-256 is part of the resumable
// State, which the consumer takes between two Reads at offsets of its own choosing (where
// what it did with the bytes is durable): a later Reader or Fetch continues from it
// without downloading those bytes again, and the final digest still covers the whole
// file. The last bytes of a file whose digest differs are never handed out.
//
// Fetch copies a Reader into an io.Writer through one fixed buffer and offers the State
// at intervals (Request.OnProgress). Without Request.SHA256 neither hashes: only the size
// is enforced.
package download

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/aduflash/aduflash/internal/errkind"
)

// Errors. Use errors.Is; HTTP status failures are *StatusError values.
var (
	// ErrTooLong: the server sent more than Request.Size bytes (detected from
	// Content-Length / Content-Range, or when the first extra byte arrives).
	ErrTooLong = errkind.New(errkind.Environment, "download: file longer than expected size")
	// ErrTruncated: the body ended (complete by HTTP framing) before Request.Size bytes.
	ErrTruncated = errkind.New(errkind.Environment, "download: file shorter than expected size")
	// ErrHashMismatch: all Size bytes arrived but their SHA-256 differs.
	ErrHashMismatch = errkind.New(errkind.Input, "download: sha256 mismatch")
	// ErrHTTPStatus: a status that is not retried (4xx other than 408/429, 1xx/3xx).
	ErrHTTPStatus = errkind.New(errkind.Environment, "download: unexpected HTTP status")
	// ErrNotFound: 404. Also matches ErrHTTPStatus.
	ErrNotFound = errkind.New(errkind.Environment, "download: not found")
	// ErrChanged: the remote file is no longer the one whose first bytes were
	// already consumed (ETag/Last-Modified changed, 416, or a re-sent prefix differs).
	// Fetch never restarts from 0 on its own; the caller decides.
	ErrChanged = errkind.New(errkind.Environment, "download: remote file changed during download")
	// ErrBadResponse: a protocol violation that retrying will not fix
	// (206 with a missing/wrong Content-Range, a range longer than requested).
	ErrBadResponse = errkind.New(errkind.Environment, "download: bad HTTP response")
	// ErrBadState: Request.Resume does not belong to this file or is corrupt.
	ErrBadState = errkind.New(errkind.Input, "download: invalid resume state")
	// ErrStalled: no body byte arrived for Request.StallTimeout (retried).
	ErrStalled = errkind.New(errkind.Environment, "download: transfer stalled")
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

// ErrorKind says that a refusing server is a failure of the environment.
func (e *StatusError) ErrorKind() errkind.Kind { return errkind.Environment }

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
	// the file is neither hashed nor checked (a signed image whose signature covers it);
	// Size is still enforced.
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

// Result reports a Fetch or a Reader. It is filled in on error too: State then describes the
// bytes already delivered to dst, and can be persisted to resume later.
type Result struct {
	State       State
	ResumedFrom int64 // offset the download started at
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

// Fetch downloads req.URL into dst, starting at req.Resume (if any), and
// verifies size and SHA-256. It reads through a Reader (see there: the last bytes of a file
// whose SHA-256 differs are not written) and calls req.OnProgress as documented on Request.
func Fetch(ctx context.Context, req Request, dst io.Writer) (Result, error) {
	r, err := Open(ctx, req)
	if err != nil {
		return Result{}, err
	}
	defer r.Close()
	every := req.ProgressEvery
	if every <= 0 {
		every = 1 << 20
	}
	bs := req.BufferSize
	if bs <= 0 {
		bs = 256 << 10
	}
	buf := make([]byte, bs)
	last := r.off
	for {
		before := r.mark()
		n, rerr := r.Read(buf)
		if n > 0 {
			w, werr := dst.Write(buf[:n])
			if werr == nil && w != n {
				werr = io.ErrShortWrite
			}
			if werr != nil {
				r.rewind(before, buf[:max(0, min(w, n))])
				return r.Result(), fmt.Errorf("download: writing at offset %d: %w", r.off, werr)
			}
			if req.OnProgress != nil && r.off-last >= every {
				last = r.off
				if err := req.OnProgress(r.State()); err != nil {
					return r.Result(), err
				}
			}
		}
		switch {
		case rerr == io.EOF:
			return r.Result(), nil
		case rerr != nil:
			return r.Result(), rerr
		}
	}
}

// transient marks an attempt failure that may be retried.
type transient struct {
	err        error
	retryAfter time.Duration
	hasAfter   bool
}

func (t *transient) Error() string { return t.err.Error() }
func (t *transient) Unwrap() error { return t.err }

func statusErr(resp *http.Response) error {
	return &StatusError{StatusCode: resp.StatusCode, Status: resp.Status}
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
