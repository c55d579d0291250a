package download

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

func testData(n int) []byte {
	b := make([]byte, n)
	r := rand.New(rand.NewPCG(uint64(n), 42))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func sum(b []byte) []byte { s := sha256.Sum256(b); return s[:] }

// recorder counts requests and remembers their Range headers.
type recorder struct {
	mu     sync.Mutex
	n      int
	ranges []string
}

func (r *recorder) wrap(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, req *http.Request) {
		r.mu.Lock()
		r.n++
		n := r.n
		r.ranges = append(r.ranges, req.Header.Get("Range"))
		r.mu.Unlock()
		req.Header.Set("X-N", strconv.Itoa(n))
		h(w, req)
	}
}

func (r *recorder) count() int { r.mu.Lock(); defer r.mu.Unlock(); return r.n }
func (r *recorder) rangeList() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.ranges...)
}

func reqNum(r *http.Request) int { n, _ := strconv.Atoi(r.Header.Get("X-N")); return n }

func serve(data []byte, etag string) http.HandlerFunc {
	mod := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	return func(w http.ResponseWriter, r *http.Request) {
		if etag != "" {
			w.Header().Set("ETag", etag)
		}
		http.ServeContent(w, r, "f.bin", mod, bytes.NewReader(data))
	}
}

func newServer(t testing.TB, rec *recorder, h http.HandlerFunc) *httptest.Server {
	if rec != nil {
		h = rec.wrap(h)
	}
	s := httptest.NewServer(h) // listens on 127.0.0.1
	t.Cleanup(s.Close)
	return s
}

// sleeps records backoff delays without sleeping.
type sleeps struct {
	mu sync.Mutex
	d  []time.Duration
}

func (s *sleeps) sleep(ctx context.Context, d time.Duration) error {
	s.mu.Lock()
	s.d = append(s.d, d)
	s.mu.Unlock()
	return ctx.Err()
}

func baseReq(url string, data []byte, sl *sleeps) Request {
	return Request{URL: url, Size: int64(len(data)), SHA256: sum(data), Client: &http.Client{},
		Retry: RetryPolicy{Sleep: sl.sleep}, StallTimeout: 5 * time.Second, BufferSize: 4096}
}

// stateAt builds the State after the first k bytes of data.
func stateAt(data []byte, k int) State {
	h := sha256.New()
	h.Write(data[:k])
	b, _ := h.(encoding.BinaryMarshaler).MarshalBinary()
	return State{Size: int64(len(data)), SHA256: sum(data), Offset: int64(k), Hash: b}
}

// resetAfter hijacks the connection, sends a response head declaring the whole
// remaining range, k body bytes, then resets the TCP connection.
func resetAfter(w http.ResponseWriter, r *http.Request, data []byte, etag string, k int, honorRange bool) {
	start := 0
	status := "200 OK"
	if v, ok := strings.CutPrefix(r.Header.Get("Range"), "bytes="); ok && honorRange {
		start, _ = strconv.Atoi(strings.TrimSuffix(v, "-"))
		status = "206 Partial Content"
	}
	conn, bw, err := w.(http.Hijacker).Hijack()
	if err != nil {
		panic(err)
	}
	fmt.Fprintf(bw, "HTTP/1.1 %s\r\nContent-Length: %d\r\nETag: %s\r\n", status, len(data)-start, etag)
	if start > 0 {
		fmt.Fprintf(bw, "Content-Range: bytes %d-%d/%d\r\n", start, len(data)-1, len(data))
	}
	bw.WriteString("\r\n")
	bw.Write(data[start:min(start+k, len(data))])
	bw.Flush()
	if tc, ok := conn.(*net.TCPConn); ok {
		tc.SetLinger(0) // RST instead of FIN
	}
	conn.Close()
}

// countingWriter records every byte written, and how many.
type countingWriter struct {
	buf    bytes.Buffer
	writes int64
	after  func(total int64)
}

func (c *countingWriter) Write(p []byte) (int, error) {
	c.writes += int64(len(p))
	n, err := c.buf.Write(p)
	if c.after != nil {
		c.after(c.writes)
	}
	return n, err
}

