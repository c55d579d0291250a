package adaptive_test

import (
	"bytes"
	crand "crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/aduflash/aduflash/image"
	"github.com/aduflash/aduflash/image/adaptive"
	"github.com/aduflash/aduflash/internal/adaptivetest"
)

// payload is n pseudo-random bytes from seed, half of them compressible text.
func payload(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, 1))
	b := make([]byte, n)
	for i := range b {
		if (i/4096)%2 == 0 {
			b[i] = byte(r.Uint32())
		} else {
			b[i] = "the quick brown fox "[r.IntN(20)]
		}
	}
	return b
}

// header signs p (ed25519, stored chunks) and returns the image's header.
func header(p []byte) *image.Header {
	k, err := image.GenerateKey(image.Ed25519, crand.Reader)
	if err != nil {
		panic(err)
	}
	var out writerAt
	h, _, err := image.Sign(&out, bytes.NewReader(p), int64(len(p)), k, image.SignOptions{Version: "1", ChunkSize: 64 << 10, Created: time.Unix(1.7e9, 0)})
	if err != nil {
		panic(err)
	}
	return h
}

// writerAt is an in-memory io.WriterAt.
type writerAt struct{ b []byte }

func (w *writerAt) WriteAt(p []byte, off int64) (int, error) {
	if n := int(off) + len(p); n > len(w.b) {
		w.b = append(w.b, make([]byte, n-len(w.b))...)
	}
	return copy(w.b[off:], p), nil
}

func TestBuildParseRoundTrip(t *testing.T) {
	p := payload(1, 300<<10)
	p = append(p, p...) // repeats
	var store bytes.Buffer
	x, err := adaptive.Build(header(p), bytes.NewReader(p), adaptive.DefaultParams, &store, nil)
	if err != nil {
		t.Fatal(err)
	}
	if int64(store.Len()) != x.StoreSize {
		t.Fatalf("store is %d bytes, the index says %d", store.Len(), x.StoreSize)
	}
	y, err := adaptive.ParseIndex(x.Encode())
	if err != nil {
		t.Fatal(err)
	}
	repeats := 0
	dec, _ := adaptive.NewDecoder(y.Params)
	var got []byte
	for i, e := range y.Entries {
		if !reflect.DeepEqual(e, x.Entries[i]) {
			t.Fatalf("entry %d: parsed %+v, built %+v", i, e, x.Entries[i])
		}
		if e.Repeats {
			repeats++
		}
		raw, err := decoded(dec, e, nil, store.Bytes()[e.Frame:e.Frame+int64(e.FrameN)])
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, raw...)
	}
	if !bytes.Equal(got, p) || repeats == 0 {
		t.Fatalf("reassembled %d bytes (equal %v), %d repeats", len(got), bytes.Equal(got, p), repeats)
	}
}

// TestCutsResync: content-defined cuts find the same chunks after an insertion.
func TestCutsResync(t *testing.T) {
	a := payload(2, 1<<20)
	b := append(append(append([]byte{}, a[:300000]...), []byte("inserted bytes")...), a[300000:]...)
	var sa, sb bytes.Buffer
	xa, _ := adaptive.Build(header(a), bytes.NewReader(a), adaptive.DefaultParams, &sa, nil)
	xb, _ := adaptive.Build(header(b), bytes.NewReader(b), adaptive.DefaultParams, &sb, nil)
	have := xa.Wanted()
	var missing int
	for _, e := range xb.Entries {
		if _, ok := have[adaptive.Key{Weak: e.Weak, Size: e.Size}]; !ok {
			missing += e.Size
		}
	}
	if missing > 3*adaptive.DefaultParams.Max {
		t.Fatalf("%d bytes of chunks missing after a 14-byte insertion", missing)
	}
}

