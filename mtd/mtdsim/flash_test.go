package mtdsim

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/aduflash/aduflash/mtd"
)

// device is the method set of *mtd.Device; upper layers define interfaces like it.
type device interface {
	Info() mtd.Info
	ReadAt(p []byte, off int64) (int, error)
	WriteAt(p []byte, off int64) (int, error)
	Erase(off, length int64) error
	IsBad(off int64) (bool, error)
	MarkBad(off int64) error
	Unlock(off, length int64) error
	Sync() error
	Close() error
}

var (
	_ device = (*Flash)(nil)
	_ device = (*mtd.Device)(nil)
)

const (
	es = 4096
	ps = 512
)

func nand(t *testing.T, opts ...Option) *Flash {
	t.Helper()
	f, err := NewNAND(8*es, es, ps, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func nor(t *testing.T, opts ...Option) *Flash {
	t.Helper()
	f, err := NewNOR(4*es, es, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7) ^ seed
	}
	return b
}

func read(t *testing.T, f *Flash, off int64, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	return b
}

func wantErr(t *testing.T, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("error %v, want %v", err, target)
	}
}

func TestGeometry(t *testing.T) {
	for _, g := range [][3]int{{0, es, ps}, {es + 1, es, ps}, {es, es, 300}, {es, -1, 1}} {
		if _, err := NewNAND(g[0], g[1], g[2]); err == nil {
			t.Errorf("NewNAND%v accepted", g)
		}
	}
	if _, err := NewNAND(8*es, es, ps, WithFactoryBad(8)); !errors.Is(err, mtd.ErrOutOfRange) {
		t.Errorf("factory bad block out of range: %v", err)
	}
	f := nand(t, WithName("rootfs"))
	i := f.Info()
	if i.Type != mtd.TypeNAND || i.Size != 8*es || i.EraseSize != es || i.WriteSize != ps || i.Name != "rootfs" || !i.Writable || i.Blocks() != 8 {
		t.Fatalf("info %+v", i)
	}
	if n := nor(t).Info(); n.Type != mtd.TypeNOR || n.WriteSize != 1 {
		t.Fatalf("nor info %+v", n)
	}
	if !mtd.IsErased(f.Bytes()) {
		t.Fatal("new flash not erased")
	}
}

func TestNORAndSemantics(t *testing.T) {
	f := nor(t)
	if _, err := f.WriteAt([]byte{0xF0, 0x0F, 0xAA}, 3); err != nil { // any alignment
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte{0x3C, 0xFF, 0x55}, 3); err != nil {
		t.Fatal(err)
	}
	if got := read(t, f, 2, 5); !bytes.Equal(got, []byte{0xFF, 0x30, 0x0F, 0x00, 0xFF}) {
		t.Fatalf("got % x", got)
	}
	if err := f.Erase(0, es); err != nil {
		t.Fatal(err)
	}
	if !mtd.IsErased(read(t, f, 0, es)) {
		t.Fatal("erase did not set 0xFF")
	}
	if bad, err := f.IsBad(0); bad || err != nil {
		t.Fatal(bad, err)
	}
	wantErr(t, f.MarkBad(0), mtd.ErrUnsupported)
	c := f.Counters()
	if c.Programs != 2 || c.Erases != 1 || c.Ops != 3 || c.BytesWritten != 6 || c.BlockErases[0] != 1 {
		t.Fatalf("counters %+v", c)
	}
}

func TestNORStrict(t *testing.T) {
	f := nor(t, WithStrict())
	if _, err := f.WriteAt([]byte{0x0F}, 10); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte{0x07}, 10); err != nil { // clears more bits: fine
		t.Fatal(err)
	}
	_, err := f.WriteAt([]byte{0x00, 0xF0}, 9) // 0xF0 over 0x07 needs 1 bits
	wantErr(t, err, mtd.ErrNotErased)
	var be *mtd.BlockError
	if !errors.As(err, &be) || be.Off != 10 {
		t.Fatalf("%#v", err)
	}
	if got := read(t, f, 9, 2); !bytes.Equal(got, []byte{0xFF, 0x07}) {
		t.Fatalf("refused write changed content: % x", got)
	}
	if f.Counters().Programs != 2 {
		t.Fatal("refused write counted")
	}
}

