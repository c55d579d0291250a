package grubenv

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

func mustEncode(t *testing.T, e *Env) []byte {
	t.Helper()
	b, err := e.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestNewEncode(t *testing.T) {
	b := mustEncode(t, New())
	if len(b) != DefaultSize || !bytes.HasPrefix(b, []byte(Signature)) {
		t.Fatalf("bad empty block %q", b[:40])
	}
	if strings.Trim(string(b[len(Signature):]), "#") != "" {
		t.Fatal("filler is not all '#'")
	}
}

func TestEscapingRoundTrip(t *testing.T) {
	e := New()
	vars := []Var{{"a", `x\y`}, {"b", "line1\nline2"}, {"c", ""}, {"d", "e=f"}, {"e", "\\\n\\"}}
	for _, v := range vars {
		if err := e.Set(v.Name, v.Value); err != nil {
			t.Fatal(err)
		}
	}
	b := mustEncode(t, e)
	want := Signature + "a=x\\\\y\nb=line1\\\nline2\nc=\nd=e=f\ne=\\\\\\\n\\\\\n"
	if !bytes.HasPrefix(b, []byte(want)) || b[len(want)] != '#' {
		t.Fatalf("encoding: got %q", b[:len(want)+1])
	}
	e2, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	got := e2.Vars()
	if len(got) != len(vars) {
		t.Fatalf("got %q", got)
	}
	for i := range vars {
		if got[i] != vars[i] {
			t.Errorf("var %d: got %q want %q", i, got[i], vars[i])
		}
	}
}

func TestSetUnsetOrder(t *testing.T) {
	e := New()
	for _, n := range []string{"a", "b", "c"} {
		if err := e.Set(n, n+"1"); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.Set("a", "longer value"); err != nil {
		t.Fatal(err)
	}
	if !e.Unset("b") || e.Unset("b") {
		t.Fatal("unset result")
	}
	b := mustEncode(t, e)
	want := Signature + "a=longer value\nc=c1\n"
	if !bytes.HasPrefix(b, []byte(want)) || b[len(want)] != '#' {
		t.Fatalf("got %q", b[:len(want)+1])
	}
	if v, ok := e.Get("c"); !ok || v != "c1" {
		t.Fatal("get c")
	}
	if _, ok := e.Get("b"); ok {
		t.Fatal("b still set")
	}
}

func TestParseErrors(t *testing.T) {
	good := mustEncode(t, New())
	cases := []struct {
		name string
		b    []byte
		err  error
		off  int
	}{
		{"short", good[:1000], ErrSize, 1000},
		{"empty", nil, ErrSize, 0},
		{"signature", append([]byte("# GRUB Environment Blocc\n"), good[25:]...), ErrSignature, 23},
		{"broken", func() []byte { b := bytes.Clone(good); copy(b[25:], "a=b"); return b }(), ErrBroken, 27},
		{"no newline in value", func() []byte {
			b := bytes.Clone(good)
			copy(b[25:], "a=b\\\n")
			return b
		}(), ErrBroken, 25},
		{"syntax", func() []byte { b := bytes.Clone(good); copy(b[25:], "ab\n"); return b }(), ErrSyntax, 25},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse(c.b)
			if !errors.Is(err, c.err) {
				t.Fatalf("got %v, want %v", err, c.err)
			}
			var pe *ParseError
			if !errors.As(err, &pe) || pe.Offset != c.off {
				t.Fatalf("offset: got %v, want %d", err, c.off)
			}
		})
	}
}

func TestParseKeepsCommentsAndSize(t *testing.T) {
	b := bytes.Repeat([]byte("#"), 2048)
	body := Signature + "# WARNING: keep me\nx=1\n# another\ny=2\n"
	copy(b, body)
	e, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	if e.Size() != 2048 {
		t.Fatal("size not kept")
	}
	if got := mustEncode(t, e); !bytes.Equal(got, b) {
		t.Fatalf("re-encoding differs: %q", got[:len(body)+2])
	}
}

func TestTooLarge(t *testing.T) {
	e := New()
	room := DefaultSize - len(Signature) - len("v=\n")
	if err := e.Set("v", strings.Repeat("x", room)); err != nil {
		t.Fatalf("exactly full block refused: %v", err)
	}
	b := mustEncode(t, e)
	if b[len(b)-1] != '\n' {
		t.Fatal("full block should end in newline")
	}
	if _, err := Parse(b); err != nil {
		t.Fatalf("full block does not parse: %v", err)
	}
	if err := e.Set("v", strings.Repeat("x", room+1)); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("got %v", err)
	}
	if v, _ := e.Get("v"); len(v) != room {
		t.Fatal("failed Set changed the env")
	}
	if err := e.Set("w", ""); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("got %v", err)
	}
}

func TestBadNamesValues(t *testing.T) {
	e := New()
	for _, n := range []string{"", "a=b", "a\nb", `a\b`, "#a", "a\x00"} {
		if err := e.Set(n, "v"); !errors.Is(err, ErrName) {
			t.Errorf("%q: got %v", n, err)
		}
	}
	if err := e.Set("a", "x\x00"); !errors.Is(err, ErrValue) {
		t.Errorf("got %v", err)
	}
}

func TestDuplicates(t *testing.T) {
	b := mustEncode(t, New())
	copy(b[len(Signature):], "a=1\nb=2\na=3\n")
	e, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := e.Get("a"); v != "3" {
		t.Fatalf("Get returns %q, want the last", v)
	}
	if err := e.Set("a", "4"); err != nil {
		t.Fatal(err)
	}
	if got := e.Vars(); len(got) != 2 || got[0] != (Var{"a", "4"}) || got[1] != (Var{"b", "2"}) {
		t.Fatalf("got %q", got)
	}
}

func TestWriteFileUpdate(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "grubenv")
	if err := Update(path, func(e *Env) error { return e.Set("k", "v") }); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil || st.Size() != DefaultSize {
		t.Fatalf("new file: %v %v", st, err)
	}
	// An existing 1536-byte block keeps its size.
	e, _ := NewSize(1536)
	if err := WriteFile(path, e); err != nil {
		t.Fatal(err)
	}
	if err := Update(path, func(e *Env) error { return e.Set("k", "w") }); err != nil {
		t.Fatal(err)
	}
	e2, err := ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := e2.Get("k"); v != "w" || e2.Size() != 1536 {
		t.Fatalf("got %q size %d", v, e2.Size())
	}
	// fn errors write nothing; no temporary files are left behind.
	boom := errors.New("boom")
	if err := Update(path, func(*Env) error { return boom }); !errors.Is(err, boom) {
		t.Fatal(err)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Fatalf("leftover files: %v", ents)
	}
	// A corrupt file is reported, not replaced.
	os.WriteFile(path, []byte("junk"), 0o644)
	if err := Update(path, func(e *Env) error { return nil }); !errors.Is(err, ErrSize) {
		t.Fatalf("got %v", err)
	}
}

// TestWriteFileKeepsMode: a new block file is 0644; a rewritten one keeps its mode.
func TestWriteFileKeepsMode(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no Unix modes")
	}
	path := filepath.Join(t.TempDir(), "grubenv")
	for _, want := range []fs.FileMode{0o644, 0o600} {
		if err := WriteFile(path, New()); err != nil {
			t.Fatal(err)
		}
		if st, err := os.Stat(path); err != nil || st.Mode().Perm() != want {
			t.Fatalf("mode %v, want %v (%v)", st.Mode(), want, err)
		}
		os.Chmod(path, 0o600)
	}
}