func TestParseRefuses(t *testing.T) {
	p := payload(3, 100<<10)
	var store bytes.Buffer
	x, _ := adaptive.Build(header(p), bytes.NewReader(p), adaptive.DefaultParams, &store, nil)
	good := x.Encode()
	for name, mod := range map[string]func(b []byte) []byte{
		"magic":        func(b []byte) []byte { b[1] = 'X'; return b },
		"version":      func(b []byte) []byte { b[8] = 1; return b },
		"version 2":    func(b []byte) []byte { b[8] = 2; return b },
		"truncated":    func(b []byte) []byte { return b[:len(b)-1] },
		"trailing":     func(b []byte) []byte { return append(b, 0) },
		"raw size":     func(b []byte) []byte { b[32]++; return b },
		"store":        func(b []byte) []byte { b[40]++; return b },
		"avg":          func(b []byte) []byte { b[20]++; return b },
		"tag":          func(b []byte) []byte { b[120] = 3; return b },
		"repeat first": func(b []byte) []byte { b[120] = 1; return b },
		"version 3":    func(b []byte) []byte { b[8] = 3; return b },
		"version 4":    func(b []byte) []byte { b[8] = 4; return b },
		// the first entry's frame length (after tag, sum, weak and a two-byte size) longer than its chunk
		"frame": func(b []byte) []byte { b[120+1+16+8+2] = 0xff; b[120+1+16+8+3] = 0x7f; return b },
		"overlong size": func(b []byte) []byte {
			return append(append(append([]byte(nil), b[:120+25]...), b[120+25]|0x80, b[120+26]|0x80, 0), b[120+27:]...)
		},
	} {
		if _, err := adaptive.ParseIndex(mod(append([]byte(nil), good...))); !errors.Is(err, adaptive.ErrMalformed) {
			t.Errorf("%s: %v, want ErrMalformed", name, err)
		}
	}
}

// A delta frame's dictionary is bounded: at most MaxBases base chunks, MaxDict bytes.
func TestParseRefusesLargeDictionaries(t *testing.T) {
	old := payload(3, 512<<10)
	p := append([]byte(nil), old...)
	p[200<<10] ^= 1
	x, _ := buildWithBase(t, p, old)
	i := slices.IndexFunc(x.Entries, func(e adaptive.Entry) bool { return e.Delta != nil })
	if i < 0 {
		t.Fatal("no delta frame")
	}
	d := x.Entries[i].Delta
	bc := d.Bases[0]
	for name, bases := range map[string][]adaptive.BaseChunk{
		"none":                    nil,
		"more than MaxBases":      slices.Repeat([]adaptive.BaseChunk{bc}, adaptive.MaxBases+1),
		"more than MaxDict bytes": slices.Repeat([]adaptive.BaseChunk{{Sum: bc.Sum, Size: adaptive.MaxDict/4 + 1}}, 4),
	} {
		y := *x
		y.Params.Max = adaptive.MaxChunk
		y.Entries = slices.Clone(x.Entries)
		y.Entries[i].Delta = &adaptive.Delta{Bases: bases, FrameN: d.FrameN}
		if _, err := adaptive.ParseIndex(y.Encode()); !errors.Is(err, adaptive.ErrMalformed) {
			t.Errorf("%s: %v, want ErrMalformed", name, err)
		}
	}
	y := *x
	y.Params.Max = adaptive.MaxChunk
	if _, err := adaptive.ParseIndex(y.Encode()); err != nil {
		t.Fatalf("the index with chunks up to 1 MiB: %v", err)
	}
}

func TestChunkRefusesTamperedFrame(t *testing.T) {
	p := payload(4, 64<<10)
	var store bytes.Buffer
	x, _ := adaptive.Build(header(p), bytes.NewReader(p), adaptive.DefaultParams, &store, nil)
	dec, _ := adaptive.NewDecoder(x.Params)
	e := x.Entries[0]
	frame := append([]byte(nil), store.Bytes()[e.Frame:e.Frame+int64(e.FrameN)]...)
	frame[len(frame)/2] ^= 1
	if _, err := decoded(dec, e, nil, frame); !errors.Is(err, adaptive.ErrChunkHash) {
		t.Fatalf("tampered frame: %v, want ErrChunkHash", err)
	}
}

