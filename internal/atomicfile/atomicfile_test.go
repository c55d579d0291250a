package atomicfile

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
)

func TestWriteFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "env")
	if err := WriteFile(path, []byte("one"), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(path, []byte("two"), 0o600); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	st, _ := os.Stat(path)
	if err != nil || string(b) != "two" || runtime.GOOS != "windows" && st.Mode().Perm() != 0o600 {
		t.Fatalf("%q %v %v", b, st.Mode(), err)
	}
	if names := dirNames(t, dir); !slices.Equal(names, []string{"env"}) {
		t.Errorf("left in the folder: %q", names)
	}
	if err := WriteFile(filepath.Join(dir, "no", "such"), nil, 0o600); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing folder: %v", err)
	}
}

// TestReplaceOrder: the data is synced before the rename, and the folder after it.
func TestReplaceOrder(t *testing.T) {
	rec := &faultFS{}
	path := filepath.Join(t.TempDir(), "rec")
	if err := Replace(rec, path, "rec.tmp-*", []byte("data")); err != nil {
		t.Fatal(err)
	}
	want := []string{"create", "write", "sync", "close", "rename", "syncdir"}
	if !slices.Equal(rec.ops, want) {
		t.Errorf("operations %q, want %q", rec.ops, want)
	}
	if !strings.HasPrefix(filepath.Base(rec.tmp), "rec.tmp-") {
		t.Errorf("temporary file %s, not named by the pattern", rec.tmp)
	}
}

// TestReplaceFails: a failure before the rename leaves the old content and no temporary
// file; a failed folder sync is reported after the rename.
func TestReplaceFails(t *testing.T) {
	for _, op := range []string{"create", "write", "sync", "close", "rename", "syncdir"} {
		t.Run(op, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "f")
			if err := os.WriteFile(path, []byte("old"), 0o600); err != nil {
				t.Fatal(err)
			}
			err := Replace(&faultFS{fail: op}, path, "", []byte("new"))
			if !errors.Is(err, errInjected) {
				t.Fatalf("error %v", err)
			}
			want := "old"
			if op == "syncdir" {
				want = "new"
			}
			if b, _ := os.ReadFile(path); string(b) != want {
				t.Errorf("file holds %q, want %q", b, want)
			}
			if names := dirNames(t, dir); !slices.Equal(names, []string{"f"}) {
				t.Errorf("left in the folder: %q", names)
			}
		})
	}
}

func TestSyncDir(t *testing.T) {
	if err := SyncDir(t.TempDir()); err != nil {
		t.Fatal(err)
	}
	if runtime.GOOS != "linux" {
		t.Skip("SyncDir does nothing outside Linux")
	}
	if err := SyncDir(filepath.Join(t.TempDir(), "nope")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing folder: %v", err)
	}
}

var errInjected = errors.New("injected fault")

// faultFS is the OS file system that records its operations and fails the one named fail.
type faultFS struct {
	fail string
	ops  []string
	tmp  string
}

func (f *faultFS) op(name string) error {
	f.ops = append(f.ops, name)
	if name == f.fail {
		return errInjected
	}
	return nil
}

func (f *faultFS) CreateTemp(dir, pattern string) (File, error) {
	if err := f.op("create"); err != nil {
		return nil, err
	}
	file, err := OS{}.CreateTemp(dir, pattern)
	if err != nil {
		return nil, err
	}
	f.tmp = file.Name()
	return faultFile{file, f}, nil
}

func (f *faultFS) Rename(o, n string) error {
	if err := f.op("rename"); err != nil {
		return err
	}
	return os.Rename(o, n)
}

func (f *faultFS) SyncDir(dir string) error {
	if err := f.op("syncdir"); err != nil {
		return err
	}
	return SyncDir(dir)
}

func (f *faultFS) Remove(name string) error { return os.Remove(name) }

type faultFile struct {
	File
	fs *faultFS
}

func (f faultFile) Write(b []byte) (int, error) {
	if err := f.fs.op("write"); err != nil {
		return 0, err
	}
	return f.File.Write(b)
}

func (f faultFile) Sync() error {
	if err := f.fs.op("sync"); err != nil {
		return err
	}
	return f.File.Sync()
}

func (f faultFile) Close() error {
	err := f.File.Close()
	if ferr := f.fs.op("close"); ferr != nil {
		return ferr
	}
	return err
}

// dirNames lists the names in dir: what a failed or finished Replace left there.
func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(dir, "*"))
	if err != nil {
		t.Fatal(err)
	}
	for i, n := range names {
		names[i] = filepath.Base(n)
	}
	return names
}
