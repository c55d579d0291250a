package agent

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/aduflash/aduflash/adu"
	"github.com/aduflash/aduflash/install"
	"github.com/aduflash/aduflash/mtd"
	"github.com/aduflash/aduflash/mtd/mtdsim"
	"github.com/aduflash/aduflash/slots"
)

// spareSlots is a board with a kernel beside the rootfs in each bank (copied when an update
// does not write it), a bootloader slot per bank the updates leave alone, and one data slot
// that both banks use.
const spareSlots = slotsDoc + `
[slots.class.uboot]
spare = "keep"
[slots.class.data]
spare = "shared"
[[slots.slot]]
class = "kernel"
bank = "A"
type = "nand"
mtd = "kernel_a"
[[slots.slot]]
class = "kernel"
bank = "B"
type = "nand"
mtd = "kernel_b"
[[slots.slot]]
class = "uboot"
bank = "A"
type = "nand"
mtd = "uboot_a"
[[slots.slot]]
class = "uboot"
bank = "B"
type = "nand"
mtd = "uboot_b"
[[slots.slot]]
class = "data"
type = "nand"
mtd = "data"
`

// kernelSize is each bank's kernel slot: three 1 MiB copy units, so that a copy has resume
// points before its end.
const kernelSize = 3 << 20

// kernelBoard is the two-class device: bank A runs factory rootfs and kernel; bank B's kernel
// slot holds what an earlier bank left there (stale, every block different from bank A's).
type kernelBoard struct {
	*device
	kernel, stale, ubootB, data []byte
}

func newKernelBoard(t *testing.T) *kernelBoard {
	t.Helper()
	d := newDevice(t, payload(1, 64<<10))
	cfg, err := slots.ParseConfig([]byte(spareSlots))
	if err != nil {
		t.Fatal(err)
	}
	d.cfg = cfg
	b := &kernelBoard{device: d, kernel: payload(20, kernelSize-100<<10), stale: payload(21, kernelSize),
		ubootB: payload(22, 64<<10), data: payload(23, 64<<10)}
	for key, content := range map[string][]byte{"kernel/A": b.kernel, "kernel/B": b.stale, "uboot/A": payload(24, 64<<10),
		"uboot/B": b.ubootB, "data/": b.data} {
		size := 64 << 10
		if strings.HasPrefix(key, "kernel") {
			size = kernelSize
		}
		f, err := mtdsim.NewNAND(size, 16<<10, 512)
		if err != nil {
			t.Fatal(err)
		}
		if err := f.Load(append(bytes.Clone(content), bytes.Repeat([]byte{0xFF}, size-len(content))...)); err != nil {
			t.Fatal(err)
		}
		d.nand[key] = f
	}
	return b
}

// slot returns the first n bytes of the slot keyed key ("kernel/B"; "A" is bank A's rootfs).
func (b *kernelBoard) slot(key string, n int) []byte {
	buf := make([]byte, n)
	if _, err := b.nand[key].ReadAt(buf, 0); err != nil {
		b.t.Fatal(err)
	}
	return buf
}

// ops counts the flash operations (erases, programs, bad-block marks) each slot has seen.
func (b *kernelBoard) ops() map[string]int64 {
	out := map[string]int64{}
	for key, f := range b.nand {
		out[key] = f.Counters().Ops
	}
	return out
}

// hookedFlash calls a function before the erases and reads of one slot's flash.
type hookedFlash struct {
	slots.Flash
	beforeErase func(off int64) error
	beforeRead  func(off int64) error
}

func (f hookedFlash) Erase(off, n int64) error {
	if f.beforeErase != nil {
		if err := f.beforeErase(off); err != nil {
			return err
		}
	}
	return f.Flash.Erase(off, n)
}

func (f hookedFlash) ReadAt(p []byte, off int64) (int, error) {
	if f.beforeRead != nil {
		if err := f.beforeRead(off); err != nil {
			return 0, err
		}
	}
	return f.Flash.ReadAt(p, off)
}

// hooked is the board's layout with the flash of the slot keyed key ("kernel/B") hooked.
func (b *kernelBoard) hooked(key string, hook hookedFlash) func(*Options) {
	return func(o *Options) {
		l := b.layout()
		open := l.Env.OpenFlash
		l.Env.OpenFlash = func(s *slots.Slot) (slots.Flash, error) {
			f, err := open(s)
			if err != nil || s.Class+"/"+s.Bank != key {
				return f, err
			}
			h := hook
			h.Flash = f
			return h, nil
		}
		o.Layout = l
	}
}