func TestFullDownload(t *testing.T) {
	data := testData(1<<20 + 123)
	rec := &recorder{}
	s := newServer(t, rec, serve(data, `"v1"`))
	var sl sleeps
	var dst bytes.Buffer
	res, err := Fetch(context.Background(), baseReq(s.URL, data, &sl), &dst)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(dst.Bytes(), data) {
		t.Fatal("content differs")
	}
	if res.Requests != 1 || res.Retries != 0 || res.State.Offset != int64(len(data)) || res.State.ETag != `"v1"` {
		t.Fatalf("result %+v", res)
	}
	if r := rec.rangeList(); r[0] != "" {
		t.Fatalf("fresh download sent Range %q", r[0])
	}
}

func TestEmptyFile(t *testing.T) {
	s := newServer(t, nil, serve(nil, ""))
	var sl sleeps
	var dst bytes.Buffer
	if _, err := Fetch(context.Background(), baseReq(s.URL, nil, &sl), &dst); err != nil {
		t.Fatal(err)
	}
}

func TestTooLong(t *testing.T) {
	data := testData(100000)
	var sl sleeps
	t.Run("content-length", func(t *testing.T) {
		s := newServer(t, nil, serve(append(bytes.Clone(data), 1), ""))
		var dst bytes.Buffer
		_, err := Fetch(context.Background(), baseReq(s.URL, data, &sl), &dst)
		if !errors.Is(err, ErrTooLong) {
			t.Fatalf("err %v", err)
		}
	})
	t.Run("chunked-extra-byte", func(t *testing.T) {
		s := newServer(t, nil, func(w http.ResponseWriter, r *http.Request) {
			w.Write(data[:50000])
			w.(http.Flusher).Flush() // no Content-Length: chunked
			w.Write(data[50000:])
			w.(http.Flusher).Flush()
			w.Write([]byte{0})
		})
		var dst bytes.Buffer
		res, err := Fetch(context.Background(), baseReq(s.URL, data, &sl), &dst)
		if !errors.Is(err, ErrTooLong) {
			t.Fatalf("err %v", err)
		}
		if !bytes.Equal(dst.Bytes(), data) || res.State.Offset != int64(len(data)) {
			t.Fatalf("dst got %d bytes, want exactly the %d expected", dst.Len(), len(data))
		}
	})
	t.Run("content-range-total", func(t *testing.T) {
		s := newServer(t, nil, serve(append(bytes.Clone(data), 1, 2), ""))
		req := baseReq(s.URL, data, &sl)
		st := stateAt(data, 10)
		req.Resume = &st
		_, err := Fetch(context.Background(), req, io.Discard)
		if !errors.Is(err, ErrTooLong) {
			t.Fatalf("err %v", err)
		}
	})
}

func TestTruncated(t *testing.T) {
	data := testData(100000)
	var sl sleeps
	t.Run("content-length", func(t *testing.T) {
		rec := &recorder{}
		s := newServer(t, rec, serve(data[:len(data)-1], ""))
		_, err := Fetch(context.Background(), baseReq(s.URL, data, &sl), io.Discard)
		if !errors.Is(err, ErrTruncated) || rec.count() != 1 {
			t.Fatalf("err %v after %d requests", err, rec.count())
		}
	})
	t.Run("chunked", func(t *testing.T) {
		rec := &recorder{}
		s := newServer(t, rec, func(w http.ResponseWriter, r *http.Request) {
			w.Write(data[:50000])
			w.(http.Flusher).Flush()
			w.Write(data[50000 : len(data)-7])
		})
		var dst bytes.Buffer
		_, err := Fetch(context.Background(), baseReq(s.URL, data, &sl), &dst)
		if !errors.Is(err, ErrTruncated) || rec.count() != 1 || dst.Len() != len(data)-7 {
			t.Fatalf("err %v after %d requests, %d bytes", err, rec.count(), dst.Len())
		}
	})
}

func TestHashMismatch(t *testing.T) {
	data := testData(70000)
	bad := bytes.Clone(data)
	bad[12345] ^= 1
	s := newServer(t, nil, serve(bad, ""))
	var sl sleeps
	_, err := Fetch(context.Background(), baseReq(s.URL, data, &sl), io.Discard)
	if !errors.Is(err, ErrHashMismatch) {
		t.Fatalf("err %v", err)
	}
}