func FuzzParseIndex(f *testing.F) {
	old := payload(5, 40<<10)
	p := append([]byte(nil), old...)
	p[20<<10] ^= 1
	x, _ := buildWithBase(f, p, old)
	f.Add(x.Encode())
	f.Fuzz(func(t *testing.T, b []byte) {
		x, err := adaptive.ParseIndex(b)
		if err != nil {
			return
		}
		if !bytes.Equal(x.Encode(), b) {
			t.Fatal("an accepted index does not encode to its bytes")
		}
	})
}

// A chunk that changed a little gets a delta frame against the chunks of the base most like
// it, shorter than its own frame; decoded against those base chunks it is the chunk, and a
// tampered delta frame is refused.
func TestDeltaFrames(t *testing.T) {
	old := payload(6, 512<<10)
	p := append([]byte(nil), old...)
	for i := 100 << 10; i < 400<<10; i += 20 << 10 {
		p[i] ^= 0x5a // a byte changed every 20 KiB
	}
	x, store := buildWithBase(t, p, old)
	dec, _ := adaptive.NewDecoder(x.Params)
	deltas := 0
	for _, e := range x.Entries {
		d := e.Delta
		if d == nil || e.Repeats {
			continue
		}
		deltas++
		dict := heldChunks(old).dict(t, e)
		if d.FrameN >= e.FrameN {
			t.Fatalf("delta of the chunk at %d: %d bytes against a frame of %d", e.Offset, d.FrameN, e.FrameN)
		}
		frame := store[d.Frame : d.Frame+int64(d.FrameN)]
		raw, err := decoded(dec, e, dict, frame)
		if err != nil || !bytes.Equal(raw, p[e.Offset:e.Offset+int64(e.Size)]) {
			t.Fatalf("delta of the chunk at %d: %v", e.Offset, err)
		}
		bad := append([]byte(nil), frame...)
		bad[len(bad)/2] ^= 1
		if _, err := decoded(dec, e, dict, bad); !errors.Is(err, adaptive.ErrChunkHash) {
			t.Fatalf("tampered delta frame: %v, want ErrChunkHash", err)
		}
		for i := range dict {
			dict[i] ^= 0xFF // base chunks that changed: whatever the frame takes from them differs
		}
		if _, err := decoded(dec, e, dict, frame); !errors.Is(err, adaptive.ErrChunkHash) {
			t.Fatalf("changed base chunks: %v, want ErrChunkHash", err)
		}
	}
	if deltas == 0 {
		t.Fatal("no delta frame for chunks that changed a byte")
	}
}

// A region of the base that moved and changed (a new version of a file an ext4 image writes
// elsewhere) gets delta frames against its old chunks, not the unrelated ones at its new
// place, with the old chunk's neighbours in the dictionary: a chunk that spans two old
// chunks (a cut gone) is a few copies too.
func TestDeltaAgainstMovedChunks(t *testing.T) {
	old := payload(8, 2<<20)
	p, from := adaptivetest.Moved(old)
	x, store := buildWithBase(t, p, old)
	held := heldChunks(old)
	dec, _ := adaptive.NewDecoder(x.Params)
	checked := 0
	for _, e := range x.Entries {
		if e.Offset == 0 || e.Offset+int64(e.Size) > adaptivetest.MovedLen {
			continue // the region's first and last chunks hold bytes of elsewhere too
		}
		d := e.Delta
		if _, ok := held.at[e.Sum]; ok || e.Repeats {
			continue
		}
		if d == nil || d.FrameN > e.Size/16 {
			t.Fatalf("chunk at %d (%d bytes, a frame of %d): delta %+v, want one of at most %d bytes", e.Offset, e.Size, e.FrameN, d, e.Size/16)
		}
		for _, bc := range d.Bases {
			if at := held.at[bc.Sum]; at < int64(from-x.Params.Max) || at > int64(from+adaptivetest.MovedLen) {
				t.Fatalf("chunk at %d: a base chunk at %d of the base, outside the region moved from %d", e.Offset, at, from)
			}
		}
		raw, err := decoded(dec, e, held.dict(t, e), store[d.Frame:d.Frame+int64(d.FrameN)])
		if err != nil || !bytes.Equal(raw, p[e.Offset:e.Offset+int64(e.Size)]) {
			t.Fatalf("delta of the chunk at %d: %v", e.Offset, err)
		}
		checked++
	}
	if checked < 2 {
		t.Fatalf("%d changed chunks in the moved region", checked)
	}
}