// An update of the rootfs alone leaves bank B whole: its kernel slot holds bank A's kernel,
// copied and verified before the bank is marked pending; the slot the config leaves alone and
// the shared slot are not written, nor is any slot of the running bank; the service sees the
// manifest's one step. The next update, back into bank A, finds bank A's kernel identical and
// writes nothing there.
func TestSpareBankWhole(t *testing.T) {
	b := newKernelBoard(t)
	srv := newServer(t)
	raw := payload(2, 200<<10)
	u := newUpdate(t, srv, "2.0", raw, makeImage(t, raw, "2.0", nil), manifestOpts{})
	h := newMemHub(b.p)
	h.full(u.service("wf", ""))
	if err := runAgent(t, b.agent(nil), h, nil); !errors.Is(err, ErrRebooting) {
		t.Fatalf("%v; reports %v", err, h.all())
	}
	if st := b.bootState(); st.Pending != "B" || !b.slotHolds("B", raw) {
		t.Fatalf("bootloader %+v", st)
	}
	if !bytes.Equal(b.slot("kernel/B", kernelSize), b.slot("kernel/A", kernelSize)) {
		t.Fatal("bank B is pending with a kernel that is not bank A's")
	}
	ops := b.ops()
	for _, key := range []string{"A", "kernel/A", "uboot/A", "uboot/B", "data/"} {
		if ops[key] != 0 {
			t.Errorf("slot %s: %d flash operations, want none", key, ops[key])
		}
	}
	if !bytes.Equal(b.slot("uboot/B", len(b.ubootB)), b.ubootB) || !bytes.Equal(b.slot("data/", len(b.data)), b.data) {
		t.Error("the slot left alone or the shared slot changed")
	}
	rec := b.agent(nil).Record()
	cs := rec.Deployment.Copies
	if len(cs) != 1 || cs[0].Class != "kernel" || cs[0].From != "kernel-a" || cs[0].Slot != "kernel-b" || cs[0].Size != kernelSize ||
		!cs[0].Progress.Done || cs[0].Progress.Format != install.FormatCopy {
		t.Fatalf("copies %+v", cs)
	}

	b.reset()
	h.full(u.service("wf", ""))
	if err := runAgent(t, b.agent(nil), h, succeeded(h, "wf", u)); err != nil {
		t.Fatal(err)
	}
	if sr := stepResults(lastState(h)); len(sr) != 1 || resultCodeOf(sr["step_0"]) != float64(adu.ResultApplySuccess) {
		t.Fatalf("step results %v", sr)
	}
	rec = b.agent(nil).Record()
	if bi := rec.Banks["B"]; bi == nil || bi.Sizes["kernel"] != kernelSize || bi.Sizes["rootfs"] != int64(len(raw)) || bi.Versions["rootfs"] != "2.0" {
		t.Fatalf("bank B: %+v", rec.Banks["B"])
	}

	// 3.0 goes into bank A; its kernel (the size the journal knows) is bank B's already.
	raw3 := payload(3, 100<<10)
	u3 := newUpdate(t, srv, "3.0", raw3, makeImage(t, raw3, "3.0", nil), manifestOpts{})
	before := b.ops()["kernel/A"]
	h.full(u3.service("wf3", ""))
	if err := runAgent(t, b.agent(nil), h, nil); !errors.Is(err, ErrRebooting) {
		t.Fatalf("%v; reports %v", err, h.all())
	}
	cs = b.agent(nil).Record().Deployment.Copies
	if len(cs) != 1 || cs[0].Slot != "kernel-a" || !cs[0].Progress.Done || cs[0].Progress.Stats.BytesWritten != 0 || b.ops()["kernel/A"] != before {
		t.Fatalf("a kernel already in place was written: %+v, %d operations", cs, b.ops()["kernel/A"]-before)
	}
}