func TestStatusNoRetry(t *testing.T) {
	data := testData(1000)
	for _, code := range []int{404, 403, 401, 400} {
		rec := &recorder{}
		s := newServer(t, rec, func(w http.ResponseWriter, r *http.Request) { http.Error(w, "no", code) })
		var sl sleeps
		_, err := Fetch(context.Background(), baseReq(s.URL, data, &sl), io.Discard)
		var se *StatusError
		if !errors.Is(err, ErrHTTPStatus) || !errors.As(err, &se) || se.StatusCode != code {
			t.Fatalf("%d: err %v", code, err)
		}
		if errors.Is(err, ErrNotFound) != (code == 404) {
			t.Fatalf("%d: ErrNotFound match wrong: %v", code, err)
		}
		if rec.count() != 1 || len(sl.d) != 0 {
			t.Fatalf("%d: %d requests, %d sleeps", code, rec.count(), len(sl.d))
		}
	}
}

func TestRetry5xxThenSuccess(t *testing.T) {
	data := testData(50000)
	rec := &recorder{}
	s := newServer(t, rec, func(w http.ResponseWriter, r *http.Request) {
		if reqNum(r) <= 2 {
			http.Error(w, "busy", 500+reqNum(r)) // 501, 502
			return
		}
		serve(data, "")(w, r)
	})
	var sl sleeps
	var dst bytes.Buffer
	req := baseReq(s.URL, data, &sl)
	req.Retry.Backoff = 100 * time.Millisecond
	res, err := Fetch(context.Background(), req, &dst)
	if err != nil || !bytes.Equal(dst.Bytes(), data) {
		t.Fatal(err)
	}
	if res.Requests != 3 || res.Retries != 2 || rec.count() != 3 {
		t.Fatalf("result %+v, server saw %d", res, rec.count())
	}
	if fmt.Sprint(sl.d) != "[100ms 200ms]" {
		t.Fatalf("backoff %v", sl.d)
	}
}

func TestRetryExhausted(t *testing.T) {
	data := testData(1000)
	rec := &recorder{}
	s := newServer(t, rec, func(w http.ResponseWriter, r *http.Request) { http.Error(w, "down", 503) })
	var sl sleeps
	req := baseReq(s.URL, data, &sl)
	req.Retry.Attempts = 3
	req.Retry.Backoff = time.Second
	req.Retry.MaxBackoff = 1500 * time.Millisecond
	res, err := Fetch(context.Background(), req, io.Discard)
	var se *StatusError
	if !errors.As(err, &se) || se.StatusCode != 503 || rec.count() != 3 || res.Retries != 2 {
		t.Fatalf("err %v, %d requests, %+v", err, rec.count(), res)
	}
	if fmt.Sprint(sl.d) != "[1s 1.5s]" {
		t.Fatalf("backoff %v", sl.d)
	}
}

func TestRetryAfter429(t *testing.T) {
	data := testData(3000)
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	rec := &recorder{}
	s := newServer(t, rec, func(w http.ResponseWriter, r *http.Request) {
		switch reqNum(r) {
		case 1:
			w.Header().Set("Retry-After", "7")
			http.Error(w, "slow down", 429)
		case 2:
			w.Header().Set("Retry-After", now.Add(42*time.Second).Format(http.TimeFormat))
			http.Error(w, "slow down", 429)
		default:
			serve(data, "")(w, r)
		}
	})
	var sl sleeps
	req := baseReq(s.URL, data, &sl)
	req.Retry.Now = func() time.Time { return now }
	res, err := Fetch(context.Background(), req, io.Discard)
	if err != nil || res.Retries != 2 {
		t.Fatal(err, res)
	}
	if fmt.Sprint(sl.d) != "[7s 42s]" {
		t.Fatalf("sleeps %v", sl.d)
	}

	// A Retry-After beyond MaxRetryAfter ends the download instead.
	s2 := newServer(t, nil, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "3600")
		http.Error(w, "slow down", 429)
	})
	req = baseReq(s2.URL, data, &sl)
	req.Retry.MaxRetryAfter = time.Minute
	_, err = Fetch(context.Background(), req, io.Discard)
	var se *StatusError
	if !errors.As(err, &se) || se.StatusCode != 429 {
		t.Fatalf("err %v", err)
	}
}

