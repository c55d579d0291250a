package adaptive_test

import (
	"bytes"
	crand "crypto/rand"
	"errors"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/aduflash/aduflash/image"
	"github.com/aduflash/aduflash/image/adaptive"
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
	p = append(p, p[:100<<10]...) // repeats
	var store bytes.Buffer
	x, err := adaptive.Build(header(p), bytes.NewReader(p), adaptive.DefaultParams, &store)
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
		if e != x.Entries[i] {
			t.Fatalf("entry %d: parsed %+v, built %+v", i, e, x.Entries[i])
		}
		if e.Repeats {
			repeats++
		}
		raw, err := dec.Chunk(e, store.Bytes()[e.Frame:e.Frame+int64(e.FrameN)])
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
	xa, _ := adaptive.Build(header(a), bytes.NewReader(a), adaptive.DefaultParams, &sa)
	xb, _ := adaptive.Build(header(b), bytes.NewReader(b), adaptive.DefaultParams, &sb)
	have := xa.Wanted()
	var missing int
	for _, e := range xb.Entries {
		if _, ok := have[e.SHA256]; !ok {
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
	x, _ := adaptive.Build(header(p), bytes.NewReader(p), adaptive.DefaultParams, &store)
	good := x.Encode()
	for name, mod := range map[string]func(b []byte) []byte{
		"magic":     func(b []byte) []byte { b[1] = 'X'; return b },
		"version":   func(b []byte) []byte { b[8] = 2; return b },
		"truncated": func(b []byte) []byte { return b[:len(b)-1] },
		"raw size":  func(b []byte) []byte { b[32]++; return b },
		"store":     func(b []byte) []byte { b[40]++; return b },
		"avg":       func(b []byte) []byte { b[20]++; return b },
		"frame":     func(b []byte) []byte { b[120+36] = 0xff; b[120+37] = 0xff; return b },
	} {
		if _, err := adaptive.ParseIndex(mod(append([]byte(nil), good...))); !errors.Is(err, adaptive.ErrMalformed) {
			t.Errorf("%s: %v, want ErrMalformed", name, err)
		}
	}
}

func TestChunkRefusesTamperedFrame(t *testing.T) {
	p := payload(4, 64<<10)
	var store bytes.Buffer
	x, _ := adaptive.Build(header(p), bytes.NewReader(p), adaptive.DefaultParams, &store)
	dec, _ := adaptive.NewDecoder(x.Params)
	e := x.Entries[0]
	frame := append([]byte(nil), store.Bytes()[e.Frame:e.Frame+int64(e.FrameN)]...)
	frame[len(frame)/2] ^= 1
	if _, err := dec.Chunk(e, frame); !errors.Is(err, adaptive.ErrChunkHash) {
		t.Fatalf("tampered frame: %v, want ErrChunkHash", err)
	}
}

func FuzzParseIndex(f *testing.F) {
	p := payload(5, 40<<10)
	var store bytes.Buffer
	x, _ := adaptive.Build(header(p), bytes.NewReader(p), adaptive.DefaultParams, &store)
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
