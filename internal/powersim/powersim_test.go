package powersim

import (
	"bytes"
	"errors"
	"slices"
	"testing"

	"github.com/aduflash/aduflash/journal"
	"github.com/aduflash/aduflash/mtd"
	"github.com/aduflash/aduflash/mtd/mtdsim"
)

func pages(n, size int) []byte {
	b := make([]byte, n*size)
	for i := range b {
		b[i] = byte(i*7 + i/size)
	}
	return b
}

// A NAND write counts page by page; the cut page is untouched (clean) or torn, the pages
// before it are written, the ones after it not, and nothing works until the power is back.
func TestFlashCutPageByPage(t *testing.T) {
	for _, tear := range []Tear{TearNone, TearPartial} {
		t.Run(tear.String(), func(t *testing.T) {
			nand, _ := mtdsim.NewNAND(64<<10, 16<<10, 512)
			p := New()
			p.Record()
			f := Flash{Flash: nand, P: p, Name: "nand"}
			data := pages(4, 512)
			p.CutAt(2, tear)
			if n, err := f.WriteAt(data, 0); !errors.Is(err, ErrPowerCut) || n != 1024 {
				t.Fatalf("WriteAt: %d, %v", n, err)
			}
			got := nand.Bytes()
			if !bytes.Equal(got[:1024], data[:1024]) || !mtd.IsErased(got[1536:2048]) {
				t.Error("the pages around the cut one")
			}
			if torn := got[1024:1536]; (tear == TearNone) != mtd.IsErased(torn) || bytes.Equal(torn, data[1024:1536]) {
				t.Errorf("%s cut left page 2 erased=%v", tear, mtd.IsErased(torn))
			}
			if _, err := f.ReadAt(make([]byte, 1), 0); !errors.Is(err, ErrPowerCut) {
				t.Errorf("read while off: %v", err)
			}
			if err := f.Erase(16<<10, 16<<10); !errors.Is(err, ErrPowerCut) {
				t.Errorf("erase while off: %v", err)
			}
			if n, op := p.Cuts(); n != 1 || op != (Op{Program, "nand"}) {
				t.Errorf("cuts %d at %v", n, op)
			}
			p.On()
			if err := f.Erase(16<<10, 32<<10); err != nil || p.Ops() != 4 || len(p.Recorded()) != 4 {
				t.Errorf("after power on: %v, %d operations", err, p.Ops())
			}
		})
	}
}

// A torn erase leaves the block partly erased; a clean cut leaves it as it was.
func TestFlashCutErase(t *testing.T) {
	for _, tear := range []Tear{TearNone, TearPartial} {
		nor, _ := mtdsim.NewNOR(16<<10, 4<<10)
		nor.Load(make([]byte, 16<<10)) // all zero
		p := New()
		f := Flash{Flash: nor, P: p, Unit: 256}
		p.CutAt(1, tear)
		if err := f.Erase(0, 8<<10); !errors.Is(err, ErrPowerCut) {
			t.Fatalf("%s: %v", tear, err)
		}
		b := nor.Bytes()
		if !mtd.IsErased(b[:4<<10]) {
			t.Errorf("%s: the first block is not erased", tear)
		}
		second := b[4<<10 : 8<<10]
		if zero := !slices.ContainsFunc(second, func(x byte) bool { return x != 0 }); zero != (tear == TearNone) || mtd.IsErased(second) {
			t.Errorf("%s: the cut block: all zero %v, erased %v", tear, zero, mtd.IsErased(second))
		}
	}
}

// A NOR write counts per program unit; a block-device write per sector.
func TestUnits(t *testing.T) {
	nor, _ := mtdsim.NewNOR(16<<10, 4<<10)
	p := New()
	if _, err := (Flash{Flash: nor, P: p, Unit: 256}).WriteAt(make([]byte, 1000), 100); err != nil || p.Ops() != 4 {
		t.Errorf("NOR: %v, %d operations", err, p.Ops())
	}
	disk, _ := mtdsim.NewBlock(8<<10, 512)
	p = New()
	b := Block{Block: disk, P: p}
	if _, err := b.WriteAt(bytes.Repeat([]byte{1}, 1024), 256); err != nil || p.Ops() != 3 {
		t.Errorf("block: %v, %d operations", err, p.Ops())
	}
	p.CutAt(1, TearPartial)
	if n, err := b.WriteAt(bytes.Repeat([]byte{2}, 1024), 0); !errors.Is(err, ErrPowerCut) || n != 512 {
		t.Errorf("torn block write: %d, %v", n, err)
	}
}

// A journal on MemFS holds the old or the new record after a cut anywhere in a save, and
// with different seeds a cut after the rename but before the folder sync leaves either.
func TestMemFSCutDuringSave(t *testing.T) {
	seen := map[string]bool{}
	for seed := uint64(1); seed <= 20; seed++ {
		for cut := range 6 {
			for _, tear := range []Tear{TearNone, TearPartial} {
				p := New(WithSeed(seed))
				j, err := journal.Open("/state", journal.WithFS(NewMemFS(p)))
				if err != nil {
					t.Fatal(err)
				}
				if err := j.Save("old"); err != nil {
					t.Fatal(err)
				}
				p.CutAt(cut, tear)
				err = j.Save("new")
				p.On()
				var got string
				if _, lerr := j.Load(&got); lerr != nil || got != "old" && got != "new" {
					t.Fatalf("seed %d, cut %d %s: %q, %v", seed, cut, tear, got, lerr)
				}
				if err == nil && got != "new" {
					t.Fatalf("seed %d, cut %d: the save succeeded but %q is there", seed, cut, got)
				}
				if cut == 4 { // the folder sync after the rename
					seen[got] = true
				}
			}
		}
	}
	if !seen["old"] || !seen["new"] {
		t.Errorf("a cut before the folder sync left only %v", seen)
	}
}