// A power cut during the copy leaves nothing pending; after it the deployment resumes the
// copy from its last resume point (not from the start, and without downloading again the
// rootfs already verified) and ends with a whole bank B that boots and is confirmed.
func TestSpareCopyPowerCut(t *testing.T) {
	b := newKernelBoard(t)
	srv := newServer(t)
	raw := payload(2, 200<<10)
	u := newUpdate(t, srv, "2.0", raw, makeImage(t, raw, "2.0", nil), manifestOpts{})
	h := newMemHub(b.p)
	// The cut falls on the first erase of bank B's kernel slot past 2 MiB + 160 KiB, after the
	// copy's resume point at 2 MiB.
	cut := b.hooked("kernel/B", hookedFlash{beforeErase: func(off int64) error {
		if off >= 2<<20+160<<10 && !b.p.IsOff() {
			b.p.CutAfter(0)
		}
		return nil
	}})
	h.full(u.service("wf", ""))
	if err := runAgent(t, b.agent(cut), h, nil); err == nil || !b.p.IsOff() {
		t.Fatalf("the power did not go: %v", err)
	}
	b.p.On()
	rec := b.agent(nil).Record()
	if st := b.bootState(); st.Pending != "" || rec.Deployment == nil || rec.Deployment.Phase != PhaseInstall {
		t.Fatalf("after the cut: bootloader %+v, deployment %+v", st, rec.Deployment)
	}
	cursor := rec.Deployment.Copies[0].Progress.Cursor
	if !rec.Deployment.Steps[0].Progress.Done || cursor == nil || cursor.Offset != 2<<20 {
		t.Fatalf("after the cut: step %+v, copy cursor %+v", rec.Deployment.Steps[0].Progress, cursor)
	}

	if boot := b.reset(); boot.Bank != "A" {
		t.Fatalf("U-Boot started bank %s", boot.Bank)
	}
	sent := srv.sent.Load()
	h.full(u.service("wf", ""))
	if err := runAgent(t, b.agent(nil), h, nil); !errors.Is(err, ErrRebooting) {
		t.Fatalf("resumed: %v; reports %v", err, h.all())
	}
	if again := srv.sent.Load() - sent; again != 0 {
		t.Errorf("the resumed deployment downloaded %d bytes again", again)
	}
	c := b.agent(nil).Record().Deployment.Copies[0]
	if st := c.Progress.Stats; int64(st.UnitsWritten+st.UnitsSkipped)*int64(st.UnitSize) != kernelSize-cursor.Offset {
		n := (st.UnitsWritten + st.UnitsSkipped) * st.UnitSize
		t.Errorf("the resumed copy went over %d bytes, want the %d after its resume point", n, kernelSize-cursor.Offset)
	}
	if !bytes.Equal(b.slot("kernel/B", kernelSize), b.slot("kernel/A", kernelSize)) || b.bootState().Pending != "B" {
		t.Fatal("bank B is not whole, or not pending")
	}
	b.reset()
	h.full(u.service("wf", ""))
	if err := runAgent(t, b.agent(nil), h, succeeded(h, "wf", u)); err != nil {
		t.Fatal(err)
	}
}

// A running kernel slot that cannot be read fails the deployment with ERCSlotCopy, in the
// update's result and its one step's, and nothing pending.
func TestSpareCopySourceUnreadable(t *testing.T) {
	b := newKernelBoard(t)
	srv := newServer(t)
	raw := payload(2, 200<<10)
	u := newUpdate(t, srv, "2.0", raw, makeImage(t, raw, "2.0", nil), manifestOpts{})
	h := newMemHub(b.p)
	ecc := b.hooked("kernel/A", hookedFlash{beforeRead: func(off int64) error {
		if off >= 1<<20 {
			return &mtd.BlockError{Op: "read", Off: off, Err: mtd.ErrIO}
		}
		return nil
	}})
	h.full(u.service("wf", ""))
	if err := runAgent(t, b.agent(ecc), h, failedThenIdle(h, "wf")); err != nil {
		t.Fatalf("%v; reports %v", err, h.all())
	}
	lir, _ := lastState(h)["lastInstallResult"].(map[string]any)
	erc := adu.ExtendedResultCode(uint32(int32(lir["extendedResultCode"].(float64))))
	sr := stepResults(lastState(h))
	if erc != ERCSlotCopy || len(sr) != 1 {
		t.Fatalf("result %v (erc %s), want %s in the update's and its one step's", lir, erc, ERCSlotCopy)
	}
	if st := b.bootState(); st.Pending != "" || st.Primary != "A" {
		t.Fatalf("bootloader %+v", st)
	}
	rec := b.agent(nil).Record()
	if rec.Deployment != nil || rec.Last == nil || rec.Last.ExtendedResultCode != ERCSlotCopy || rec.Last.Steps[0].ExtendedResultCode != ERCSlotCopy {
		t.Fatalf("record %+v", rec)
	}
}

