package mtdsim

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/aduflash/aduflash/mtd"
)

// liar is what Flash and Block share for these tests.
type liar interface {
	io.ReaderAt
	io.WriterAt
	Sync() error
	Bytes() []byte
	Lie(Lie) error
}

// newLiars returns an erased NAND, an erased NOR and a zeroed block device, each with a
// page of old content at es, which the tests overwrite.
func newLiars(t *testing.T) map[string]liar {
	t.Helper()
	blk, err := NewBlock(4*es, ps)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]liar{"nand": nand(t), "nor": nor(t), "block": blk}
	for name, d := range out {
		if _, err := d.WriteAt(pattern(ps, 1), es); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	return out
}

// overwrite puts new over the old page at es (erasing flash first).
func overwrite(t *testing.T, d liar, data []byte) {
	t.Helper()
	if f, ok := d.(*Flash); ok {
		if err := f.Erase(es, es); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := d.WriteAt(data, es); err != nil {
		t.Fatal(err)
	}
}

func TestLies(t *testing.T) {
	old, data := pattern(ps, 1), pattern(ps, 2)
	const off = es + 100 // the lying range: 10 bytes inside the page
	cases := []struct {
		kind    LieKind
		n       int // bytes a read of the page returns
		want    func() []byte
		wantErr error
	}{
		{FlipBit, ps, func() []byte {
			b := bytes.Clone(data)
			for i := 100; i < 110; i++ {
				b[i] ^= 1
			}
			return b
		}, nil},
		{Stale, ps, func() []byte {
			b := bytes.Clone(data)
			copy(b[100:110], old[100:110])
			return b
		}, nil},
		{ShortRead, 100, func() []byte { return data[:100] }, nil},
		{ShortReadErr, 100, func() []byte { return data[:100] }, mtd.ErrIO},
	}
	for _, tc := range cases {
		for name, d := range newLiars(t) {
			t.Run(tc.kind.String()+"/"+name, func(t *testing.T) {
				if err := d.Lie(Lie{Kind: tc.kind, Off: off, Len: 10}); err != nil {
					t.Fatal(err)
				}
				overwrite(t, d, data)
				got := make([]byte, ps)
				n, err := d.ReadAt(got, es)
				if n != tc.n || !bytes.Equal(got[:n], tc.want()) {
					t.Errorf("read %d bytes %x..., want %d bytes %x...", n, got[95:n], tc.n, tc.want()[95:])
				}
				if tc.wantErr == nil && err != nil || tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
					t.Errorf("read error %v, want %v", err, tc.wantErr)
				}
				// A read beside the range is true, and so is the medium.
				if n, err := d.ReadAt(got[:50], off+10); n != 50 || err != nil || !bytes.Equal(got[:50], data[110:160]) {
					t.Errorf("read after the range: %d %v", n, err)
				}
				if !bytes.Equal(d.Bytes()[es:es+ps], data) {
					t.Error("the medium does not hold what was written")
				}
			})
		}
	}
}

// An AfterSync lie starts with the first sync after its range was written.
func TestLieAfterSync(t *testing.T) {
	data := pattern(ps, 2)
	for name, d := range newLiars(t) {
		t.Run(name, func(t *testing.T) {
			if err := d.Lie(Lie{Kind: FlipBit, Off: es, Len: 1, AfterSync: true}); err != nil {
				t.Fatal(err)
			}
			first := func() byte {
				b := make([]byte, 1)
				if _, err := d.ReadAt(b, es); err != nil {
					t.Fatal(err)
				}
				return b[0]
			}
			if err := d.Sync(); err != nil { // not written yet: stays the truth
				t.Fatal(err)
			}
			overwrite(t, d, data)
			if got := first(); got != data[0] {
				t.Fatalf("before the sync: %#x, want the truth %#x", got, data[0])
			}
			if err := d.Sync(); err != nil {
				t.Fatal(err)
			}
			if got := first(); got != data[0]^1 {
				t.Fatalf("after the sync: %#x, want %#x", got, data[0]^1)
			}
		})
	}
}

func TestLieRefused(t *testing.T) {
	f := nor(t)
	for _, l := range []Lie{
		{Kind: FlipBit, Off: -1, Len: 1},
		{Kind: FlipBit, Off: 4*es - 1, Len: 2},
		{Kind: FlipBit, Off: 0, Len: 0},
		{Kind: 0, Off: 0, Len: 1},
		{Kind: ShortReadErr + 1, Off: 0, Len: 1},
	} {
		if err := f.Lie(l); err == nil {
			t.Errorf("%+v accepted", l)
		}
	}
}
