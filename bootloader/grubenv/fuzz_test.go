package grubenv

import (
	"bytes"
	"errors"
	"testing"
)

// FuzzParse checks that Parse never panics, that every error is one of the sentinels, and
// that a parsed block re-encodes to a block of the same size that parses to the same lines.
func FuzzParse(f *testing.F) {
	e := New()
	e.Set("a", "x\\y\nz")
	b, _ := e.Encode()
	f.Add(b)
	f.Add(bytes.Repeat([]byte("#"), 512))
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := Parse(b)
		if err != nil {
			if !errors.Is(err, ErrSize) && !errors.Is(err, ErrSignature) && !errors.Is(err, ErrBroken) && !errors.Is(err, ErrSyntax) {
				t.Fatalf("unexpected error %v", err)
			}
			return
		}
		out, err := e.Encode()
		if err != nil {
			t.Fatalf("re-encoding a parsed block: %v", err)
		}
		if len(out) != len(b) {
			t.Fatalf("size changed: %d -> %d", len(b), len(out))
		}
		e2, err := Parse(out)
		if err != nil {
			t.Fatalf("re-encoded block does not parse: %v", err)
		}
		if len(e2.lines) != len(e.lines) {
			t.Fatalf("lines differ")
		}
		for i := range e.lines {
			if e.lines[i] != e2.lines[i] {
				t.Fatalf("line %d differs: %+v vs %+v", i, e.lines[i], e2.lines[i])
			}
		}
	})
}
