package agent

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/aduflash/aduflash/adu"
	"github.com/aduflash/aduflash/devicesim/board"
	"github.com/aduflash/aduflash/install"
	"github.com/aduflash/aduflash/mtd"
	"github.com/aduflash/aduflash/slots"
)

// kernelSize is each bank's kernel slot: three 1 MiB copy units, so that a copy has resume
// points before its end.
const kernelSize = 3 << 20

// kernelBoard is a board with a kernel beside the rootfs in each bank (copied when an update
// does not write it), a bootloader slot per bank the updates leave alone, and one data slot
// that both banks use. Bank A runs factory rootfs and kernel; bank B's kernel slot holds
// what an earlier bank left there (stale, every block different from bank A's).
type kernelBoard struct {
	*device
	kernel, stale, ubootB, data []byte
}

// newKernelBoard makes the board, with the NAND blocks factoryBad lists bad from the factory.
func newKernelBoard(t *testing.T, factoryBad map[string][]int) *kernelBoard {
	t.Helper()
	b := &kernelBoard{kernel: payload(20, kernelSize-100<<10), stale: payload(21, kernelSize), ubootB: payload(22, 64<<10), data: payload(23, 64<<10)}
	b.device = newBoardDevice(t, board.Options{Factory: payload(1, 64<<10), FactoryBad: factoryBad, Classes: []board.Class{
		{Name: "kernel", Size: kernelSize, Factory: b.kernel},
		{Name: "uboot", Size: 64 << 10, Factory: payload(24, 64<<10), Spare: "keep"},
		{Name: "data", Size: 64 << 10, Factory: b.data, Spare: "shared"}}})
	stale := b.stale[:kernelSize-len(factoryBad["B/kernel"])*16<<10] // as much as its good blocks hold
	for name, content := range map[string][]byte{"B/kernel": stale, "B/uboot": b.ubootB} {
		if err := b.Load(name, content); err != nil {
			t.Fatal(err)
		}
	}
	return b
}