func TestNANDPageRules(t *testing.T) {
	f := nand(t)
	p := pattern(2*ps, 1)
	for _, c := range []struct {
		off int64
		n   int
	}{{1, ps}, {ps, ps - 1}, {0, 10}, {ps / 2, 2 * ps}} {
		_, err := f.WriteAt(make([]byte, c.n), c.off)
		wantErr(t, err, mtd.ErrUnaligned)
	}
	_, err := f.WriteAt(make([]byte, ps), 8*es)
	wantErr(t, err, mtd.ErrOutOfRange)
	_, err = f.WriteAt(make([]byte, ps), -ps)
	wantErr(t, err, mtd.ErrOutOfRange)
	if n, err := f.WriteAt(p, ps); n != len(p) || err != nil {
		t.Fatal(n, err)
	}
	if got := read(t, f, ps, len(p)); !bytes.Equal(got, p) {
		t.Fatal("readback")
	}
	// second program of a page, even with identical data or only 0xFF
	_, err = f.WriteAt(bytes.Repeat([]byte{0xFF}, ps), 2*ps)
	wantErr(t, err, mtd.ErrNotErased)
	// a multi-page write touching one programmed page writes nothing
	_, err = f.WriteAt(pattern(3*ps, 2), 0)
	wantErr(t, err, mtd.ErrNotErased)
	if !mtd.IsErased(read(t, f, 0, ps)) {
		t.Fatal("refused write programmed page 0")
	}
	wantErr(t, f.Erase(ps, es), mtd.ErrUnaligned)
	wantErr(t, f.Erase(0, es+1), mtd.ErrUnaligned)
	wantErr(t, f.Erase(0, 9*es), mtd.ErrOutOfRange)
	if err := f.Erase(0, es); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(p, ps); err != nil {
		t.Fatal("program after erase:", err)
	}
	c := f.Counters()
	if c.Programs != 4 || c.Erases != 1 || c.BytesWritten != 4*ps || c.Ops != 5 {
		t.Fatalf("counters %+v", c)
	}
	// reading at and past the end
	b := make([]byte, 10)
	if n, err := f.ReadAt(b, 8*es-4); n != 4 || err != io.EOF {
		t.Fatal(n, err)
	}
	if _, err := f.ReadAt(b, 8*es+1); !errors.Is(err, mtd.ErrOutOfRange) {
		t.Fatal(err)
	}
	if err := f.Unlock(0, 8*es); err != nil || f.Sync() != nil || f.Close() != nil {
		t.Fatal("unlock/sync/close")
	}
}

func TestNANDBadBlocks(t *testing.T) {
	f := nand(t, WithFactoryBad(3, 7))
	if got := f.BadBlocks(); len(got) != 2 || got[0] != 3 || got[1] != 7 {
		t.Fatal(got)
	}
	for b := range 8 {
		bad, err := f.IsBad(int64(b)*es + 5)
		if err != nil || bad != (b == 3 || b == 7) {
			t.Fatal(b, bad, err)
		}
	}
	if mtd.IsErased(read(t, f, 3*es, es)) {
		t.Fatal("factory bad block reads erased; want garbage")
	}
	err := f.Erase(2*es, 2*es)
	var be *mtd.BlockError
	if !errors.As(err, &be) || be.Off != 3*es || !errors.Is(err, mtd.ErrBadBlock) {
		t.Fatalf("erase over bad block: %v", err)
	}
	if c := f.Counters(); c.BlockErases[2] != 1 || c.BlockErases[3] != 0 {
		t.Fatalf("erase stopped wrongly: %v", c.BlockErases)
	}
	_, err = f.WriteAt(make([]byte, 2*ps), 4*es-ps)
	wantErr(t, err, mtd.ErrBadBlock)
	if err := f.MarkBad(5*es + 100); err != nil {
		t.Fatal(err)
	}
	if bad, _ := f.IsBad(5 * es); !bad {
		t.Fatal("MarkBad did not stick")
	}
	wantErr(t, f.MarkBad(8*es), mtd.ErrOutOfRange)
	if c := f.Counters(); c.MarkBads != 1 {
		t.Fatalf("%+v", c)
	}
}