func TestConnectionResetMidBody(t *testing.T) {
	data := testData(1<<20 + 17)
	const resets = 8
	rec := &recorder{}
	s := newServer(t, rec, func(w http.ResponseWriter, r *http.Request) {
		if n := reqNum(r); n <= resets {
			resetAfter(w, r, data, `"v1"`, 50000+n*1111, true)
			return
		}
		serve(data, `"v1"`)(w, r)
	})
	var sl sleeps
	dst := &countingWriter{}
	req := baseReq(s.URL, data, &sl)
	req.Retry.Attempts = 2 // progress resets the count: 8 resets still succeed
	res, err := Fetch(context.Background(), req, dst)
	if err != nil {
		t.Fatal(err)
	}
	if dst.writes != int64(len(data)) || !bytes.Equal(dst.buf.Bytes(), data) {
		t.Fatalf("dst got %d bytes (want each of %d once)", dst.writes, len(data))
	}
	if res.Retries != resets || res.Requests != resets+1 {
		t.Fatalf("result %+v", res)
	}
	// Each resumed request starts past the previous one (an RST may discard
	// bytes the client had not read yet, so exact offsets vary).
	checkRanges(t, rec.rangeList(), resets+1)
}

func checkRanges(t *testing.T, rs []string, n int) {
	t.Helper()
	if len(rs) != n || rs[0] != "" {
		t.Fatalf("ranges %q", rs)
	}
	prev := int64(0)
	for _, r := range rs[1:] {
		v, ok := strings.CutPrefix(r, "bytes=")
		off, err := strconv.ParseInt(strings.TrimSuffix(v, "-"), 10, 64)
		if !ok || err != nil || off <= prev || !strings.HasSuffix(r, "-") {
			t.Fatalf("ranges %q", rs)
		}
		prev = off
	}
}

func TestServerIgnoresRange(t *testing.T) {
	data := testData(300000)
	rec := &recorder{}
	s := newServer(t, rec, func(w http.ResponseWriter, r *http.Request) {
		if reqNum(r) <= 2 {
			resetAfter(w, r, data, `"v1"`, 70000*reqNum(r), false) // always 200 from byte 0
			return
		}
		w.Header().Set("ETag", `"v1"`)
		w.Write(data) // 200, ignores Range
	})
	var sl sleeps
	dst := &countingWriter{}
	res, err := Fetch(context.Background(), baseReq(s.URL, data, &sl), dst)
	if err != nil {
		t.Fatal(err)
	}
	if dst.writes != int64(len(data)) || !bytes.Equal(dst.buf.Bytes(), data) || res.Requests != 3 {
		t.Fatalf("dst got %d bytes, %+v", dst.writes, res)
	}
	checkRanges(t, rec.rangeList(), 3)

	// Same, but the re-sent prefix differs (no validators to notice): ErrChanged.
	changed := bytes.Clone(data)
	changed[100] ^= 0xff
	s2 := newServer(t, nil, func(w http.ResponseWriter, r *http.Request) { w.Write(changed) })
	req := baseReq(s2.URL, data, &sl)
	st := stateAt(data, 5000)
	req.Resume = &st
	dst2 := &countingWriter{}
	res, err = Fetch(context.Background(), req, dst2)
	if !errors.Is(err, ErrChanged) || dst2.writes != 0 || res.State.Offset != 5000 {
		t.Fatalf("err %v, wrote %d, %+v", err, dst2.writes, res.State)
	}
}

func TestWrongContentRange(t *testing.T) {
	data := testData(10000)
	rec := &recorder{}
	s := newServer(t, rec, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Range", fmt.Sprintf("bytes 4001-9999/%d", len(data)))
		w.WriteHeader(206)
		w.Write(data[4001:])
	})
	var sl sleeps
	req := baseReq(s.URL, data, &sl)
	st := stateAt(data, 4000)
	req.Resume = &st
	_, err := Fetch(context.Background(), req, io.Discard)
	if !errors.Is(err, ErrBadResponse) || rec.count() != 1 {
		t.Fatalf("err %v, %d requests", err, rec.count())
	}
}

