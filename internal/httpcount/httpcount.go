// Package httpcount counts the body bytes an HTTP handler writes, as the test file servers
// do to see what a download fetched (again).
package httpcount

import (
	"net/http"
	"sync/atomic"
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