// decoded is the chunk e's frame holds (its delta frame against dict when dict is set),
// checked against the index.
func decoded(dec *adaptive.Decoder, e adaptive.Entry, dict, frame []byte) ([]byte, error) {
	raw, err := dec.Decode(e, dict, frame)
	if err != nil {
		return nil, err
	}
	return raw, adaptive.Verify(e, raw)
}

// buildWithBase builds p's index and store with delta frames against old, and checks that
// the index parses to itself.
func buildWithBase(t testing.TB, p, old []byte) (*adaptive.Index, []byte) {
	t.Helper()
	var store bytes.Buffer
	x, err := adaptive.Build(header(p), bytes.NewReader(p), adaptive.DefaultParams, &store, &adaptive.Base{R: bytes.NewReader(old), Size: int64(len(old))})
	if err != nil {
		t.Fatal(err)
	}
	y, err := adaptive.ParseIndex(x.Encode())
	if err != nil || !reflect.DeepEqual(x, y) {
		t.Fatalf("parsed %v, equal %v", err, reflect.DeepEqual(x, y))
	}
	return x, store.Bytes()
}

// held is what a device holding a payload finds: its chunks by hash, and where each lies.
type held struct {
	chunk map[adaptive.Sum][]byte
	at    map[adaptive.Sum]int64
}

func heldChunks(data []byte) held {
	h := held{chunk: map[adaptive.Sum][]byte{}, at: map[adaptive.Sum]int64{}}
	adaptive.DefaultParams.Split(bytes.NewReader(data), func(off int64, c []byte) error {
		s := adaptive.SumOf(c)
		if _, ok := h.at[s]; !ok {
			h.chunk[s], h.at[s] = append([]byte(nil), c...), off
		}
		return nil
	})
	return h
}

// dict is the dictionary of e's delta frame from the chunks held (found by their hashes).
func (h held) dict(t *testing.T, e adaptive.Entry) []byte {
	t.Helper()
	var dict []byte
	for _, bc := range e.Delta.Bases {
		c, ok := h.chunk[bc.Sum]
		if !ok {
			t.Fatalf("delta of the chunk at %d: base chunk %s not held", e.Offset, bc.Sum)
		}
		dict = append(dict, c...)
	}
	return dict
}

// A scan on several goroutines finds what one pass finds, at the same places, but for the
// chunks across the start of a part.
func TestScanInParts(t *testing.T) {
	p := payload(7, 8<<20)
	var store bytes.Buffer
	x, _ := adaptive.Build(header(p), bytes.NewReader(p), adaptive.DefaultParams, &store, nil)
	wanted := x.Wanted()
	one, four := map[adaptive.Sum]adaptive.Location{}, map[adaptive.Sum]adaptive.Location{}
	if err := x.Params.Scan(bytes.NewReader(p), 0, 0, int64(len(p)), 1, wanted, one); err != nil {
		t.Fatal(err)
	}
	if err := x.Params.Scan(bytes.NewReader(p), 0, 0, int64(len(p)), 4, wanted, four); err != nil {
		t.Fatal(err)
	}
	for s, loc := range four {
		if one[s] != loc {
			t.Fatalf("chunk %s: at %+v in parts, at %+v in one pass", s, loc, one[s])
		}
	}
	if len(one) != len(x.Entries) || len(four) < len(one)-3*2 {
		t.Fatalf("%d chunks of %d found in one pass, %d in four parts", len(one), len(x.Entries), len(four))
	}
}

