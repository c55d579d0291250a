package imagetest

import (
	"bytes"
	"testing"
)

// A Buffer holds what was written where it was written, in any order, zeros in the gaps; a
// negative offset is refused.
func TestBuffer(t *testing.T) {
	var b Buffer
	for _, w := range []struct {
		p   string
		off int64
	}{{"world", 6}, {"hello", 0}, {"!", 12}} {
		if n, err := b.WriteAt([]byte(w.p), w.off); n != len(w.p) || err != nil {
			t.Fatalf("WriteAt(%q, %d) = %d, %v", w.p, w.off, n, err)
		}
	}
	if want := []byte("hello\x00world\x00!"); !bytes.Equal(b.Bytes(), want) {
		t.Fatalf("Bytes() = %q, want %q", b.Bytes(), want)
	}
	if _, err := b.WriteAt([]byte("x"), -1); err == nil {
		t.Fatal("a negative offset was written")
	}
}