// aduagent install copies as a deployment does, and its dry run tells what it would copy
// without writing it; it refuses to write a shared class.
func TestSpareCopyLocal(t *testing.T) {
	b := newKernelBoard(t)
	srv := newServer(t)
	raw := payload(2, 200<<10)
	img := makeImage(t, raw, "2.0", nil)
	installInto := func(class string, dry bool) (*Deployment, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		return b.agent(nil).InstallLocal(ctx, LocalInstall{Source: Source{URL: srv.put("r.aduimg", img), Size: int64(len(img))},
			Class: class, NoReboot: true, DryRun: dry})
	}
	install := func(dry bool) (*Deployment, error) { return installInto("rootfs", dry) }
	// The shared slot is the running bank's too: nothing installs into it.
	if _, err := installInto("data", false); !errors.Is(err, ErrSlotClass) || !strings.Contains(err.Error(), "shared by every bank") {
		t.Fatalf("into the shared class: %v", err)
	}
	dep, err := install(true)
	if err != nil || len(dep.Copies) != 1 || dep.Copies[0].Slot != "kernel-b" || dep.Copies[0].Size != kernelSize ||
		dep.Copies[0].Progress.Info == nil || dep.Copies[0].Progress.Stats.BytesSkipped != 0 {
		t.Fatalf("dry run: %v, %+v", err, dep)
	}
	if ops := b.ops(); ops["kernel/B"] != 0 || b.bootState().Pending != "" {
		t.Fatalf("the dry run wrote: %v", ops)
	}
	if _, err := install(false); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b.slot("kernel/B", kernelSize), b.slot("kernel/A", kernelSize)) || b.bootState().Pending != "B" {
		t.Fatal("bank B is not whole, or not pending")
	}
}

// Raw NAND banks with different bad blocks: a factory kernel (its size unknown) is copied
// whole up to the spare's capacity when the running slot is erased past it, and refused with
// ERCSlotCopy, nothing pending, when it holds data there.
func TestSpareCopyBadBlocks(t *testing.T) {
	for _, tc := range []struct {
		name   string
		kernel []byte
		fits   bool
	}{
		{"erased past the spare's capacity", payload(20, kernelSize-100<<10), true},
		{"data past the spare's capacity", payload(20, kernelSize), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newKernelBoard(t)
			if err := b.nand["kernel/A"].Load(append(bytes.Clone(tc.kernel), bytes.Repeat([]byte{0xFF}, kernelSize-len(tc.kernel))...)); err != nil {
				t.Fatal(err)
			}
			spare, err := mtdsim.NewNAND(kernelSize, 16<<10, 512, mtdsim.WithFactoryBad(7))
			if err != nil {
				t.Fatal(err)
			}
			b.nand["kernel/B"] = spare
			srv := newServer(t)
			raw := payload(2, 200<<10)
			u := newUpdate(t, srv, "2.0", raw, makeImage(t, raw, "2.0", nil), manifestOpts{})
			h := newMemHub(b.p)
			h.full(u.service("wf", ""))
			if !tc.fits {
				if err := runAgent(t, b.agent(nil), h, failedThenIdle(h, "wf")); err != nil {
					t.Fatal(err)
				}
				rec := b.agent(nil).Record()
				if st := b.bootState(); st.Pending != "" || rec.Last == nil || rec.Last.ExtendedResultCode != ERCSlotCopy ||
					!strings.Contains(rec.Last.Details, "holds data up to byte") {
					t.Fatalf("bootloader %+v, outcome %+v", st, rec.Last)
				}
				return
			}
			if err := runAgent(t, b.agent(nil), h, nil); !errors.Is(err, ErrRebooting) {
				t.Fatalf("%v; reports %v", err, h.all())
			}
			c := b.agent(nil).Record().Deployment.Copies[0]
			if c.Size != kernelSize-16<<10 {
				t.Fatalf("copied %d bytes, want the spare's %d", c.Size, kernelSize-16<<10)
			}
			s, _ := b.layout().Slot("kernel-b")
			r, err := b.layout().OpenReader(s)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			got := make([]byte, c.Size)
			if _, err := r.ReadAt(got, 0); err != nil || !bytes.Equal(got, b.slot("kernel/A", int(c.Size))) {
				t.Fatalf("bank B's kernel (bad blocks skipped) is not bank A's: %v", err)
			}
		})
	}
}
