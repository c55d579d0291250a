package agent

import (
	"bytes"
	"encoding/hex"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/aduflash/aduflash/image"
	"github.com/aduflash/aduflash/image/adaptive"
	"github.com/aduflash/aduflash/internal/atomicfile"
	"github.com/aduflash/aduflash/journal"
)

// The frame cache keeps ranges whole under their offset and length, up to its size across
// restarts, removes the ranges of other images when it first keeps one, drops temporary
// files a power cut left, and clear removes them all.
func TestFrameCache(t *testing.T) {
	state := t.TempDir()
	dir := filepath.Join(state, FrameCacheDir)
	fsys := journal.OSFS()
	h1, h2 := image.Digest{1}, image.Digest{2}
	r1, r2 := bytes.Repeat([]byte{0xa1}, 600), bytes.Repeat([]byte{0xb2}, 300)
	names := func() []string {
		t.Helper()
		n, err := fsys.ReadDir(dir)
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		for i := range n {
			n[i] = strings.TrimPrefix(strings.TrimPrefix(n[i], hex.EncodeToString(h1[:])+"-"), hex.EncodeToString(h2[:])+"-")
		}
		return n
	}

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
	if _, ok := newFrameCache(fsys, state, h2, 1000).Range(4096, 600); ok {
		t.Error("another image's cache answered from the first one's range")
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
	tmp := filepath.Join(dir, "."+hex.EncodeToString(h1[:])+"-8192-300.tmp-1")
	if err := os.WriteFile(tmp, r2[:100], 0o600); err != nil {
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
	if got, want := names(), []string{"4096-600", "9000-300"}; !slices.Equal(got, want) {
		t.Fatalf("the folder holds %v, want %v (the size counts the range kept before the restart)", got, want)
	}
	// Another image's cache removes the first one's ranges (and anything else) when it keeps
	// its first.
	os.WriteFile(filepath.Join(dir, "stray"), []byte("x"), 0o600)
	c2 := newFrameCache(fsys, state, h2, 1000)
	if err := c2.Keep(0, r2); err != nil {
		t.Fatal(err)
	}
	if got := names(); !slices.Equal(got, []string{"0-300"}) {
		t.Fatalf("the folder holds %v after another image's first range", got)
	}
	if _, ok := c.Range(4096, 600); ok {
		t.Fatal("the first image's range survived another image's cache")
	}
	if err := c2.clear(); err != nil {
		t.Fatal(err)
	}
	if got := names(); len(got) != 0 {
		t.Fatalf("clear left %v", got)
	}
	if err := c2.clear(); err != nil {
		t.Fatalf("clear of an empty cache: %v", err)
	}
	if err := clearFrameCaches(fsys, t.TempDir()); err != nil {
		t.Fatalf("clearFrameCaches without a folder: %v", err)
	}
}

// An agent that starts with no deployment in progress removes the ranges an earlier install
// left (cut while it cleared up, or cancelled); with one in progress it keeps them (the
// UBI power-cut tests see them used).
func TestFrameCacheClearedAtStart(t *testing.T) {
	d := newDevice(t, payload(1, 64<<10))
	fsys := d.FS()
	name := filepath.Join(stateDir, FrameCacheDir, "ab-0-3")
	if err := atomicfile.Replace(fsys, name, "", []byte("abc")); err != nil {
		t.Fatal(err)
	}
	d.agent(nil)
	if names, _ := fsys.Inspect().ReadDir(filepath.Join(stateDir, FrameCacheDir)); len(names) != 0 {
		t.Fatalf("an agent starting with no deployment left %v", names)
	}
}

func hexHeader(x *adaptive.Index) string { return hex.EncodeToString(x.HeaderSHA256[:]) }
