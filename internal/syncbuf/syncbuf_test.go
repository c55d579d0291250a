package syncbuf

import (
	"strings"
	"sync"
	"testing"
)

// TestConcurrentWrites: writes from many goroutines all land, whole, and Since reads on
// from a mark.
func TestConcurrentWrites(t *testing.T) {
	var b Buffer
	var shared strings.Builder
	w := NewWriter(&shared)
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() {
			b.Write([]byte("line\n"))
			w.Write([]byte("line\n"))
		})
	}
	wg.Wait()
	want := strings.Repeat("line\n", 50)
	if b.String() != want || shared.String() != want {
		t.Fatalf("buffer %q, writer %q; want %q each", b.String(), shared.String(), want)
	}
	mark := b.Len()
	b.Write([]byte("after"))
	if got := b.Since(mark); got != "after" {
		t.Fatalf("Since(%d) = %q, want %q", mark, got, "after")
	}
}
