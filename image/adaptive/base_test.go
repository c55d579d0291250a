package adaptive_test

import (
	"bytes"
	"errors"
	"maps"
	"testing"

	"github.com/aduflash/aduflash/image/adaptive"
	"github.com/aduflash/aduflash/internal/adaptivetest"
)

// changedInPlace is p with 8 KiB at from replaced by other bytes.
func changedInPlace(p []byte, from int, seed uint64) []byte {
	out := bytes.Clone(p)
	copy(out[from:from+8<<10], random(seed, 8<<10))
	return out
}

// The base map is what a device holding the base finds in it: its cut in one part, then
// Index.Extend; each place holds its chunk.
func TestBaseMapIsWhatTheDeviceFinds(t *testing.T) {
	p := random(21, 1<<20)
	extended := 0
	for i := range 6 {
		old := changedInPlace(p, i*150<<10+37<<10, uint64(40+i))
		x, _ := buildWithBase(t, p, old)
		if x.Base == nil || x.Base.Size != int64(len(old)) {
			t.Fatalf("base map %+v, want one of a %d-byte base", x.Base, len(old))
		}
		found := map[adaptive.Sum]adaptive.Location{}
		if err := x.Params.Scan(bytes.NewReader(old), 0, 0, int64(len(old)), 1, x.Wanted(), found); err != nil {
			t.Fatal(err)
		}
		n, err := x.Extend([]adaptive.Source{{R: bytes.NewReader(old), End: int64(len(old))}}, found)
		if err != nil {
			t.Fatal(err)
		}
		extended += n
		want := map[adaptive.Sum]int64{}
		for s, l := range found {
			want[s] = l.Offset
		}
		if !maps.Equal(x.Base.At, want) {
			t.Fatalf("change %d: the map has %d places, the device finds %d", i, len(x.Base.At), len(want))
		}
		size := adaptivetest.Sizes(x)
		for s, off := range x.Base.At {
			if adaptive.SumOf(old[off:off+int64(size[s])]) != s {
				t.Fatalf("change %d: the base does not hold chunk %s at %d", i, s, off)
			}
		}
	}
	if extended == 0 {
		t.Fatal("Extend found nothing beside any change: the test does not test that the map has what it finds")
	}
}

// An index built without a base has no map; one with a map is refused when a place lies
// outside the base, the map is cut short or bytes follow it, or a reserved flag is set.
func TestParseRefusesBadBaseMaps(t *testing.T) {
	p := random(22, 300<<10)
	old := changedInPlace(p, 100<<10, 50)
	x, _ := buildWithBase(t, p, old)
	if len(x.Base.At) == 0 {
		t.Fatal("the base map is empty")
	}
	if y := build(t, p); y.Base != nil {
		t.Fatalf("an index without a base has a base map: %+v", y.Base)
	}
	good := x.Encode()
	short := *x
	short.Base = &adaptive.BaseMap{Size: x.Base.Size - 1, At: x.Base.At}
	noMap := append([]byte(nil), build(t, p).Encode()...)
	noMap[10] = 1
	for name, b := range map[string][]byte{
		"a place outside the base": short.Encode(),
		"cut short":                good[:len(good)-1],
		"bytes after the map":      append(bytes.Clone(good), 0),
		"flagged, no map":          noMap,
		"reserved flag":            func() []byte { b := bytes.Clone(good); b[10] |= 2; return b }(),
	} {
		if _, err := adaptive.ParseIndex(b); !errors.Is(err, adaptive.ErrMalformed) {
			t.Errorf("%s: %v, want ErrMalformed", name, err)
		}
	}
}

// HoldsBase takes the map's places when every one holds its chunk (by its Weak), and none
// when one does not, the thing held is shorter than the base, or the index has no map.
func TestHoldsBase(t *testing.T) {
	p := random(23, 1<<20)
	old := changedInPlace(p, 300<<10, 51)
	x, _ := buildWithBase(t, p, old)
	at := x.Base.At
	if len(at) < 4 {
		t.Fatalf("%d places in the map", len(at))
	}
	found := map[adaptive.Sum]adaptive.Location{}
	ok, err := x.HoldsBase(bytes.NewReader(old), int64(len(old)), 2, 3, found)
	if err != nil || !ok {
		t.Fatalf("the base itself: %v, %v", ok, err)
	}
	for s, off := range at {
		if found[s] != (adaptive.Location{Source: 2, Offset: off}) {
			t.Fatalf("chunk %s found at %+v, mapped at %d", s, found[s], off)
		}
	}
	if len(found) != len(at) {
		t.Fatalf("%d found, %d mapped", len(found), len(at))
	}
	size := adaptivetest.Sizes(x)
	var last adaptive.Sum
	var lastAt int64 = -1
	for s, off := range at {
		if off > lastAt {
			last, lastAt = s, off
		}
	}
	changed := bytes.Clone(old)
	changed[lastAt+int64(size[last])-1] ^= 1 // the last byte of the last place
	for name, c := range map[string]struct {
		r    []byte
		size int64
		x    *adaptive.Index
	}{
		"a place changed":      {changed, int64(len(changed)), x},
		"shorter than the map": {old[:len(old)-1], int64(len(old) - 1), x},
		"no map":               {old, int64(len(old)), build(t, p)},
	} {
		found := map[adaptive.Sum]adaptive.Location{}
		if ok, err := c.x.HoldsBase(bytes.NewReader(c.r), c.size, 0, 2, found); ok || err != nil || len(found) != 0 {
			t.Errorf("%s: holds %v, %v, %d found", name, ok, err, len(found))
		}
	}
	if _, err := x.HoldsBase(errReader{}, int64(len(old)), 0, 2, map[adaptive.Sum]adaptive.Location{}); !errors.Is(err, errBroken) {
		t.Errorf("a read error: %v", err)
	}
}
