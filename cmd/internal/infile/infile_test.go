package infile

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func TestOpenSized(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	if err := os.WriteFile(p, make([]byte, 1234), 0o644); err != nil {
		t.Fatal(err)
	}
	f, n, err := OpenSized(p)
	if err != nil || n != 1234 {
		t.Fatalf("regular file: %d %v", n, err)
	}
	f.Close()
	if _, _, err := OpenSized(dir); err == nil || !strings.Contains(err.Error(), "directory") {
		t.Fatalf("directory: %v", err)
	}
	if _, _, err := OpenSized(filepath.Join(dir, "nope")); !os.IsNotExist(err) {
		t.Fatalf("missing: %v", err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	if _, _, err := OpenSized("/dev/fd/" + strconv.Itoa(int(r.Fd()))); err == nil || !strings.Contains(err.Error(), "pipe") {
		t.Fatalf("pipe: %v", err)
	}
}
