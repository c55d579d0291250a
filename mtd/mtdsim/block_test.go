package mtdsim

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/aduflash/aduflash/mtd"
)

type blockDevice interface {
	io.ReaderAt
	io.WriterAt
	Sync() error
	Size() int64
	Close() error
}

var _ blockDevice = (*Block)(nil)

func TestBlockBasics(t *testing.T) {
	if _, err := NewBlock(1000, 512); err == nil {
		t.Fatal("size not a multiple of the sector accepted")
	}
	b, err := NewBlock(4096, 512)
	if err != nil {
		t.Fatal(err)
	}
	if b.Size() != 4096 || b.SectorSize() != 512 {
		t.Fatal("geometry")
	}
	p := pattern(1000, 3)
	if n, err := b.WriteAt(p, 300); n != 1000 || err != nil {
		t.Fatal(n, err)
	}
	if c := b.Counters(); c.SectorWrites != 3 || c.BytesWritten != 1000 { // 300..511, 512..1023, 1024..1299
		t.Fatalf("%+v", c)
	}
	got := make([]byte, 1000)
	if _, err := b.ReadAt(got, 300); err != nil || !bytes.Equal(got, p) {
		t.Fatal(err)
	}
	if _, err := b.WriteAt(make([]byte, 2), 4095); !errors.Is(err, mtd.ErrOutOfRange) {
		t.Fatal(err)
	}
	if n, err := b.ReadAt(got, 4000); n != 96 || err != io.EOF {
		t.Fatal(n, err)
	}
	if b.Sync() != nil || b.Counters().Syncs != 1 || b.Close() != nil {
		t.Fatal("sync")
	}
	if err := b.Load([]byte{1, 2}); err != nil || b.Bytes()[1] != 2 {
		t.Fatal(err)
	}
	if err := b.Load(make([]byte, 4097)); !errors.Is(err, mtd.ErrOutOfRange) {
		t.Fatal(err)
	}
}

func TestBlockPowerCut(t *testing.T) {
	sawPartial := false
	for seed := range uint64(20) {
		b, _ := NewBlock(4096, 512, WithSeed(seed))
		old := pattern(4096, 1)
		b.Load(old)
		p := pattern(2048, 2)
		b.PowerCutAfter(2)
		n, err := b.WriteAt(p, 512)
		if !errors.Is(err, mtd.ErrPowerCut) || n < 1024 || n > 1536 {
			t.Fatal(n, err)
		}
		_, err = b.ReadAt(make([]byte, 1), 0)
		if !errors.Is(err, mtd.ErrPowerCut) || !errors.Is(b.Sync(), mtd.ErrPowerCut) {
			t.Fatal("calls after the cut")
		}
		_, err = b.WriteAt(p, 0)
		if !errors.Is(err, mtd.ErrPowerCut) {
			t.Fatal(err)
		}
		b.PowerOn()
		want := bytes.Clone(old)
		copy(want[512:], p[:n]) // new up to n, old after: in order, sector by sector
		if !bytes.Equal(b.Bytes(), want) {
			t.Fatalf("seed %d: content after cut at %d", seed, n)
		}
		sawPartial = sawPartial || n > 1024 && n < 1536
		if c := b.Counters(); c.SectorWrites != 3 || c.BytesWritten != int64(n) {
			t.Fatalf("%+v", c)
		}
	}
	if !sawPartial {
		t.Fatal("no torn sector")
	}
	b, _ := NewBlock(4096, 512)
	b.PowerCutAfterBytes(700)
	n, err := b.WriteAt(bytes.Repeat([]byte{9}, 1000), 100)
	if n != 700 || !errors.Is(err, mtd.ErrPowerCut) || !b.PoweredOff() {
		t.Fatal(n, err)
	}
	b.PowerOn()
	got := b.Bytes()
	if got[799] != 9 || got[800] != 0 {
		t.Fatal("byte-exact cut")
	}
}
