// Package httpcount counts the body bytes an HTTP handler writes, as the test file servers
// do to see what a download fetched (again), and is such a file server (Files).
package httpcount

import (
	"bytes"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Writer is an http.ResponseWriter that adds every body byte written through it to N.
type Writer struct {
	http.ResponseWriter
	N *atomic.Int64
}

func (w Writer) Write(p []byte) (int, error) {
	n, err := w.ResponseWriter.Write(p)
	w.N.Add(int64(n))
	return n, err
}

// Files is an http.Handler that serves files held in memory by their path, with Range
// support (http.ServeContent), and counts the requests (Hits) and the body bytes it sent
// (Sent). The zero value serves nothing yet; it is safe for concurrent use.
type Files struct {
	Hits, Sent atomic.Int64
	// Hook, if set, may answer a request itself (it returns true then). Set it while no
	// request is being served.
	Hook func(w http.ResponseWriter, r *http.Request) bool

	mu     sync.Mutex
	files  map[string][]byte
	ranges []string
}

// Put serves data at path ("/name").
func (f *Files) Put(path string, data []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.files == nil {
		f.files = map[string][]byte{}
	}
	f.files[path] = data
}

// Drop removes the file at path: requests for it get 404.
func (f *Files) Drop(path string) {
	f.mu.Lock()
	delete(f.files, path)
	f.mu.Unlock()
}

// Get returns the file at path.
func (f *Files) Get(path string) ([]byte, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	data, ok := f.files[path]
	return data, ok
}

// LastRange returns the Range header of the last request ("" for none).
func (f *Files) LastRange() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.ranges) == 0 {
		return ""
	}
	return f.ranges[len(f.ranges)-1]
}

func (f *Files) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.Hits.Add(1)
	f.mu.Lock()
	f.ranges = append(f.ranges, r.Header.Get("Range"))
	f.mu.Unlock()
	if f.Hook != nil && f.Hook(w, r) {
		return
	}
	data, ok := f.Get(r.URL.Path)
	if !ok {
		http.NotFound(w, r)
		return
	}
	http.ServeContent(Writer{ResponseWriter: w, N: &f.Sent}, r, "f", time.Unix(1.7e9, 0), bytes.NewReader(data))
}
