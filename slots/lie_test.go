package slots

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/aduflash/aduflash/image"
	"github.com/aduflash/aduflash/mtd"
	"github.com/aduflash/aduflash/mtd/mtdsim"
)

// Read-back verification against storage that returns other bytes than were written
// (mtdsim's lying reads), for every writer kind.

const (
	lieUnit = 64 * kib         // erase block, block-writer unit and image chunk
	lieOff  = 2*lieUnit + 1000 // where the lies sit: inside the third unit
)

// lies are the lies of these tests, with the error a verification must wrap.
var lies = []struct {
	name string
	lie  mtdsim.Lie
	want error
}{
	{"flipped bit", mtdsim.Lie{Kind: mtdsim.FlipBit, Off: lieOff, Len: 1}, ErrMismatch},
	{"stale block", mtdsim.Lie{Kind: mtdsim.Stale, Off: 2 * lieUnit, Len: lieUnit}, ErrMismatch},
	{"short read", mtdsim.Lie{Kind: mtdsim.ShortRead, Off: lieOff, Len: 1}, io.ErrUnexpectedEOF},
	{"short read with an error", mtdsim.Lie{Kind: mtdsim.ShortReadErr, Off: lieOff, Len: 1}, mtd.ErrIO},
}

// lyingSlot is a writer over simulated storage that lies when told.
type lyingSlot struct {
	w     Writer
	lie   func(mtdsim.Lie) error
	flash *mtdsim.Flash // nil unless raw flash
}

// openLying opens a writer of size bytes of the given kind over storage holding old.
func openLying(t *testing.T, kind string, old []byte, size int64) lyingSlot {
	t.Helper()
	opts := []Option{WithChunkSize(lieUnit), WithUnit(lieUnit)}
	var (
		w   Writer
		err error
		ls  lyingSlot
	)
	switch kind {
	case "nor", "nand":
		f := nor(t, mib)
		if kind == "nand" {
			f = nand(t, mib)
		}
		must(t, f.Load(old))
		w, err = NewFlashWriter(f, kind, 0, 0, size, nil, opts...)
		ls.lie, ls.flash = f.Lie, f
	default:
		blk, _ := mtdsim.NewBlock(mib, 512)
		must(t, blk.Load(old))
		ls.lie = blk.Lie
		switch kind {
		case "block":
			w, err = NewBlockWriter(blk, kind, 0, blk.Size(), size, nil, opts...)
		case "file": // a file slot of a layout, its file opened through Env.OpenBlock
			l := newFakeSystem(t, "adu.slot=A").layout(t, fileSlotsDoc)
			l.Env.OpenBlock = func(*Slot) (BlockDevice, int64, error) { return blk, 0, nil }
			s, err := l.Slot("rootfs-b")
			must(t, err)
			w, err = l.OpenWriter(s, size, nil, opts...)
			must(t, err)
		case "ubi":
			w, err = NewVolumeWriter(blockVolume{blk}, kind, size, nil, opts...)
		default:
			t.Fatalf("writer kind %q", kind)
		}
	}
	must(t, err)
	t.Cleanup(func() { w.Close() })
	ls.w = w
	return ls
}

const fileSlotsDoc = `
[slots]
[[slots.slot]]
class = "rootfs"
bank = "A"
type = "file"
path = "/var/slots/a.img"
[[slots.slot]]
class = "rootfs"
bank = "B"
type = "file"
path = "/var/slots/b.img"
`

// blockVolume is a UBI volume on a simulated block device; an update syncs when closed.
type blockVolume struct{ blk *mtdsim.Block }

type blockUpdate struct {
	blk *mtdsim.Block
	off int64
}

func (v blockVolume) Update(int64) (io.WriteCloser, error)    { return &blockUpdate{blk: v.blk}, nil }
func (v blockVolume) ReadAt(p []byte, off int64) (int, error) { return v.blk.ReadAt(p, off) }
func (v blockVolume) ReservedSize() int64                     { return v.blk.Size() }
func (u *blockUpdate) Close() error                           { return u.blk.Sync() }

func (u *blockUpdate) Write(p []byte) (int, error) {
	n, err := u.blk.WriteAt(p, u.off)
	u.off += int64(n)
	return n, err
}

// write writes s's payload and finishes.
func (ls lyingSlot) write(t *testing.T, s *signed) error {
	if _, err := io.Copy(ls.w, s.from(t, 0)); err != nil {
		return err
	}
	return ls.w.Finish()
}

// namesLie checks that err wraps want and names the lie's offset or the start of its unit.
func namesLie(t *testing.T, err, want error, l mtdsim.Lie) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("error %v, want one wrapping %v", err, want)
	}
	t.Log(err)
	u := l.Off / lieUnit * lieUnit
	for _, s := range []string{fmt.Sprint(l.Off), fmt.Sprintf("%#x", l.Off), fmt.Sprint(u), fmt.Sprintf("%#x", u)} {
		if strings.Contains(err.Error(), s) {
			return
		}
	}
	t.Errorf("error %q names neither offset %d nor its unit at %d", err, l.Off, u)
}