func TestETagChange(t *testing.T) {
	data := testData(200000)
	v2 := testData(200001)[:200000]
	var sl sleeps
	t.Run("if-range-honored", func(t *testing.T) {
		rec := &recorder{}
		var ifRange string
		s := newServer(t, rec, func(w http.ResponseWriter, r *http.Request) {
			if reqNum(r) == 1 {
				resetAfter(w, r, data, `"v1"`, 60000, true)
				return
			}
			ifRange = r.Header.Get("If-Range")
			serve(v2, `"v2"`)(w, r) // ServeContent answers 200: If-Range fails
		})
		dst := &countingWriter{}
		res, err := Fetch(context.Background(), baseReq(s.URL, data, &sl), dst)
		if !errors.Is(err, ErrChanged) {
			t.Fatalf("err %v", err)
		}
		if ifRange != `"v1"` || res.State.Offset != 60000 || dst.writes != 60000 || res.State.ETag != `"v1"` {
			t.Fatalf("If-Range %q, state %+v, wrote %d", ifRange, res.State, dst.writes)
		}
	})
	t.Run("if-range-ignored", func(t *testing.T) {
		s := newServer(t, nil, func(w http.ResponseWriter, r *http.Request) {
			r.Header.Del("If-Range")
			serve(v2, `"v2"`)(w, r) // 206 with the new ETag
		})
		req := baseReq(s.URL, data, &sl)
		st := stateAt(data, 1234)
		st.ETag = `"v1"`
		req.Resume = &st
		_, err := Fetch(context.Background(), req, io.Discard)
		if !errors.Is(err, ErrChanged) {
			t.Fatalf("err %v", err)
		}
	})
	t.Run("416", func(t *testing.T) {
		s := newServer(t, nil, serve(data[:1000], ""))
		req := baseReq(s.URL, data, &sl)
		st := stateAt(data, 5000)
		req.Resume = &st
		_, err := Fetch(context.Background(), req, io.Discard)
		var se *StatusError
		if !errors.Is(err, ErrChanged) || !errors.As(err, &se) || se.StatusCode != 416 {
			t.Fatalf("err %v", err)
		}
	})
}

func TestResumeAcrossRestart(t *testing.T) {
	data := testData(2<<20 + 999)
	rec := &recorder{}
	s := newServer(t, rec, serve(data, `"abc"`))
	var sl sleeps

	// Process 1: persist a checkpoint every 256 KiB; power cut after ~700 KB.
	ctx, cancel := context.WithCancel(context.Background())
	var journal []byte
	dst1 := &countingWriter{after: func(n int64) {
		if n >= 700000 {
			cancel()
		}
	}}
	req := baseReq(s.URL, data, &sl)
	req.ProgressEvery = 256 << 10
	req.OnProgress = func(st State) error {
		if st.Offset != dst1.writes {
			t.Errorf("progress state at %d, dst has %d", st.Offset, dst1.writes)
		}
		var err error
		journal, err = json.Marshal(st)
		return err
	}
	res, err := Fetch(ctx, req, dst1)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err %v", err)
	}
	if res.State.Offset != dst1.writes || res.State.Offset < 700000 {
		t.Fatalf("state %d, wrote %d", res.State.Offset, dst1.writes)
	}

	// Process 2: resume from the last journal entry (~512 KiB), not from the
	// final state, as a writer that synced only at checkpoints would.
	var st State
	if err := json.Unmarshal(journal, &st); err != nil {
		t.Fatal(err)
	}
	if st.Offset < 512<<10 || st.Offset >= 700000 || st.ETag != `"abc"` {
		t.Fatalf("journal %+v", st)
	}
	req = baseReq(s.URL, data, &sl)
	req.Resume = &st
	var dst2 bytes.Buffer
	res, err = Fetch(context.Background(), req, &dst2)
	if err != nil {
		t.Fatal(err)
	}
	got := append(bytes.Clone(dst1.buf.Bytes()[:st.Offset]), dst2.Bytes()...)
	if !bytes.Equal(got, data) || res.ResumedFrom != st.Offset {
		t.Fatalf("resumed download differs (%d bytes)", len(got))
	}
	rs := rec.rangeList()
	if last := rs[len(rs)-1]; last != fmt.Sprintf("bytes=%d-", st.Offset) {
		t.Fatalf("last Range %q", last)
	}

	// A resume point at the end needs no request at all.
	n := rec.count()
	full := stateAt(data, len(data))
	req.Resume = &full
	if _, err := Fetch(context.Background(), req, io.Discard); err != nil || rec.count() != n {
		t.Fatalf("err %v, %d new requests", err, rec.count()-n)
	}
}

