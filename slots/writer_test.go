package slots

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aduflash/aduflash/mtd"
	"github.com/aduflash/aduflash/mtd/mtdsim"
)

const (
	kib = 1 << 10
	mib = 1 << 20
)

func nand(t *testing.T, size int, opts ...mtdsim.Option) *mtdsim.Flash {
	t.Helper()
	f, err := mtdsim.NewNAND(size, 64*kib, 2*kib, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func nor(t *testing.T, size int) *mtdsim.Flash {
	t.Helper()
	f, err := mtdsim.NewNOR(size, 64*kib, mtdsim.WithStrict())
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// writeBlock writes data through a block writer over all of dev and finishes.
func writeBlock(t *testing.T, dev BlockDevice, data []byte, opts ...Option) Writer {
	t.Helper()
	size := int64(len(data))
	w, err := NewBlockWriter(dev, "t", 0, size, size, nil, opts...)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := w.Finish(); err != nil {
		t.Fatal(err)
	}
	return w
}

// writeAll writes s's payload from the writer's cursor on, finishes and verifies.
func writeAll(t *testing.T, w Writer, s *signed) {
	t.Helper()
	c := w.Cursor()
	if _, err := io.Copy(w, s.from(t, c.Chunk)); err != nil {
		t.Fatalf("write: %v", err)
	}
	if err := w.Finish(); err != nil {
		t.Fatalf("finish: %v", err)
	}
	if err := s.h.VerifyAt(w); err != nil {
		t.Fatalf("reading the chunks back: %v", err)
	}
	if err := w.Verify(bytes.NewReader(s.raw)); err != nil {
		t.Fatalf("Verify: %v", err)
	}
}

func TestFlashWriterNORAndNAND(t *testing.T) {
	s := makeImage(t, payload(mib+5000, 1), 64*kib)
	for _, tc := range []struct {
		name string
		dev  *mtdsim.Flash
	}{
		{"nor", nor(t, 2*mib)},
		{"nand", nand(t, 2*mib)},
		{"nand-factory-bad", nand(t, 2*mib, mtdsim.WithFactoryBad(0, 3, 4))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w, err := NewFlashWriter(tc.dev, "fw", 0, 0, int64(len(s.raw)), nil, WithChunkSize(s.h.ChunkSize), WithReserve(2))
			if err != nil {
				t.Fatal(err)
			}
			writeAll(t, w, s)
			st := w.Stats()
			if st.UnitsWritten != 17 || st.UnitsSkipped != 0 {
				t.Errorf("stats %+v: want 17 blocks written", st)
			}
			if want := len(tc.dev.BadBlocks()); st.BadSkipped != want {
				t.Errorf("skipped %d bad blocks, want %d", st.BadSkipped, want)
			}
			w.Close()
			// The second write of the same image erases and programs nothing.
			tc.dev.ResetCounters()
			w, err = NewFlashWriter(tc.dev, "fw", 0, 0, int64(len(s.raw)), nil, WithChunkSize(s.h.ChunkSize))
			if err != nil {
				t.Fatal(err)
			}
			writeAll(t, w, s)
			if c := tc.dev.Counters(); c.Erases != 0 || c.Programs != 0 {
				t.Errorf("second write: %d erases, %d programs; want none", c.Erases, c.Programs)
			}
			if st := w.Stats(); st.UnitsSkipped != 17 || st.BytesSkipped != int64(len(s.raw)) {
				t.Errorf("second write stats %+v: want 17 blocks skipped", st)
			}
			// A fresh reader of the region (a new writer's ReadAt) maps around the bad blocks.
			if err := s.h.VerifyAt(w); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestFlashWriterGrownBadBlocks(t *testing.T) {
	s := makeImage(t, payload(mib, 2), 64*kib)
	dev := nand(t, 2*mib, mtdsim.WithFactoryBad(1))
	dev.FailEraseAt(3)
	dev.FailProgramAt((6*64*kib + 10*2*kib) / (2 * kib)) // page 10 of block 6
	w, err := NewFlashWriter(dev, "fw", 0, 0, int64(len(s.raw)), nil, WithChunkSize(s.h.ChunkSize), WithReserve(4))
	if err != nil {
		t.Fatal(err)
	}
	writeAll(t, w, s)
	if st := w.Stats(); st.BadGrown != 2 || st.BadSkipped != 1 {
		t.Errorf("stats %+v: want 2 grown, 1 factory bad", st)
	}
	if got := fmt.Sprint(dev.BadBlocks()); got != "[1 3 6]" {
		t.Errorf("bad blocks %s, want [1 3 6]", got)
	}
}

func TestFlashWriterReserveExhausted(t *testing.T) {
	// 8 blocks, reserve 1, payload 7 blocks: two grown bad blocks are one too many.
	dev := nand(t, 8*64*kib)
	dev.FailEraseAt(2)
	dev.FailEraseAt(5)
	raw := payload(7*64*kib, 3)
	w, err := NewFlashWriter(dev, "fw", 0, 0, int64(len(raw)), nil, WithReserve(1))
	if err != nil {
		t.Fatal(err)
	}
	_, err = w.Write(raw)
	if err == nil {
		err = w.Finish()
	}
	if !errors.Is(err, ErrReserveExhausted) {
		t.Fatalf("err %v, want ErrReserveExhausted", err)
	}
}

func TestSizeLimit(t *testing.T) {
	dev := nand(t, 16*64*kib, mtdsim.WithFactoryBad(2, 9))
	// 16 blocks − 2 bad − 3 reserve = 11 blocks.
	_, err := NewFlashWriter(dev, "fw", 0, 0, 11*64*kib+1, nil, WithReserve(3))
	if !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), "720897") || !strings.Contains(err.Error(), "720896") {
		t.Fatalf("err %v: want ErrTooLarge naming both sizes", err)
	}
	if _, err := NewFlashWriter(dev, "fw", 0, 0, 11*64*kib, nil, WithReserve(3)); err != nil {
		t.Fatal(err)
	}
	blk, _ := mtdsim.NewBlock(mib, 512)
	if _, err := NewBlockWriter(blk, "b", 0, mib, mib+1, nil); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("block: err %v, want ErrTooLarge", err)
	}
	// Writing more than announced fails too.
	w, err := NewBlockWriter(blk, "b", 0, mib, 10, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(make([]byte, 11)); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("overlong write: %v", err)
	}
}

func TestBlockAndFileWriters(t *testing.T) {
	s := makeImage(t, payload(3*mib+123, 4), 256*kib)
	blk, _ := mtdsim.NewBlock(4*mib, 512)
	w, err := NewBlockWriter(blk, "b", 0, blk.Size(), int64(len(s.raw)), nil, WithChunkSize(s.h.ChunkSize), WithUnit(256*kib))
	if err != nil {
		t.Fatal(err)
	}
	writeAll(t, w, s)
	before := blk.Counters()
	w, err = NewBlockWriter(blk, "b", 0, blk.Size(), int64(len(s.raw)), nil, WithUnit(256*kib))
	if err != nil {
		t.Fatal(err)
	}
	writeAll(t, w, s)
	if after := blk.Counters(); after.BytesWritten != before.BytesWritten {
		t.Errorf("identical rewrite wrote %d bytes", after.BytesWritten-before.BytesWritten)
	}
	if st := w.Stats(); st.UnitsWritten != 0 || st.BytesSkipped != int64(len(s.raw)) {
		t.Errorf("stats %+v", st)
	}

	path := filepath.Join(t.TempDir(), "slot.img")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	w, err = NewBlockWriter(f, "f", 4096, 0, int64(len(s.raw)), nil)
	if err != nil {
		t.Fatal(err)
	}
	writeAll(t, w, s)
	w.Close()
	got, _ := os.ReadFile(path)
	if !bytes.Equal(got[4096:], s.raw) {
		t.Fatal("file content differs")
	}
}

type fakeVolume struct {
	data     []byte
	reserved int64
	updates  int
}

type fakeUpdate struct {
	v    *fakeVolume
	size int64
	buf  bytes.Buffer
}

func (v *fakeVolume) Update(size int64) (io.WriteCloser, error) {
	v.updates++
	return &fakeUpdate{v: v, size: size}, nil
}
func (u *fakeUpdate) Write(p []byte) (int, error) { return u.buf.Write(p) }
func (u *fakeUpdate) Close() error {
	if int64(u.buf.Len()) != u.size {
		return mtd.ErrUpdateSize
	}
	u.v.data = u.buf.Bytes()
	return nil
}
func (v *fakeVolume) ReservedSize() int64 { return v.reserved }
func (v *fakeVolume) ReadAt(p []byte, off int64) (int, error) {
	n := copy(p, v.data[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func TestVolumeWriter(t *testing.T) {
	s := makeImage(t, payload(300*kib, 5), 64*kib)
	v := &fakeVolume{reserved: mib}
	// A cursor is ignored: a UBI update restarts at 0.
	w, err := NewVolumeWriter(v, "ubi", int64(len(s.raw)), &Cursor{Size: int64(len(s.raw)), Offset: 128 * kib})
	if err != nil {
		t.Fatal(err)
	}
	if w.Cursor().Offset != 0 {
		t.Fatalf("UBI writer resumes at %d", w.Cursor().Offset)
	}
	writeAll(t, w, s)
	if v.updates != 1 || w.Cursor().Offset != int64(len(s.raw)) {
		t.Fatalf("updates %d, cursor %+v", v.updates, w.Cursor())
	}
	if _, err := NewVolumeWriter(v, "ubi", 2*mib, nil); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("err %v", err)
	}
}

// powerDevice is a simulated storage with power cuts.
type powerDevice interface {
	PowerCutAfter(n int)
	PowerOn()
	PoweredOff() bool
	Bytes() []byte
	Load([]byte) error
}

// activeRegion stands for the running (active) slot beside the one being written: the bytes
// before the written slot's offset, filled with a pattern no write may change.
func activeRegion(t *testing.T, dev powerDevice, end int, rest byte) []byte {
	t.Helper()
	img := dev.Bytes()
	for i := range img {
		img[i] = rest
		if i < end {
			img[i] = byte(i*31 + 7)
		}
	}
	if err := dev.Load(img); err != nil {
		t.Fatal(err)
	}
	return img[:end]
}

// TestPowerCutResume cuts the power at every operation of a write; after power returns,
// resuming from the last persisted cursor completes the write and every chunk verifies.
func TestPowerCutResume(t *testing.T) {
	s := makeImage(t, payload(mib+5000, 6), 64*kib)
	size := int64(len(s.raw))
	type target struct {
		name   string
		mk     func() (powerDevice, func(resume *Cursor, save func(Cursor) error) (Writer, error))
		active int  // the slot written starts here; before it lies the active slot
		erased byte // what the rest of the device holds at the start
	}
	flashTarget := func(mkf func() *mtdsim.Flash) func() (powerDevice, func(*Cursor, func(Cursor) error) (Writer, error)) {
		return func() (powerDevice, func(*Cursor, func(Cursor) error) (Writer, error)) {
			f := mkf()
			return f, func(resume *Cursor, save func(Cursor) error) (Writer, error) {
				return NewFlashWriter(f, "fw", 64*kib, 0, size, resume, WithChunkSize(s.h.ChunkSize),
					WithSyncInterval(64*kib), WithReserve(1), WithCursorFunc(save))
			}
		}
	}
	targets := []target{
		{"nor", flashTarget(func() *mtdsim.Flash { return nor(t, 2*mib) }), 64 * kib, 0xff},
		{"nand", flashTarget(func() *mtdsim.Flash { return nand(t, 2*mib, mtdsim.WithFactoryBad(5)) }), 64 * kib, 0xff},
		{"block", func() (powerDevice, func(*Cursor, func(Cursor) error) (Writer, error)) {
			b, _ := mtdsim.NewBlock(2*mib, 4096)
			return b, func(resume *Cursor, save func(Cursor) error) (Writer, error) {
				return NewBlockWriter(b, "blk", 8192, 0, size, resume, WithChunkSize(s.h.ChunkSize),
					WithSyncInterval(128*kib), WithUnit(64*kib), WithCursorFunc(save))
			}
		}, 8192, 0},
	}
	for _, tg := range targets {
		t.Run(tg.name, func(t *testing.T) {
			cuts := 0
			for n := 0; ; n++ {
				dev, open := tg.mk()
				active := activeRegion(t, dev, tg.active, tg.erased)
				untouched := func(when string) {
					t.Helper()
					if !bytes.Equal(dev.Bytes()[:tg.active], active) {
						t.Fatalf("cut %d: the active slot changed %s", n, when)
					}
				}
				dev.PowerCutAfter(n)
				var saved []byte // the persisted cursor, as JSON
				save := func(c Cursor) error {
					b, err := json.Marshal(c)
					saved = b
					return err
				}
				w, err := open(nil, save)
				if err != nil {
					t.Fatal(err)
				}
				_, err = io.Copy(w, s.from(t, 0))
				if err == nil {
					err = w.Finish()
				}
				w.Close()
				if err == nil {
					if dev.PoweredOff() {
						t.Fatalf("cut %d: no error after a power cut", n)
					}
					break // n is past the last operation
				}
				if !errors.Is(err, mtd.ErrPowerCut) {
					t.Fatalf("cut %d: %v", n, err)
				}
				cuts++
				dev.PowerOn()
				untouched("at the power cut")
				var resume *Cursor
				if saved != nil {
					resume = new(Cursor)
					if err := json.Unmarshal(saved, resume); err != nil {
						t.Fatal(err)
					}
				}
				w, err = open(resume, save)
				if err != nil {
					t.Fatalf("cut %d: reopen: %v", n, err)
				}
				if resume != nil && w.Cursor().Offset != resume.Offset {
					t.Fatalf("cut %d: resumed at %d, cursor says %d", n, w.Cursor().Offset, resume.Offset)
				}
				writeAll(t, w, s)
				w.Close()
				untouched("by the resumed write")
			}
			if cuts < 20 {
				t.Fatalf("only %d power cuts exercised", cuts)
			}
			t.Logf("%d power cuts", cuts)
		})
	}
}

func TestCursorChecks(t *testing.T) {
	dev := nand(t, mib)
	for _, c := range []Cursor{
		{Size: 999, Offset: 0},
		{Size: 4 * 64 * kib, Offset: 100},
		{Size: 4 * 64 * kib, Offset: 64 * kib, Physical: 0},
		{Size: 4 * 64 * kib, Offset: 0, Physical: 2 * mib},
		{Slot: "other", Size: 4 * 64 * kib},
	} {
		if _, err := NewFlashWriter(dev, "fw", 0, 0, 4*64*kib, &c); !errors.Is(err, ErrCursor) {
			t.Errorf("cursor %+v: err %v, want ErrCursor", c, err)
		}
	}
}

// Sync points exist to make resume cursors durable: with a cursor keeper the writer syncs at
// every interval; without one it syncs once, at Finish (256 fsyncs per GiB cost a raw write
// a third of its speed).
func TestSyncPointsOnlyForCursorKeepers(t *testing.T) {
	const size = 8 << 20
	data := bytes.Repeat([]byte{0x5a}, size)
	for _, keep := range []bool{false, true} {
		dev, err := mtdsim.NewBlock(size, 512)
		if err != nil {
			t.Fatal(err)
		}
		var cursors []Cursor
		opts := []Option{WithSyncInterval(1 << 20)}
		if keep {
			opts = append(opts, WithCursorFunc(func(c Cursor) error { cursors = append(cursors, c); return nil }))
		}
		w := writeBlock(t, dev, data, opts...)
		syncs := w.Stats().Syncs
		if keep && (syncs < 8 || len(cursors) < 8) {
			t.Errorf("with a cursor keeper: %d syncs, %d cursors; want one per MiB", syncs, len(cursors))
		}
		if !keep && syncs != 1 {
			t.Errorf("without a cursor keeper: %d syncs, want 1 (at Finish)", syncs)
		}
		if c := w.Cursor(); c.Offset != size {
			t.Errorf("cursor after Finish: %+v", c)
		}
	}
}

// WithoutReadBack keeps no checksums, and VerifyWritten then says so instead of passing.
func TestWithoutReadBack(t *testing.T) {
	const size = 3 << 20
	data := bytes.Repeat([]byte{0xa5}, size)
	for _, noRB := range []bool{false, true} {
		dev, err := mtdsim.NewBlock(size, 512)
		if err != nil {
			t.Fatal(err)
		}
		var opts []Option
		if noRB {
			opts = append(opts, WithoutReadBack())
		}
		w := writeBlock(t, dev, data, opts...)
		err = w.VerifyWritten()
		if noRB && err == nil {
			t.Error("VerifyWritten after WithoutReadBack passed without checking anything")
		}
		if !noRB && err != nil {
			t.Error(err)
		}
		if err := w.Verify(bytes.NewReader(data)); err != nil {
			t.Errorf("Verify against the source (WithoutReadBack=%v): %v", noRB, err)
		}
	}
}

// countingBlock counts the reads a writer makes of the device.
type countingBlock struct {
	BlockDevice
	reads int
}

func (c *countingBlock) ReadAt(p []byte, off int64) (int, error) {
	c.reads++
	return c.BlockDevice.ReadAt(p, off)
}

// The compare before writing backs off during a run of units that all differ, and comes back
// when one matches; the content is right whatever it skips.
func TestBlockProbeBacksOff(t *testing.T) {
	const unit, units = 64 << 10, 300
	old := make([]byte, unit*units)
	img := make([]byte, unit*units)
	for i := range img {
		img[i] = byte(i*7 + i/unit)
		old[i] = img[i]
	}
	// Units 20..139 differ; 0..19 and 140..299 are already on the device.
	for u := 20; u < 140; u++ {
		old[u*unit] ^= 0xff
	}
	sim, err := mtdsim.NewBlock(len(img), 512)
	if err != nil {
		t.Fatal(err)
	}
	if err := sim.Load(old); err != nil {
		t.Fatal(err)
	}
	w := writeBlock(t, &countingBlock{BlockDevice: sim}, img, WithUnit(unit))
	if !bytes.Equal(sim.Bytes(), img) {
		t.Fatal("content differs from the image")
	}
	st := w.Stats()
	// 20 leading matches; after the 120 misses probing is sparse until one of the trailing
	// 160 matches is probed (within 64 units), then every unit is compared again.
	if st.UnitsSkipped < 20+160-probeEvery || st.UnitsWritten < 120 {
		t.Fatalf("skipped %d, written %d", st.UnitsSkipped, st.UnitsWritten)
	}

	// A fresh image over different content: after the first run of misses, few reads.
	fresh, _ := mtdsim.NewBlock(len(img), 512)
	dev2 := &countingBlock{BlockDevice: fresh}
	writeBlock(t, dev2, img, WithUnit(unit))
	if max := missRun + units/probeEvery + 2; dev2.reads > max {
		t.Fatalf("%d reads before writing %d differing units, want at most %d", dev2.reads, units, max)
	}
	if !bytes.Equal(fresh.Bytes(), img) {
		t.Fatal("fresh content differs")
	}
}