func TestScheduledFailures(t *testing.T) {
	f := nand(t)
	old := pattern(ps, 9)
	f.WriteAt(old, 2*es)
	if err := f.FailEraseAt(2); err != nil {
		t.Fatal(err)
	}
	err := f.Erase(es, 3*es)
	var be *mtd.BlockError
	if !errors.As(err, &be) || be.Off != 2*es || !errors.Is(err, mtd.ErrIO) {
		t.Fatalf("%v", err)
	}
	if bad, _ := f.IsBad(2 * es); bad {
		t.Fatal("failed block marked bad automatically")
	}
	if mtd.IsErased(read(t, f, 2*es, es)) {
		t.Fatal("failed erase left block clean")
	}
	wantErr(t, f.Erase(2*es, es), mtd.ErrIO) // stays failing
	if c := f.Counters(); c.Failed != 2 || c.Erases != 3 {
		t.Fatalf("%+v", c)
	}
	if err := f.FailProgramAt(5); err != nil {
		t.Fatal(err)
	}
	n, err := f.WriteAt(pattern(4*ps, 3), 3*ps)
	if n != 2*ps || !errors.Is(err, mtd.ErrIO) || !errors.As(err, &be) || be.Off != 5*ps {
		t.Fatal(n, err)
	}
	if got := read(t, f, 3*ps, 2*ps); !bytes.Equal(got, pattern(4*ps, 3)[:2*ps]) {
		t.Fatal("pages before the failure")
	}
	if !mtd.IsErased(read(t, f, 6*ps, 2*ps)) {
		t.Fatal("pages after the failure were programmed")
	}
	wantErr(t, f.FailEraseAt(8), mtd.ErrOutOfRange)
	wantErr(t, f.FailProgramAt(8*es/ps), mtd.ErrOutOfRange)

	// NOR program failure: programmed up to the failing byte
	g := nor(t)
	g.FailProgramAt(103)
	n, err = g.WriteAt(make([]byte, 10), 100)
	if n != 3 || !errors.Is(err, mtd.ErrIO) {
		t.Fatal(n, err)
	}
	if got := read(t, g, 100, 5); !bytes.Equal(got, []byte{0, 0, 0, 0xFF, 0xFF}) {
		t.Fatalf("% x", got)
	}
}

func TestEndurance(t *testing.T) {
	f := nand(t, WithEndurance(3))
	for i := range 3 {
		if err := f.Erase(0, es); err != nil {
			t.Fatal(i, err)
		}
	}
	wantErr(t, f.Erase(0, es), mtd.ErrIO)
	f.ResetCounters()
	wantErr(t, f.Erase(0, es), mtd.ErrIO) // wear survives ResetCounters
	if err := f.Erase(es, es); err != nil {
		t.Fatal(err)
	}
}

func TestPowerCutNANDProgram(t *testing.T) {
	for seed := range uint64(20) {
		f := nand(t, WithSeed(seed))
		p := pattern(4*ps, 5)
		f.PowerCutAfter(2)
		n, err := f.WriteAt(p, es)
		wantErr(t, err, mtd.ErrPowerCut)
		if n != 2*ps || !f.PoweredOff() {
			t.Fatal(n)
		}
		// every call fails until PowerOn
		_, err = f.ReadAt(make([]byte, 1), 0)
		wantErr(t, err, mtd.ErrPowerCut)
		_, err = f.WriteAt(p[:ps], 0)
		wantErr(t, err, mtd.ErrPowerCut)
		wantErr(t, f.Erase(0, es), mtd.ErrPowerCut)
		_, err = f.IsBad(0)
		wantErr(t, err, mtd.ErrPowerCut)
		wantErr(t, f.MarkBad(0), mtd.ErrPowerCut)
		wantErr(t, f.Unlock(0, es), mtd.ErrPowerCut)
		wantErr(t, f.Sync(), mtd.ErrPowerCut)
		f.PowerOn()
		got := read(t, f, es, 4*ps)
		if !bytes.Equal(got[:2*ps], p[:2*ps]) {
			t.Fatal("completed pages lost")
		}
		torn := got[2*ps : 3*ps]
		k := 0
		for k < ps && torn[k] == p[2*ps+k] {
			k++
		}
		// the torn page: a prefix of the data, then garbage (not simply erased)
		if k < ps-8 && mtd.IsErased(torn[k:]) {
			t.Fatalf("seed %d: torn page tail is erased", seed)
		}
		if !mtd.IsErased(got[3*ps:]) {
			t.Fatal("page after the cut programmed")
		}
		_, err = f.WriteAt(p[:ps], es+2*ps)
		wantErr(t, err, mtd.ErrNotErased) // torn page counts as programmed
		if c := f.Counters(); c.Programs != 3 || c.Ops != 3 {
			t.Fatalf("%+v", c)
		}
		// no cut armed any more
		if _, err := f.WriteAt(p, 0); err != nil {
			t.Fatal(err)
		}
	}
}