func TestBadState(t *testing.T) {
	data := testData(5000)
	var sl sleeps
	req := baseReq("http://127.0.0.1:1/", data, &sl)
	for name, mut := range map[string]func(*State){
		"other-file": func(s *State) { s.SHA256 = sum([]byte("x")) },
		"other-size": func(s *State) { s.Size++ },
		"offset":     func(s *State) { s.Offset++ },
		"hash":       func(s *State) { s.Hash = []byte("junk") },
		"past-end":   func(s *State) { s.Offset = 6000 },
	} {
		st := stateAt(data, 100)
		mut(&st)
		req.Resume = &st
		if _, err := Fetch(context.Background(), req, io.Discard); !errors.Is(err, ErrBadState) {
			t.Errorf("%s: err %v", name, err)
		}
	}
}

func TestProgressErrorAborts(t *testing.T) {
	data := testData(100000)
	s := newServer(t, nil, serve(data, ""))
	var sl sleeps
	req := baseReq(s.URL, data, &sl)
	req.ProgressEvery = 10000
	stop := errors.New("journal full")
	req.OnProgress = func(st State) error { return stop }
	res, err := Fetch(context.Background(), req, io.Discard)
	if !errors.Is(err, stop) || res.State.Offset < 10000 || res.State.Offset >= 20000 {
		t.Fatalf("err %v at %d", err, res.State.Offset)
	}
}