// ops counts the flash operations (erases, programs, bad-block marks) each slot has seen.
func (b *kernelBoard) ops() map[string]int64 {
	out := map[string]int64{}
	for _, name := range []string{"A/rootfs", "B/rootfs", "A/kernel", "B/kernel", "A/uboot", "B/uboot", "data"} {
		out[name] = b.Flash(name).Counters().Ops
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

// hooked is the board's layout with the flash of the slot of medium key ("B/kernel") hooked.
func (b *kernelBoard) hooked(key string, hook hookedFlash) func(*Options) {
	return func(o *Options) {
		l := b.Layout()
		open := l.Env.OpenFlash
		l.Env.OpenFlash = func(s *slots.Slot) (slots.Flash, error) {
			f, err := open(s)
			if err != nil || board.Name(s.Bank, s.Class) != key {
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
	b := newKernelBoard(t, nil)
	srv := newServer(t)
	raw := payload(2, 200<<10)
	u := newUpdate(t, srv, "2.0", raw, makeImage(t, raw, "2.0", nil), manifestOpts{})
	h := newHub(t)
	h.full(u.service("wf", ""))
	if err := runAgent(t, b.agent(nil), h, nil); !errors.Is(err, ErrRebooting) {
		t.Fatalf("%v; reports %v", err, h.all())
	}
	if st := b.bootState(); st.Pending != "B" || !b.slotHolds("B", raw) {
		t.Fatalf("bootloader %+v", st)
	}
	if !bytes.Equal(b.Content("B", "kernel", kernelSize), b.Content("A", "kernel", kernelSize)) {
		t.Fatal("bank B is pending with a kernel that is not bank A's")
	}
	ops := b.ops()
	for _, key := range []string{"A/rootfs", "A/kernel", "A/uboot", "B/uboot", "data"} {
		if ops[key] != 0 {
			t.Errorf("slot %s: %d flash operations, want none", key, ops[key])
		}
	}
	if !bytes.Equal(b.Content("B", "uboot", len(b.ubootB)), b.ubootB) || !bytes.Equal(b.Content("", "data", len(b.data)), b.data) {
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
	before := b.ops()["A/kernel"]
	h.full(u3.service("wf3", ""))
	if err := runAgent(t, b.agent(nil), h, nil); !errors.Is(err, ErrRebooting) {
		t.Fatalf("%v; reports %v", err, h.all())
	}
	cs = b.agent(nil).Record().Deployment.Copies
	if len(cs) != 1 || cs[0].Slot != "kernel-a" || !cs[0].Progress.Done || cs[0].Progress.Stats.BytesWritten != 0 || b.ops()["A/kernel"] != before {
		t.Fatalf("a kernel already in place was written: %+v, %d operations", cs, b.ops()["A/kernel"]-before)
	}
}

// A power cut during the copy leaves nothing pending; after it the deployment resumes the
// copy from its last resume point (not from the start, and without downloading again the
// rootfs already verified) and ends with a whole bank B that boots and is confirmed.
func TestSpareCopyPowerCut(t *testing.T) {
	b := newKernelBoard(t, nil)
	srv := newServer(t)
	raw := payload(2, 200<<10)
	u := newUpdate(t, srv, "2.0", raw, makeImage(t, raw, "2.0", nil), manifestOpts{})
	h := newHub(t)
	// The cut falls on the first erase of bank B's kernel slot past 2 MiB + 160 KiB, after the
	// copy's resume point at 2 MiB.
	cut := b.hooked("B/kernel", hookedFlash{beforeErase: func(off int64) error {
		if off >= 2<<20+160<<10 && !b.Power().IsOff() {
			b.Power().CutAfter(0)
		}
		return nil
	}})
	h.full(u.service("wf", ""))
	if err := runAgent(t, b.agent(cut), h, nil); err == nil || !b.Power().IsOff() {
		t.Fatalf("the power did not go: %v", err)
	}
	b.Power().On()
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
	sent := srv.Sent.Load()
	h.full(u.service("wf", ""))
	if err := runAgent(t, b.agent(nil), h, nil); !errors.Is(err, ErrRebooting) {
		t.Fatalf("resumed: %v; reports %v", err, h.all())
	}
	if again := srv.Sent.Load() - sent; again != 0 {
		t.Errorf("the resumed deployment downloaded %d bytes again", again)
	}
	c := b.agent(nil).Record().Deployment.Copies[0]
	if st := c.Progress.Stats; int64(st.UnitsWritten+st.UnitsSkipped)*int64(st.UnitSize) != kernelSize-cursor.Offset {
		n := (st.UnitsWritten + st.UnitsSkipped) * st.UnitSize
		t.Errorf("the resumed copy went over %d bytes, want the %d after its resume point", n, kernelSize-cursor.Offset)
	}
	if !bytes.Equal(b.Content("B", "kernel", kernelSize), b.Content("A", "kernel", kernelSize)) || b.bootState().Pending != "B" {
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
	b := newKernelBoard(t, nil)
	srv := newServer(t)
	raw := payload(2, 200<<10)
	u := newUpdate(t, srv, "2.0", raw, makeImage(t, raw, "2.0", nil), manifestOpts{})
	h := newHub(t)
	ecc := b.hooked("A/kernel", hookedFlash{beforeRead: func(off int64) error {
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
	b := newKernelBoard(t, nil)
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
	if ops := b.ops(); ops["B/kernel"] != 0 || b.bootState().Pending != "" {
		t.Fatalf("the dry run wrote: %v", ops)
	}
	if _, err := install(false); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b.Content("B", "kernel", kernelSize), b.Content("A", "kernel", kernelSize)) || b.bootState().Pending != "B" {
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
			b := newKernelBoard(t, map[string][]int{"B/kernel": {7}})
			if err := b.Load("A/kernel", append(bytes.Clone(tc.kernel), bytes.Repeat([]byte{0xFF}, kernelSize-len(tc.kernel))...)); err != nil {
				t.Fatal(err)
			}
			srv := newServer(t)
			raw := payload(2, 200<<10)
			u := newUpdate(t, srv, "2.0", raw, makeImage(t, raw, "2.0", nil), manifestOpts{})
			h := newHub(t)
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
			s, _ := b.Layout().Slot("kernel-b")
			r, err := b.Layout().OpenReader(s)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			got := make([]byte, c.Size)
			if _, err := r.ReadAt(got, 0); err != nil || !bytes.Equal(got, b.Content("A", "kernel", int(c.Size))) {
				t.Fatalf("bank B's kernel (bad blocks skipped) is not bank A's: %v", err)
			}
		})
	}
}