func TestPowerCutAfterBytes(t *testing.T) {
	f := nand(t)
	p := pattern(4*ps, 6)
	f.PowerCutAfterBytes(ps + 100)
	n, err := f.WriteAt(p, 0)
	wantErr(t, err, mtd.ErrPowerCut)
	if n != ps {
		t.Fatal(n)
	}
	f.PowerOn()
	got := read(t, f, 0, 2*ps)
	if !bytes.Equal(got[:ps+100], p[:ps+100]) || bytes.Equal(got[ps+100:], p[ps+100:2*ps]) || mtd.IsErased(got[ps+100:]) {
		t.Fatal("torn page: want exact 100-byte prefix then garbage")
	}
	if c := f.Counters(); c.BytesWritten != ps+100 {
		t.Fatalf("%+v", c)
	}

	// NOR: exact prefix, rest unchanged; a budget used up exactly cuts the next op
	g := nor(t)
	g.PowerCutAfterBytes(10)
	if _, err := g.WriteAt(make([]byte, 4), 0); err != nil {
		t.Fatal(err)
	}
	n, err = g.WriteAt(make([]byte, 20), 4)
	if n != 6 || !errors.Is(err, mtd.ErrPowerCut) {
		t.Fatal(n, err)
	}
	g.PowerOn()
	if got := read(t, g, 0, 12); !bytes.Equal(got, append(make([]byte, 10), 0xFF, 0xFF)) {
		t.Fatalf("% x", got)
	}
	g.PowerCutAfterBytes(0)
	wantErr(t, g.Erase(0, es), mtd.ErrPowerCut)
}

func TestPowerCutErase(t *testing.T) {
	for seed := range uint64(10) {
		f := nand(t, WithSeed(seed))
		old := pattern(es, 7)
		if err := f.Load(append(make([]byte, es), old...)); err != nil { // block 0 zero, block 1 pattern
			t.Fatal(err)
		}
		f.PowerCutAfter(1)
		err := f.Erase(0, 3*es)
		var be *mtd.BlockError
		if !errors.As(err, &be) || be.Off != es || !errors.Is(err, mtd.ErrPowerCut) {
			t.Fatal(err)
		}
		f.PowerOn()
		if !mtd.IsErased(read(t, f, 0, es)) {
			t.Fatal("block 0 erased before the cut")
		}
		got := read(t, f, es, es)
		if mtd.IsErased(got) || bytes.Equal(got, old) {
			t.Fatalf("seed %d: torn erase must be partial", seed)
		}
		for i := range got {
			if got[i]&old[i] != old[i] { // bits only set, never cleared
				t.Fatal("torn erase cleared bits")
			}
		}
		_, err = f.WriteAt(make([]byte, ps), es)
		wantErr(t, err, mtd.ErrNotErased)
		if c := f.Counters(); c.Erases != 2 || c.BlockErases[1] != 1 || c.BlockErases[2] != 0 {
			t.Fatalf("%+v", c)
		}
	}
}

func TestPowerCutNORWriteAndMarkBad(t *testing.T) {
	sawPartial := false
	for seed := range uint64(20) {
		f := nor(t, WithSeed(seed))
		f.PowerCutAfter(0)
		n, err := f.WriteAt(make([]byte, 100), 50)
		wantErr(t, err, mtd.ErrPowerCut)
		f.PowerOn()
		got := read(t, f, 50, 100)
		for i := range got {
			if (i < n) != (got[i] == 0) {
				t.Fatalf("seed %d n %d: byte %d = %x", seed, n, i, got[i])
			}
		}
		sawPartial = sawPartial || n > 0 && n < 100
	}
	if !sawPartial {
		t.Fatal("no seed tore inside the write")
	}
	g := nand(t)
	g.PowerCutAfter(0)
	wantErr(t, g.MarkBad(0), mtd.ErrPowerCut)
	g.PowerOn()
	if bad, _ := g.IsBad(0); bad {
		t.Fatal("torn MarkBad stuck")
	}
}

func TestDeterministic(t *testing.T) {
	run := func() []byte {
		f := nand(t, WithSeed(42), WithFactoryBad(1))
		f.PowerCutAfter(3)
		f.WriteAt(pattern(8*ps, 1), 0)
		return f.Bytes()
	}
	if !bytes.Equal(run(), run()) {
		t.Fatal("same seed, different content")
	}
}

func TestSnapshotRestoreLoad(t *testing.T) {
	f := nand(t)
	f.WriteAt(pattern(ps, 1), 0)
	s := f.Snapshot()
	f.Erase(0, es)
	f.MarkBad(es)
	if err := f.Restore(s); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(f.Bytes(), s.Bytes()) || !bytes.Equal(read(t, f, 0, ps), pattern(ps, 1)) {
		t.Fatal("restore content")
	}
	if bad, _ := f.IsBad(es); bad {
		t.Fatal("restore bad blocks")
	}
	_, err := f.WriteAt(pattern(ps, 1), 0)
	wantErr(t, err, mtd.ErrNotErased) // programmed state restored
	if err := nor(t).Restore(s); err == nil {
		t.Fatal("restore across geometries")
	}
	wantErr(t, f.Load(make([]byte, 8*es+1)), mtd.ErrOutOfRange)
	if err := f.Load(bytes.Repeat([]byte{0xFF}, 8*es)); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(pattern(ps, 1), 0); err != nil {
		t.Fatal("page loaded as 0xFF should be programmable:", err)
	}
}