// A scan finds chunks of free space (one byte value repeated, hashed once per value and size)
// of every size the index names: the runs at Max, and the shorter ones where a run ends.
func TestScanFindsFreeSpace(t *testing.T) {
	var p []byte
	for _, b := range []byte{0x00, 0xFF} {
		p = append(p, payload(uint64(b), 100<<10)...)
		p = append(p, bytes.Repeat([]byte{b}, 3*adaptive.DefaultParams.Max+5000)...)
	}
	var store bytes.Buffer
	x, err := adaptive.Build(header(p), bytes.NewReader(p), adaptive.DefaultParams, &store, nil)
	if err != nil {
		t.Fatal(err)
	}
	found := map[adaptive.Sum]adaptive.Location{}
	if err := x.Params.Scan(bytes.NewReader(p), 0, 0, int64(len(p)), 1, x.Wanted(), found); err != nil {
		t.Fatal(err)
	}
	sizes := map[int]bool{}
	for _, e := range x.Entries {
		if _, ok := found[e.Sum]; !ok {
			t.Fatalf("the chunk at %d (%d bytes) is not found", e.Offset, e.Size)
		}
		if c := p[e.Offset : e.Offset+int64(e.Size)]; bytes.Count(c, c[:1]) == len(c) {
			sizes[e.Size] = true
		}
	}
	if len(sizes) < 2 {
		t.Fatalf("free-space chunks of %d sizes; the test wants more than one", len(sizes))
	}
}

// BenchmarkScan cuts and hashes 64 MiB on one goroutine, every chunk wanted: a quarter of it
// free space (zeros), as in a file system image.
func BenchmarkScan(b *testing.B) {
	p := payload(3, 48<<20)
	p = append(p, make([]byte, 16<<20)...)
	params := adaptive.DefaultParams
	wanted := map[adaptive.Key]adaptive.Sum{}
	params.Split(bytes.NewReader(p), func(_ int64, chunk []byte) error {
		wanted[adaptive.Key{Weak: adaptive.WeakOf(chunk), Size: len(chunk)}] = adaptive.SumOf(chunk)
		return nil
	})
	b.SetBytes(int64(len(p)))
	for b.Loop() {
		if err := params.Scan(bytes.NewReader(p), 0, 0, int64(len(p)), 1, wanted, map[adaptive.Sum]adaptive.Location{}); err != nil {
			b.Fatal(err)
		}
	}
}

// The cut points are the format's (docs/adaptive.md, Chunker): pinned for a fixed input, with
// small sizes (cuts before and after Avg, forced at Max) and the defaults.
func TestCutPointsPinned(t *testing.T) {
	for _, tc := range []struct {
		p    adaptive.Params
		want string
	}{
		{adaptive.Params{Min: 64, Avg: 256, Max: 1024}, "7037 chunks b115571966f24b2b"},
		{adaptive.DefaultParams, "57 chunks 1dbf70c8a849259c"},
	} {
		h := sha256.New()
		n := 0
		p := append(payload(5, 2<<20), make([]byte, 300<<10)...)
		tc.p.Split(bytes.NewReader(p), func(off int64, chunk []byte) error {
			fmt.Fprintf(h, "%d ", len(chunk))
			n++
			return nil
		})
		if got := fmt.Sprintf("%d chunks %x", n, h.Sum(nil)[:8]); got != tc.want {
			t.Errorf("%+v: %s, want %s", tc.p, got, tc.want)
		}
	}
}
