package hub

import (
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// FileHandler serves update files at …/{fileID}/{fileName} (the last two
// path segments, so it can be mounted under any prefix): GET and HEAD with
// Range, If-Range and an ETag of the file's SHA-256. Anything else is 404
// (405 for other methods). Every request is logged (see logFileRequest).
func (s *Service) FileHandler() http.Handler {
	serve := s.serveFile()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		cw := &countingWriter{ResponseWriter: w}
		serve.ServeHTTP(cw, r)
		s.logFileRequest(r, cw, time.Since(start))
	})
}

// countingWriter counts the body bytes written and keeps the status.
type countingWriter struct {
	http.ResponseWriter
	status int
	n      int64
}

func (w *countingWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *countingWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(p)
	w.n += int64(n)
	return n, err
}

// logFileRequest logs a file request with the range asked for and the bytes sent, so that a
// person can follow a device's download: at Info when it begins or ends a download (the
// response holds the file's first or last byte) or was cut short, at Warn when refused, at
// Debug for the ranges between (a device downloading in small chunks sends many).
func (s *Service) logFileRequest(r *http.Request, w *countingWriter, took time.Duration) {
	status := w.status
	if status == 0 {
		status = http.StatusOK
	}
	args := []any{"remote", r.RemoteAddr, "method", r.Method, "path", r.URL.Path, "range", r.Header.Get("Range"),
		"status", status, "bytes", w.n, "took", took.Round(time.Millisecond).String()}
	if status >= 400 {
		s.opts.Logger.Warn("hub: file request refused", args...)
		return
	}
	want, _ := strconv.ParseInt(w.Header().Get("Content-Length"), 10, 64)
	first, last, size, ok := servedRange(status, w.Header())
	if ok {
		args = append(args, "first", first, "last", last, "size", size)
	}
	switch {
	case r.Method == http.MethodGet && w.n < want:
		s.opts.Logger.Info("hub: file request cut short", append(args, "wanted", want)...)
	case r.Method == http.MethodGet && ok && (first == 0 || last == size-1):
		s.opts.Logger.Info("hub: file served", args...)
	default:
		s.opts.Logger.Debug("hub: file served", args...)
	}
}

// servedRange reads the byte range a 200 or 206 response holds from its headers.
func servedRange(status int, h http.Header) (first, last, size int64, ok bool) {
	switch status {
	case http.StatusOK:
		n, err := strconv.ParseInt(h.Get("Content-Length"), 10, 64)
		return 0, n - 1, n, err == nil
	case http.StatusPartialContent:
		_, err := fmt.Sscanf(h.Get("Content-Range"), "bytes %d-%d/%d", &first, &last, &size)
		return first, last, size, err == nil
	}
	return 0, 0, 0, false
}
