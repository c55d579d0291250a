package httpcount

import (
	"bytes"
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
