package golden

import (
	"os"
	"path/filepath"
	"testing"
)

// fakeT records what Check reports instead of failing the real test.
type fakeT struct {
	testing.TB
	failed bool
}

func (f *fakeT) Helper()               {}
func (f *fakeT) Name() string          { return "TestX" }
func (f *fakeT) Errorf(string, ...any) { f.failed = true }
func (f *fakeT) Fatalf(string, ...any) { f.failed = true }
func (f *fakeT) Fatal(...any)          { f.failed = true }

// TestCheck: the same text passes, another text or a missing file fails, and -update writes
// the file (with its folder) so that it passes next time.
func TestCheck(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "out.txt")
	for _, c := range []struct {
		update     bool
		got        string
		wantFailed bool
	}{
		{false, "one\n", true}, // no golden file yet
		{true, "one\n", false},
		{false, "one\n", false},
		{false, "two\n", true},
	} {
		*update = c.update
		f := &fakeT{}
		Check(f, path, c.got)
		if f.failed != c.wantFailed {
			t.Errorf("update=%v got=%q: failed=%v, want %v", c.update, c.got, f.failed, c.wantFailed)
		}
	}
	*update = false
	if b, err := os.ReadFile(path); err != nil || string(b) != "one\n" {
		t.Fatalf("golden file: %q, %v", b, err)
	}
}
