package adaptive_test

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"testing"

	"github.com/aduflash/aduflash/image/adaptive"
)

// Where one chunk is known, Extend finds the ones after it (forward) and before it
// (backward) one by one, each at its place, and none outside the source's range.
func TestExtendFollowsNeighbours(t *testing.T) {
	p := payload(11, 2<<20)
	x := build(t, p)
	src := []adaptive.Source{{R: bytes.NewReader(p), End: int64(len(p))}}
	first, last := x.Entries[0], x.Entries[len(x.Entries)-1]
	for name, start := range map[string]adaptive.Entry{"forward": first, "backward": last} {
		found := map[adaptive.Sum]adaptive.Location{start.Sum: {Offset: start.Offset}}
		n, err := x.Extend(src, found)
		if err != nil {
			t.Fatal(err)
		}
		if n != len(x.Entries)-1 {
			t.Errorf("%s: %d chunks found beside one, want %d", name, n, len(x.Entries)-1)
		}
		for _, e := range x.Entries {
			if l, ok := found[e.Sum]; !ok || l.Offset != e.Offset {
				t.Fatalf("%s: the chunk at %d is at %+v (found %v)", name, e.Offset, l, ok)
			}
		}
	}
	// A source's range bounds it: nothing before From is read.
	mid := x.Entries[len(x.Entries)/2]
	bounded := []adaptive.Source{{R: bytes.NewReader(p), From: mid.Offset, End: int64(len(p))}}
	found := map[adaptive.Sum]adaptive.Location{last.Sum: {Offset: last.Offset}}
	if _, err := x.Extend(bounded, found); err != nil {
		t.Fatal(err)
	}
	for _, e := range x.Entries {
		if _, ok := found[e.Sum]; ok != (e.Offset >= mid.Offset) {
			t.Fatalf("the chunk at %d found %v with the source from %d", e.Offset, ok, mid.Offset)
		}
	}
}

// A change in place moves the cuts of the held bytes after it, so a scan misses unchanged
// chunks there; Extend finds every chunk the change did not touch, and none it did.
func TestExtendAfterChangeInPlace(t *testing.T) {
	p := random(12, 4<<20)
	x := build(t, p)
	missedByScan := 0
	for i := range 16 {
		from := int64(i)*250<<10 + 77<<10
		held := bytes.Clone(p)
		copy(held[from:from+8<<10], random(uint64(100+i), 8<<10))
		found := map[adaptive.Sum]adaptive.Location{}
		if err := x.Params.Scan(bytes.NewReader(held), 0, 0, int64(len(held)), 1, x.Wanted(), found); err != nil {
			t.Fatal(err)
		}
		scanned := len(found)
		n, err := x.Extend([]adaptive.Source{{R: bytes.NewReader(held), End: int64(len(held))}}, found)
		if err != nil {
			t.Fatal(err)
		}
		if len(found) != scanned+n {
			t.Fatalf("Extend says %d found, the map grew by %d", n, len(found)-scanned)
		}
		missedByScan += n
		for _, e := range x.Entries {
			touched := e.Offset < from+8<<10 && e.Offset+int64(e.Size) > from
			if l, ok := found[e.Sum]; ok == touched || (ok && l.Offset != e.Offset) {
				t.Fatalf("change at %d: the chunk at %d (%d bytes) found %v at %+v", from, e.Offset, e.Size, ok, l)
			}
		}
	}
	if missedByScan == 0 {
		t.Fatal("the scan missed no chunk after any change: the test does not test Extend")
	}
	t.Logf("%d chunks found beside the changes that the scan missed", missedByScan)
}

// build is p's index (default parameters, no base).
func build(t *testing.T, p []byte) *adaptive.Index {
	t.Helper()
	x, err := adaptive.Build(header(p), bytes.NewReader(p), adaptive.DefaultParams, io.Discard, nil)
	if err != nil {
		t.Fatal(err)
	}
	return x
}

// random is n pseudo-random bytes from seed.
func random(seed uint64, n int) []byte {
	b := make([]byte, n)
	r := rand.New(rand.NewPCG(seed, 2))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// errReader fails every read.
type errReader struct{}

var errBroken = errors.New("broken")

func (errReader) ReadAt([]byte, int64) (int, error) { return 0, errBroken }

// A source that cannot be read ends Extend with its error; a short one as well.
func TestExtendReadErrors(t *testing.T) {
	p := payload(13, 512<<10)
	x := build(t, p)
	e := x.Entries[0]
	for name, r := range map[string]interface {
		ReadAt([]byte, int64) (int, error)
	}{"error": errReader{}, "short": bytes.NewReader(p[:x.Entries[1].Offset+10])} {
		found := map[adaptive.Sum]adaptive.Location{e.Sum: {}}
		_, err := x.Extend([]adaptive.Source{{R: r, End: int64(len(p))}}, found)
		if err == nil || (name == "error" && !errors.Is(err, errBroken)) {
			t.Errorf("%s: %v", name, err)
		}
	}
}
