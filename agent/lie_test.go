package agent

import (
	"errors"
	"fmt"
	"testing"

	"github.com/aduflash/aduflash/adu"
	"github.com/aduflash/aduflash/devicesim/board"
	"github.com/aduflash/aduflash/mtd/mtdsim"
)

// lieOff is where bank B lies: inside the 200 KiB payload, in its 7th 16 KiB block.
const lieOff = 100<<10 + 7

// newLyingDevice is newDevice on NAND or NOR (storage), bank B holding an older image (what
// a stale read returns) and lying as l says.
func newLyingDevice(t *testing.T, factory []byte, storage board.Storage, l mtdsim.Lie) *device {
	t.Helper()
	d := newBoardDevice(t, board.Options{Storage: storage, Factory: factory})
	if err := d.Load("B/rootfs", payload(3, 1<<20)); err != nil {
		t.Fatal(err)
	}
	if err := d.Flash("B/rootfs").Lie(l); err != nil {
		t.Fatal(err)
	}
	return d
}

// deployFails deploys raw's image as workflow "wf" and checks the outcome: Failed then
// Idle with erc, nothing pending in the bootloader, bank A still holding v1.
func deployFails(t *testing.T, d *device, raw, img, v1 []byte, erc adu.ExtendedResultCode) {
	t.Helper()
	srv := newServer(t)
	h := newHub(t)
	h.full(newUpdate(t, srv, "2.0", raw, img, manifestOpts{}).service("wf", ""))
	if err := runAgent(t, d.agent(nil), h, failedThenIdle(h, "wf")); err != nil {
		t.Fatalf("%v; reports %v", err, h.all())
	}
	lir, _ := lastState(h)["lastInstallResult"].(map[string]any)
	got := adu.ExtendedResultCode(uint32(int32(lir["extendedResultCode"].(float64))))
	if lir["resultCode"] != float64(0) || got != erc {
		t.Errorf("result %v (erc %s), want erc %s", lir, got, erc)
	}
	if st := d.bootState(); st.Pending != "" || st.Primary != "A" {
		t.Errorf("bootloader %+v, want nothing pending, A primary", st)
	}
	if !d.slotHolds("A", v1) {
		t.Error("bank A changed")
	}
	if rec := d.agent(nil).Record(); rec.Deployment != nil || rec.Last == nil || rec.Last.Succeeded {
		t.Errorf("record %+v", rec)
	}
}

// An install into a spare slot whose flash reads back other bytes than were written, after
// the writer's own read-back while programming (so that only the verification of the whole
// slot can see it), ends in Failed then Idle with the read-back verification code, nothing
// pending and the running bank untouched.
func TestInstallOntoLyingSlot(t *testing.T) {
	v1, raw := payload(1, 64<<10), payload(2, 200<<10)
	img := makeImage(t, raw, "2.0", nil)
	for _, flash := range []board.Storage{board.NAND, board.NOR} {
		for _, l := range []mtdsim.Lie{
			{Kind: mtdsim.FlipBit, Off: lieOff, Len: 1},
			{Kind: mtdsim.Stale, Off: lieOff / (16 << 10) * (16 << 10), Len: 16 << 10},
			{Kind: mtdsim.ShortRead, Off: lieOff, Len: 1},
			{Kind: mtdsim.ShortReadErr, Off: lieOff, Len: 1},
		} {
			t.Run(string(flash)+"/"+l.Kind.String(), func(t *testing.T) {
				l.AfterSync = true
				deployFails(t, newLyingDevice(t, v1, flash, l), raw, img, v1, ERCVerify)
			})
		}
	}
}

// A block that does not read back while it is programmed: NOR fails the install with the
// read-back verification code; NAND retires the block and the install goes on in the next
// one, and the slot verifies.
func TestInstallOntoSlotLyingWhileWritten(t *testing.T) {
	v1, raw := payload(1, 64<<10), payload(2, 200<<10)
	img := makeImage(t, raw, "2.0", nil)
	lie := mtdsim.Lie{Kind: mtdsim.FlipBit, Off: lieOff, Len: 1}
	t.Run("nor", func(t *testing.T) {
		deployFails(t, newLyingDevice(t, v1, board.NOR, lie), raw, img, v1, ERCVerify)
	})
	t.Run("nand", func(t *testing.T) {
		d := newLyingDevice(t, v1, board.NAND, lie)
		srv := newServer(t)
		h := newHub(t)
		h.full(newUpdate(t, srv, "2.0", raw, img, manifestOpts{}).service("wf", ""))
		if err := runAgent(t, d.agent(nil), h, nil); !errors.Is(err, ErrRebooting) {
			t.Fatalf("%v; reports %v", err, h.all())
		}
		if st := d.bootState(); st.Pending != "B" {
			t.Errorf("bootloader %+v, want B pending", st)
		}
		if bad := fmt.Sprint(d.Flash("B/rootfs").BadBlocks()); bad != "[6]" {
			t.Errorf("bad blocks of bank B %s, want [6]", bad)
		}
	})
}