func TestWriteErrorNotRetried(t *testing.T) {
	data := testData(100000)
	rec := &recorder{}
	s := newServer(t, rec, serve(data, ""))
	var sl sleeps
	boom := errors.New("flash write failed")
	_, err := Fetch(context.Background(), baseReq(s.URL, data, &sl), writerFunc(func(p []byte) (int, error) { return 0, boom }))
	if !errors.Is(err, boom) || rec.count() != 1 {
		t.Fatalf("err %v, %d requests", err, rec.count())
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

func TestMaxRange(t *testing.T) {
	data := testData(1000000)
	rec := &recorder{}
	s := newServer(t, rec, serve(data, `"r"`))
	var sl sleeps
	var dst bytes.Buffer
	req := baseReq(s.URL, data, &sl)
	req.MaxRange = 300000
	res, err := Fetch(context.Background(), req, &dst)
	if err != nil || !bytes.Equal(dst.Bytes(), data) {
		t.Fatal(err)
	}
	want := []string{"bytes=0-299999", "bytes=300000-599999", "bytes=600000-899999", "bytes=900000-"}
	if fmt.Sprint(rec.rangeList()) != fmt.Sprint(want) || res.Retries != 0 {
		t.Fatalf("ranges %q, %+v", rec.rangeList(), res)
	}
}

func TestStallRetried(t *testing.T) {
	data := testData(100000)
	done := make(chan struct{})
	t.Cleanup(func() { close(done) })
	rec := &recorder{}
	s := newServer(t, rec, func(w http.ResponseWriter, r *http.Request) {
		if reqNum(r) == 1 {
			w.Header().Set("Content-Length", strconv.Itoa(len(data)))
			w.Write(data[:30000])
			w.(http.Flusher).Flush()
			select { // stall
			case <-done:
			case <-r.Context().Done():
			}
			return
		}
		serve(data, "")(w, r)
	})
	var sl sleeps
	var dst bytes.Buffer
	req := baseReq(s.URL, data, &sl)
	req.StallTimeout = 100 * time.Millisecond
	res, err := Fetch(context.Background(), req, &dst)
	if err != nil || !bytes.Equal(dst.Bytes(), data) || res.Retries != 1 {
		t.Fatal(err, res)
	}
	if rs := rec.rangeList(); rs[1] != "bytes=30000-" {
		t.Fatalf("ranges %q", rs)
	}
}

func TestCancelPrompt(t *testing.T) {
	data := testData(100000)
	done := make(chan struct{})
	t.Cleanup(func() { close(done) })
	s := newServer(t, nil, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(len(data)))
		w.Write(data[:1000])
		w.(http.Flusher).Flush()
		select {
		case <-done:
		case <-r.Context().Done():
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	req := Request{URL: s.URL, Size: int64(len(data)), SHA256: sum(data)} // default sleep and stall timeout
	t0 := time.Now()
	res, err := Fetch(ctx, req, io.Discard)
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(t0) > 2*time.Second || res.State.Offset != 1000 {
		t.Fatalf("err %v after %v, offset %d", err, time.Since(t0), res.State.Offset)
	}

	// Cancellation during a (default, real) backoff sleep.
	s2 := newServer(t, nil, func(w http.ResponseWriter, r *http.Request) { http.Error(w, "x", 503) })
	ctx2, cancel2 := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel2()
	req.URL = s2.URL
	req.Retry.Backoff = time.Hour
	t0 = time.Now()
	_, err = Fetch(ctx2, req, io.Discard)
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(t0) > 2*time.Second {
		t.Fatalf("err %v after %v", err, time.Since(t0))
	}
}

func TestParseContentRange(t *testing.T) {
	for in, want := range map[string]string{
		"bytes 0-9/10":  "0 9 10 <nil>",
		"bytes 5-9/*":   "5 9 -1 <nil>",
		"bytes 5-4/10":  "err",
		"bytes 0-9/9":   "err",
		"bytes */10":    "err",
		"items 0-9/10":  "err",
		"bytes 0-9":     "err",
		"bytes -1-9/10": "err",
	} {
		a, b, c, err := parseContentRange(in)
		got := fmt.Sprint(a, b, c, err)
		if err != nil {
			got = "err"
		}
		if got != want {
			t.Errorf("%q: %s, want %s", in, got, want)
		}
	}
}

func BenchmarkFetch64MiB(b *testing.B) {
	data := testData(64 << 20)
	s := newServer(b, nil, serve(data, `"bench"`))
	req := Request{URL: s.URL, Size: int64(len(data)), SHA256: sum(data), Client: &http.Client{}}
	b.SetBytes(int64(len(data)))
	b.ResetTimer()
	for b.Loop() {
		if _, err := Fetch(context.Background(), req, io.Discard); err != nil {
			b.Fatal(err)
		}
	}
}

func TestSlowWriterIsNotAStall(t *testing.T) {
	data := testData(50000)
	rec := &recorder{}
	s := newServer(t, rec, serve(data, ""))
	var sl sleeps
	req := baseReq(s.URL, data, &sl)
	req.StallTimeout = 30 * time.Millisecond
	req.BufferSize = 16384
	var dst bytes.Buffer
	slow := writerFunc(func(p []byte) (int, error) { time.Sleep(60 * time.Millisecond); return dst.Write(p) })
	if _, err := Fetch(context.Background(), req, slow); err != nil || rec.count() != 1 || !bytes.Equal(dst.Bytes(), data) {
		t.Fatalf("err %v, %d requests", err, rec.count())
	}
}

// Without an expected digest Fetch checks only the size; resuming needs no hash state, and a
// server that ignores Range still resumes (the prefix is skipped unchecked).
func TestNoExpectedHash(t *testing.T) {
	data := testData(300_000)
	for _, ignoreRange := range []bool{false, true} {
		h := serve(data, "")
		if ignoreRange {
			h = func(w http.ResponseWriter, r *http.Request) { w.Write(data) }
		}
		srv := newServer(t, nil, h)
		req := baseReq(srv.URL, data, nil)
		req.SHA256 = nil
		var out bytes.Buffer
		res, err := Fetch(context.Background(), req, &out)
		if err != nil || !bytes.Equal(out.Bytes(), data) || res.State.Hash != nil {
			t.Fatalf("ignoreRange=%v: err %v, %d bytes, hash state %x", ignoreRange, err, out.Len(), res.State.Hash)
		}
		st := NewState(int64(len(data)), nil)
		st.Offset = 123_457
		req.Resume = &st
		out.Reset()
		if _, err := Fetch(context.Background(), req, &out); err != nil || !bytes.Equal(out.Bytes(), data[123_457:]) {
			t.Fatalf("ignoreRange=%v: resume: err %v, %d bytes", ignoreRange, err, out.Len())
		}
		// The size is still enforced.
		req.Resume, req.Size = nil, int64(len(data))-1
		if _, err := Fetch(context.Background(), req, io.Discard); !errors.Is(err, ErrTooLong) {
			t.Errorf("ignoreRange=%v: too long: %v", ignoreRange, err)
		}
	}
}

// A Reader's State, taken between two Reads at offsets the consumer picks, resumes the
// download in a new Reader exactly there: the bytes after it arrive once, and the SHA-256
// still covers the whole file.
func TestReaderStateAtConsumerOffsets(t *testing.T) {
	data := testData(200_000)
	rec := &recorder{}
	s := newServer(t, rec, serve(data, `"v1"`))
	var sl sleeps
	r, err := Open(context.Background(), baseReq(s.URL, data, &sl))
	if err != nil {
		t.Fatal(err)
	}
	var got []byte
	for _, n := range []int{1, 16, 4093, 70_000} { // odd sizes: the offsets are the consumer's
		buf := make([]byte, n)
		if _, err := io.ReadFull(r, buf); err != nil {
			t.Fatal(err)
		}
		got = append(got, buf...)
	}
	st := r.State()
	r.Close()
	if st.Offset != int64(len(got)) || st.ETag != `"v1"` {
		t.Fatalf("state at %d (etag %q) after %d bytes", st.Offset, st.ETag, len(got))
	}
	req := baseReq(s.URL, data, &sl)
	req.Resume = &st
	r, err = Open(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	rest, err := io.ReadAll(r)
	if err != nil || !bytes.Equal(append(got, rest...), data) {
		t.Fatalf("resumed: %v, %d+%d bytes", err, len(got), len(rest))
	}
	if rs := rec.rangeList(); rs[len(rs)-1] != fmt.Sprintf("bytes=%d-", st.Offset) {
		t.Fatalf("ranges %q", rs)
	}
}

// The Read that would hand out the last bytes of a file whose SHA-256 is not the expected
// one returns ErrHashMismatch instead of them, however the reads fall: a consumer (an image
// reader that releases its last chunk only at the end of the stream) never completes a
// file the manifest does not name. A resume point at the end is checked too.
func TestReaderWithholdsTheEndOfAMismatch(t *testing.T) {
	data := testData(100_000)
	bad := bytes.Clone(data)
	bad[500] ^= 1
	s := newServer(t, nil, serve(bad, ""))
	var sl sleeps
	for _, n := range []int{1, 999, 4096, 100_000, 1 << 20} {
		r, err := Open(context.Background(), baseReq(s.URL, data, &sl))
		if err != nil {
			t.Fatal(err)
		}
		var total int
		buf := make([]byte, n)
		for {
			k, err := r.Read(buf)
			total += k
			if err != nil {
				if !errors.Is(err, ErrHashMismatch) {
					t.Fatalf("reads of %d: %v", n, err)
				}
				break
			}
		}
		if total >= len(data) || r.State().Offset != int64(total) {
			t.Errorf("reads of %d: %d of %d bytes handed out, state at %d", n, total, len(data), r.State().Offset)
		}
		if _, err := r.Read(buf); !errors.Is(err, ErrHashMismatch) {
			t.Errorf("reads of %d: the error is not sticky: %v", n, err)
		}
		r.Close()
	}
	req := baseReq(s.URL, data, &sl)
	st := stateAt(bad, len(bad))
	st.SHA256 = sum(data)
	req.Resume = &st
	r, err := Open(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Read(make([]byte, 1)); !errors.Is(err, ErrHashMismatch) {
		t.Errorf("resumed at the end: %v", err)
	}
}