// A lie that shows only after the data was written and synced (a writer's own read-back
// while programming sees the truth) fails every read-back verification the writer's callers
// use: VerifyWritten (raw files on files and block devices: flash blocks and UBI volumes have
// no later per-unit read-back), VerifyChunks (aduimg), Verify (MCUboot).
func TestReadBackCatchesLies(t *testing.T) {
	s := makeImage(t, payload(300*kib, 11), lieUnit)
	old := payload(mib, 12)
	verifications := []struct {
		name  string
		kinds []string
		run   func(Writer) error
	}{
		{"VerifyWritten", []string{"file", "block"}, func(w Writer) error { return w.VerifyWritten() }},
		{"VerifyChunks", []string{"file", "block", "nor", "nand", "ubi"}, func(w Writer) error { return chunksMatch(s.h.VerifyAt(w)) }},
		{"Verify", []string{"file", "block", "nor", "nand", "ubi"}, func(w Writer) error { return w.Verify(bytes.NewReader(s.raw)) }},
	}
	for _, v := range verifications {
		for _, kind := range v.kinds {
			for _, tc := range lies {
				t.Run(v.name+"/"+kind+"/"+tc.name, func(t *testing.T) {
					ls := openLying(t, kind, old, int64(len(s.raw)))
					l := tc.lie
					l.AfterSync = true
					must(t, ls.lie(l))
					if err := ls.write(t, s); err != nil {
						t.Fatalf("write: %v", err)
					}
					namesLie(t, v.run(ls.w), tc.want, tc.lie)
				})
			}
		}
	}
}

// A lie from the start is seen by the writer itself: raw flash reads every block back as it
// programs it (NOR fails the write, NAND retires the block and writes the next one), block
// devices and files read back the units they wrote in VerifyWritten. Over a slot that
// already holds the payload, where the writers skip units after comparing them, the lie
// makes the compare differ, so the unit is written and then read back like any other.
func TestWriterSeesLies(t *testing.T) {
	s := makeImage(t, payload(300*kib, 11), lieUnit)
	for _, before := range []string{"old", "same"} {
		old := payload(mib, 12)
		if before == "same" {
			copy(old, s.raw)
		}
		for _, kind := range []string{"file", "block", "nor", "nand"} {
			for _, tc := range lies {
				if tc.lie.Kind == mtdsim.Stale && before == "same" {
					continue // stale content equal to the payload is no lie
				}
				t.Run(before+"/"+kind+"/"+tc.name, func(t *testing.T) {
					ls := openLying(t, kind, old, int64(len(s.raw)))
					must(t, ls.lie(tc.lie))
					err := ls.write(t, s)
					switch {
					case kind == "nand" && tc.want == ErrMismatch:
						// The block that does not read back is retired; the payload goes on.
						if err != nil {
							t.Fatalf("write: %v", err)
						}
						if st := ls.w.Stats(); st.BadGrown != 1 || fmt.Sprint(ls.flash.BadBlocks()) != "[2]" {
							t.Fatalf("stats %+v, bad blocks %v: want block 2 retired", st, ls.flash.BadBlocks())
						}
						must(t, s.h.VerifyAt(ls.w))
					case ls.flash != nil:
						namesLie(t, err, tc.want, tc.lie)
					default:
						if err != nil {
							t.Fatalf("write: %v", err)
						}
						namesLie(t, ls.w.VerifyWritten(), tc.want, tc.lie)
					}
				})
			}
		}
	}
}

// VerifyReader and image's VerifyAt and FirstBadChunkAt take any io.ReaderAt (aduflash
// hands them its own). A short read without an error must fail them, not leave them comparing the
// bytes an earlier read left in the buffer: here every chunk (and MiB) repeats the one
// before it, so those bytes would match.
func TestShortReadIsNoMatch(t *testing.T) {
	unit := payload(lieUnit, 13)
	s := makeImage(t, bytes.Repeat(unit, 2*mib/lieUnit), lieUnit)
	blk, _ := mtdsim.NewBlock(2*mib, 512)
	must(t, blk.Load(s.raw))
	must(t, s.h.VerifyAt(blk))
	must(t, VerifyReader(blk, 2*mib, bytes.NewReader(s.raw)))
	must(t, blk.Lie(mtdsim.Lie{Kind: mtdsim.ShortRead, Off: mib, Len: 1}))
	l := mtdsim.Lie{Off: mib}
	namesLie(t, s.h.VerifyAt(blk), io.ErrUnexpectedEOF, l)
	namesLie(t, VerifyReader(blk, 2*mib, bytes.NewReader(s.raw)), io.ErrUnexpectedEOF, l)
	if i := s.h.FirstBadChunkAt(blk); i != mib/lieUnit {
		t.Errorf("FirstBadChunkAt %d, want %d", i, mib/lieUnit)
	}
}

// A writer's ReadAt (which the agent hashes a raw slot through) reports a short read of the
// storage as an error, not as the end of the slot.
func TestWriterReadAtShortRead(t *testing.T) {
	s := makeImage(t, payload(300*kib, 11), lieUnit)
	for _, kind := range []string{"file", "block", "nor", "nand", "ubi"} {
		t.Run(kind, func(t *testing.T) {
			ls := openLying(t, kind, payload(mib, 12), int64(len(s.raw)))
			must(t, ls.write(t, s))
			must(t, ls.lie(mtdsim.Lie{Kind: mtdsim.ShortRead, Off: lieOff, Len: 1}))
			buf := make([]byte, lieUnit)
			n, err := ls.w.ReadAt(buf, 2*lieUnit)
			if n != lieOff-2*lieUnit || !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("ReadAt: %d bytes, error %v; want %d bytes and io.ErrUnexpectedEOF", n, err, lieOff-2*lieUnit)
			}
		})
	}
}

// chunksMatch is install's reading of a chunk that does not match after the write: the slot
// does not hold what was written (ErrMismatch).
func chunksMatch(err error) error {
	if errors.Is(err, image.ErrChunkHash) {
		return fmt.Errorf("%w: %w", ErrMismatch, err)
	}
	return err
}
