package agent

import (
	"bytes"
	"encoding/hex"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/aduflash/aduflash/image"
	"github.com/aduflash/aduflash/image/adaptive"
	"github.com/aduflash/aduflash/internal/bytesize"
	"github.com/aduflash/aduflash/journal"
)

func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	names, err := journal.OSFS().ReadDir(dir)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return names
}

// The frame cache keeps ranges whole under their offset and length, up to its size across
// restarts, empties the folders of other images when it first keeps one, drops temporary
// files a power cut left, and clear removes its folder.
func TestFrameCache(t *testing.T) {
	state := t.TempDir()
	fsys := journal.OSFS()
	h1, h2 := image.Digest{1}, image.Digest{2}
	r1, r2 := bytes.Repeat([]byte{0xa1}, 600), bytes.Repeat([]byte{0xb2}, 300)

	c := newFrameCache(fsys, state, h1, 1000)
	if _, ok := c.Range(0, 600); ok {
		t.Fatal("an empty cache returned a range")
	}
	if err := c.Keep(4096, r1); err != nil {
		t.Fatal(err)
	}
	if b, ok := c.Range(4096, 600); !ok || !bytes.Equal(b, r1) {
		t.Fatalf("kept range: %v, %d bytes", ok, len(b))
	}
	for _, q := range [][2]int64{{4096, 599}, {4096, 601}, {4095, 600}, {0, 600}} {
		if _, ok := c.Range(q[0], q[1]); ok {
			t.Errorf("Range(%d, %d) answered from the range kept at 4096 of 600 bytes", q[0], q[1])
		}
	}
	// Past its size, a range is not kept (and that is no error).
	if err := c.Keep(8192, append(r2, r2...)); err != nil {
		t.Fatal(err)
	}
	if _, ok := c.Range(8192, 600); ok {
		t.Fatal("a range past the cache's size was kept")
	}
	// A cache opened again (the agent restarted) counts what the folder holds, and drops
	// what a cut Replace left behind.
	if err := os.WriteFile(filepath.Join(c.dir, ".8192-300.tmp-1"), r2[:100], 0o600); err != nil {
		t.Fatal(err)
	}
	c = newFrameCache(fsys, state, h1, 1000)
	if b, ok := c.Range(4096, 600); !ok || !bytes.Equal(b, r1) {
		t.Fatal("the range was not found after a restart")
	}
	if err := c.Keep(9000, r2); err != nil {
		t.Fatal(err)
	}
	if err := c.Keep(10000, r2); err != nil {
		t.Fatal(err)
	}
	if got, want := dirNames(t, c.dir), []string{"4096-600", "9000-300"}; !slices.Equal(got, want) {
		t.Fatalf("the folder holds %v, want %v (the size counts the range kept before the restart)", got, want)
	}
	// Another image's cache empties the folder of the first when it keeps a range.
	os.WriteFile(filepath.Join(state, FrameCacheDir, "stray"), []byte("x"), 0o600)
	c2 := newFrameCache(fsys, state, h2, 1000)
	if err := c2.Keep(0, r2); err != nil {
		t.Fatal(err)
	}
	if got := dirNames(t, filepath.Join(state, FrameCacheDir)); !slices.Equal(got, []string{filepath.Base(c2.dir)}) {
		t.Fatalf("the cache folder holds %v after another image's first range", got)
	}
	if _, ok := c.Range(4096, 600); ok {
		t.Fatal("the first image's range survived another image's cache")
	}
	if err := c2.clear(); err != nil {
		t.Fatal(err)
	}
	if got := dirNames(t, filepath.Join(state, FrameCacheDir)); len(got) != 0 {
		t.Fatalf("clear left %v", got)
	}
	if err := c2.clear(); err != nil {
		t.Fatalf("clear of an empty cache: %v", err)
	}
}

func bytesizeOf(n int64) bytesize.Size { return bytesize.Size(n) }

func hexHeader(x *adaptive.Index) string { return hex.EncodeToString(x.HeaderSHA256[:]) }
