package httpcount

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

// The body bytes a ranged answer sends are counted; headers are not.
func TestWriterCountsBody(t *testing.T) {
	var n atomic.Int64
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodGet, "/f", nil)
	req.Header.Set("Range", "bytes=10-")
	http.ServeContent(Writer{ResponseWriter: rec, N: &n}, req, "f", time.Unix(0, 0), bytes.NewReader(make([]byte, 100)))
	if rec.Code != http.StatusPartialContent || n.Load() != 90 || rec.Body.Len() != 90 {
		t.Fatalf("status %d, counted %d, body %d; want 206, 90, 90", rec.Code, n.Load(), rec.Body.Len())
	}
}

// Files serves what was put, from the Range asked for, counts requests and body bytes, and
// answers 404 for what it does not hold (or no longer: Drop); a Hook answers first.
func TestFiles(t *testing.T) {
	var f Files
	srv := httptest.NewServer(&f)
	defer srv.Close()
	f.Put("/a", []byte("0123456789"))
	get := func(path, rng string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, srv.URL+path, nil)
		if rng != "" {
			req.Header.Set("Range", rng)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("/a", "bytes=4-"); code != http.StatusPartialContent || body != "456789" || f.LastRange() != "bytes=4-" {
		t.Fatalf("ranged GET: %d %q, last Range %q", code, body, f.LastRange())
	}
	if code, body := get("/a", ""); code != http.StatusOK || body != "0123456789" {
		t.Fatalf("GET: %d %q", code, body)
	}
	f.Drop("/a")
	if code, _ := get("/a", ""); code != http.StatusNotFound {
		t.Fatalf("dropped file: %d", code)
	}
	f.Hook = func(w http.ResponseWriter, r *http.Request) bool {
		http.Error(w, "busy", http.StatusServiceUnavailable)
		return true
	}
	if code, _ := get("/a", ""); code != http.StatusServiceUnavailable {
		t.Fatalf("hooked: %d", code)
	}
	if f.Hits.Load() != 4 || f.Sent.Load() != 16 {
		t.Fatalf("counted %d requests and %d bytes, want 4 and 16", f.Hits.Load(), f.Sent.Load())
	}
}
