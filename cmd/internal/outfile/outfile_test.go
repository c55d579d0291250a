package outfile

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestCommitReplacesAtomically(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "out.bin")
	if err := os.WriteFile(p, []byte("old content that is long"), 0o600); err != nil {
		t.Fatal(err)
	}
	o, err := Create(p, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := o.WriteAt([]byte("new"), 0); err != nil {
		t.Fatal(err)
	}
	// Until Commit the old content stays.
	if b, _ := os.ReadFile(p); string(b) != "old content that is long" {
		t.Fatalf("before commit: %q", b)
	}
	if err := o.Commit(); err != nil {
		t.Fatal(err)
	}
	o.Abort() // no-op now
	b, _ := os.ReadFile(p)
	st, _ := os.Stat(p)
	if string(b) != "new" || st.Mode().Perm() != 0o644 {
		t.Fatalf("after commit: %q mode %v", b, st.Mode().Perm())
	}
	if left, _ := filepath.Glob(filepath.Join(dir, ".*.tmp")); len(left) > 0 {
		t.Fatalf("temporary files left: %v", left)
	}
	if err := o.Commit(); !errors.Is(err, os.ErrClosed) {
		t.Fatalf("second Commit: %v", err)
	}
}

func TestAbortLeavesNothing(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "new.bin")
	o, err := Create(p, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	o.Write([]byte("partial"))
	o.Abort()
	if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("aborted output exists: %v", err)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, "*")); len(left) > 0 {
		t.Fatalf("files left: %v", left)
	}
}

// A symbolic link is followed and stays a link; a device is written through, not replaced.
func TestNonRegularWrittenThrough(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "target")
	if err := os.WriteFile(target, []byte("xxxxxxxx"), 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(link, []byte("abc"), 0o644); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Lstat(link); fi.Mode()&os.ModeSymlink == 0 {
		t.Fatal("the link was replaced")
	}
	if b, _ := os.ReadFile(target); string(b) != "abc" {
		t.Fatalf("target: %q", b)
	}
	// /dev/null stays a device.
	if err := WriteFile(os.DevNull, []byte("discard"), 0o644); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Lstat(os.DevNull); err != nil || fi.Mode().IsRegular() {
		t.Fatalf("%s is no longer a device: %v %v", os.DevNull, fi.Mode(), err)
	}
}
