package mcuboottrailer

import (
	"bytes"
	"errors"
	"fmt"
	"testing"

	"github.com/aduflash/aduflash/image/mcuboot"
)

const (
	slotSize  = 16 * 1024
	eraseSize = 4096
)

// twoSlots puts a primary and a secondary slot on one fake device.
func twoSlots(writeSize, maxAlign int, erased byte) (*norFake, Slot, Slot) {
	f := newNOR(2*slotSize, eraseSize, writeSize, erased)
	p := Slot{Flash: f, Offset: 0, Size: slotSize, EraseSize: eraseSize, WriteSize: writeSize, MaxAlign: maxAlign, ErasedZero: erased == 0}
	s := p
	s.Offset = slotSize
	return f, p, s
}

func mustRead(t *testing.T, s Slot) Status {
	t.Helper()
	st, err := Read(s)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func TestLayoutMatchesImageMcuboot(t *testing.T) {
	for _, c := range []struct{ write, maxAlign int }{{1, 8}, {4, 8}, {8, 8}, {16, 16}, {32, 32}, {8, 32}} {
		t.Run(fmt.Sprintf("write%d-max%d", c.write, c.maxAlign), func(t *testing.T) {
			f, _, s := twoSlots(c.write, c.maxAlign, 0xff)
			if err := RequestUpgrade(s, true); err != nil {
				t.Fatal(err)
			}
			slot := f.mem[slotSize:]
			l := mcuboot.Layout(c.maxAlign)
			end := len(slot)
			if !bytes.Equal(slot[end-16:], mcuboot.TrailerMagic(c.maxAlign)) {
				t.Fatalf("magic % x", slot[end-16:])
			}
			if slot[end+l.ImageOK] != 0x01 || slot[end+l.SwapInfo] != 0x03 || slot[end+l.CopyDone] != 0xff {
				t.Fatalf("fields: ok %x info %x copy %x", slot[end+l.ImageOK], slot[end+l.SwapInfo], slot[end+l.CopyDone])
			}
			// Exactly those bytes were programmed.
			n := 0
			for _, b := range slot {
				if b != 0xff {
					n++
				}
			}
			if want := 16 + 2; n != want {
				t.Fatalf("%d bytes programmed, want %d", n, want)
			}
			tr, ok := mcuboot.ParseTrailer(slot)
			if !ok || tr.MaxAlign != c.maxAlign || !tr.Confirmed() || tr.SwapType() != mcuboot.SwapTypePerm {
				t.Fatalf("image/mcuboot reads %+v %v", tr, ok)
			}
		})
	}
}

func TestRequestTestAndConfirmFlow(t *testing.T) {
	for _, erased := range []byte{0xff, 0x00} {
		for _, w := range []int{1, 4, 8} {
			t.Run(fmt.Sprintf("erased%02x-write%d", erased, w), func(t *testing.T) {
				f, p, s := twoSlots(w, 0, erased)
				if st, _ := State(p, s); st != SwapNone {
					t.Fatalf("blank: %v", st)
				}
				if err := RequestUpgrade(s, false); err != nil {
					t.Fatal(err)
				}
				st := mustRead(t, s)
				if st.Magic != MagicGood || st.ImageOK != FlagUnset || st.SwapType != SwapTest || st.CopyDone != FlagUnset || st.SwapSizeSet {
					t.Fatalf("secondary %+v", st)
				}
				if typ, _ := State(p, s); typ != SwapTest {
					t.Fatalf("state %v", typ)
				}
				// Repeating is a no-op.
				writes := f.writes
				if err := RequestUpgrade(s, false); err != nil || f.writes != writes {
					t.Fatalf("repeat: %v, %d writes", err, f.writes-writes)
				}
				// Simulate MCUboot's test swap: the primary gets magic + copy_done, the
				// secondary's trailer is erased.
				if err := f.Erase(slotSize+slotSize-eraseSize, eraseSize); err != nil {
					t.Fatal(err)
				}
				pf := p
				g, _ := pf.geometry()
				if err := pf.program(g, pf.magicUnit(g)); err != nil {
					t.Fatal(err)
				}
				if err := pf.program(g, pf.flagUnit(g, "copy_done", g.layout.CopyDone, 1)); err != nil {
					t.Fatal(err)
				}
				if typ, _ := State(p, s); typ != SwapRevert {
					t.Fatalf("after swap, unconfirmed: %v", typ)
				}
				if err := Confirm(p); err != nil {
					t.Fatal(err)
				}
				if typ, _ := State(p, s); typ != SwapNone {
					t.Fatalf("after confirm: %v", typ)
				}
				writes = f.writes
				if err := Confirm(p); err != nil || f.writes != writes {
					t.Fatalf("second confirm: %v", err)
				}
				if f.violations != 0 {
					t.Fatalf("%d programs of non-erased bytes", f.violations)
				}
			})
		}
	}
}

func TestPermanentAndResume(t *testing.T) {
	f, p, s := twoSlots(8, 8, 0xff)
	// Power cut after the magic: only magic written.
	g, _ := s.geometry()
	if err := s.program(g, s.magicUnit(g)); err != nil {
		t.Fatal(err)
	}
	if typ, _ := State(p, s); typ != SwapTest {
		t.Fatalf("magic only: %v", typ)
	}
	if err := RequestUpgrade(s, true); err != nil {
		t.Fatal(err)
	}
	st := mustRead(t, s)
	if st.ImageOK != FlagSet || st.SwapType != SwapPerm {
		t.Fatalf("%+v", st)
	}
	if typ, _ := State(p, s); typ != SwapPerm {
		t.Fatalf("%v", typ)
	}
	if f.violations != 0 {
		t.Fatal("violations")
	}
}

func TestStaleTrailer(t *testing.T) {
	f, _, s := twoSlots(8, 8, 0xff)
	if err := RequestUpgrade(s, true); err != nil {
		t.Fatal(err)
	}
	// Asking for a test upgrade now needs image_ok erased: refused without ImageEnd.
	writes := f.writes
	err := RequestUpgrade(s, false)
	if !errors.Is(err, ErrStale) || f.writes != writes || f.erases != 0 {
		t.Fatalf("got %v (writes %d erases %d)", err, f.writes-writes, f.erases)
	}
	// An image that reaches into the last erase block: still refused.
	s.ImageEnd = slotSize - eraseSize + 1
	if err := RequestUpgrade(s, false); !errors.Is(err, ErrStale) || f.erases != 0 {
		t.Fatalf("got %v", err)
	}
	// Image ends before the last erase block: erase it and write the test request.
	s.ImageEnd = slotSize - eraseSize
	f.mem[slotSize+slotSize-eraseSize-1] = 0x42 // image data just below must survive
	if err := RequestUpgrade(s, false); err != nil {
		t.Fatal(err)
	}
	if f.erases != 1 || f.mem[slotSize+slotSize-eraseSize-1] != 0x42 {
		t.Fatal("wrong erase")
	}
	st := mustRead(t, s)
	if st.Magic != MagicGood || st.ImageOK != FlagUnset || st.SwapType != SwapTest {
		t.Fatalf("%+v", st)
	}
	// A corrupt magic is stale too.
	f.Erase(slotSize+slotSize-eraseSize, eraseSize)
	copy(f.mem[2*slotSize-16:], "not a magic....!")
	if st := mustRead(t, s); st.Magic != MagicBad {
		t.Fatalf("%v", st.Magic)
	}
	if err := RequestUpgrade(s, true); err != nil {
		t.Fatal(err)
	}
	if st := mustRead(t, s); st.Magic != MagicGood || st.SwapType != SwapPerm {
		t.Fatalf("%+v", st)
	}
	if f.violations != 0 {
		t.Fatal("violations")
	}
}

func TestConfirmErrors(t *testing.T) {
	f, p, _ := twoSlots(4, 8, 0xff)
	if err := Confirm(p); err != nil { // no magic: nothing to do
		t.Fatal(err)
	}
	if f.writes != 0 {
		t.Fatal("wrote on an unset magic")
	}
	copy(f.mem[slotSize-16:], bytes.Repeat([]byte{0x12}, 16))
	if err := Confirm(p); !errors.Is(err, ErrBadMagic) {
		t.Fatalf("got %v", err)
	}
	// Good magic, image_ok erased but its write unit dirty: never programmed over.
	copy(f.mem[slotSize-16:], mcuboot.TrailerMagic(8))
	l := mcuboot.Layout(8)
	f.mem[slotSize+l.ImageOK+1] = 0x00
	if err := Confirm(p); !errors.Is(err, ErrNotErased) {
		t.Fatalf("got %v", err)
	}
	if f.violations != 0 {
		t.Fatal("violations")
	}
}

func TestFakeReportsReprogramming(t *testing.T) {
	f := newNOR(eraseSize, eraseSize, 4, 0xff)
	if _, err := f.WriteAt([]byte{1, 2, 3, 4}, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte{1, 2, 3, 4}, 0); !errors.Is(err, errNotErasedFake) || f.violations != 1 {
		t.Fatalf("got %v", err)
	}
	if _, err := f.WriteAt([]byte{1}, 4); err == nil {
		t.Fatal("unaligned write accepted")
	}
}

func TestGeometryErrors(t *testing.T) {
	f := newNOR(slotSize, eraseSize, 8, 0xff)
	ok := Slot{Flash: f, Size: slotSize, EraseSize: eraseSize, WriteSize: 8}
	bad := []func(*Slot){
		func(s *Slot) { s.Flash = nil },
		func(s *Slot) { s.WriteSize = 3 },
		func(s *Slot) { s.MaxAlign = 12 },
		func(s *Slot) { s.WriteSize = 16; s.MaxAlign = 8 },
		func(s *Slot) { s.EraseSize = 0 },
		func(s *Slot) { s.Size = slotSize + 1 },
		func(s *Slot) { s.Offset = 1 },
		func(s *Slot) { s.ImageNumber = 16 },
	}
	for i, m := range bad {
		s := ok
		m(&s)
		if _, err := Read(s); !errors.Is(err, ErrGeometry) {
			t.Errorf("case %d: got %v", i, err)
		}
		if err := RequestUpgrade(s, true); !errors.Is(err, ErrGeometry) {
			t.Errorf("case %d: got %v", i, err)
		}
	}
	// A slot beyond the device's end fails with ErrFlash.
	s := ok
	s.Offset = slotSize
	if _, err := Read(s); !errors.Is(err, ErrFlash) {
		t.Fatalf("got %v", err)
	}
}

func TestImageNumber(t *testing.T) {
	_, _, s := twoSlots(1, 8, 0xff)
	s.ImageNumber = 2
	if err := RequestUpgrade(s, false); err != nil {
		t.Fatal(err)
	}
	st := mustRead(t, s)
	if st.SwapInfo != 0x22 || st.ImageNumber != 2 || st.SwapType != SwapTest {
		t.Fatalf("%+v", st)
	}
}

func TestDecideTable(t *testing.T) {
	mk := func(m MagicState, ok, cd Flag) Status { return Status{Magic: m, ImageOK: ok, CopyDone: cd} }
	magics := []MagicState{MagicGood, MagicBad, MagicUnset}
	flags := []Flag{FlagSet, FlagBad, FlagUnset}
	for _, pm := range magics {
		for _, pok := range flags {
			for _, pcd := range flags {
				for _, sm := range magics {
					for _, sok := range flags {
						for _, scd := range flags {
							p, s := mk(pm, pok, pcd), mk(sm, sok, scd)
							want := SwapNone
							switch {
							case sm == MagicGood && sok == FlagUnset:
								want = SwapTest
							case sm == MagicGood && sok == FlagSet:
								want = SwapPerm
							case pm == MagicGood && sm == MagicUnset && pok == FlagUnset && pcd == FlagSet:
								want = SwapRevert
							}
							if got := Decide(p, s); got != want {
								t.Errorf("primary %+v secondary %+v: got %v want %v", p, s, got, want)
							}
						}
					}
				}
			}
		}
	}
	// Spot checks from MCUboot's design.md.
	if Decide(mk(MagicUnset, FlagUnset, FlagUnset), mk(MagicGood, FlagBad, FlagUnset)) != SwapNone {
		t.Error("secondary image_ok bad must not swap")
	}
	if Decide(mk(MagicGood, FlagSet, FlagSet), mk(MagicUnset, FlagUnset, FlagUnset)) != SwapNone {
		t.Error("confirmed primary must not revert")
	}
}

func TestParseSwapInfo(t *testing.T) {
	g, _ := newGeometry(8, false)
	r := bytes.Repeat([]byte{0xff}, g.fields)
	end := len(r)
	for _, c := range []struct {
		info byte
		typ  SwapType
		num  int
	}{{0xff, SwapNone, 0}, {0x02, SwapTest, 0}, {0x13, SwapPerm, 1}, {0x04, SwapRevert, 0}, {0x15, SwapNone, 0}, {0x3f, SwapNone, 0}} {
		r[end+g.layout.SwapInfo] = c.info
		st, err := Parse(r, 8, false)
		if err != nil || st.SwapType != c.typ || st.ImageNumber != c.num || st.SwapInfo != c.info {
			t.Errorf("swap_info %#x: %+v %v", c.info, st, err)
		}
	}
	copy(r[end+g.layout.SwapSize:], []byte{0x00, 0x10, 0, 0})
	st, _ := Parse(r, 8, false)
	if !st.SwapSizeSet || st.SwapSize != 0x1000 {
		t.Errorf("swap size %+v", st)
	}
	if _, err := Parse(r[1:], 8, false); !errors.Is(err, ErrShort) {
		t.Errorf("got %v", err)
	}
	if _, err := Parse(r, 4, false); !errors.Is(err, ErrGeometry) {
		t.Errorf("got %v", err)
	}
}
