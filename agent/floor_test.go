package agent

import (
	"context"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/aduflash/aduflash/bootloader"
	"github.com/aduflash/aduflash/image"
	"github.com/aduflash/aduflash/image/mcuboot"
)

// bootFacts reads the bootloader's state and floors straight from the environment (also
// while the board's power is off).
func (d *device) bootFacts() (bootloader.State, bootloader.Floors) {
	d.t.Helper()
	f, err := d.Floors()
	if err != nil {
		d.t.Fatal(err)
	}
	return d.bootState(), f
}

// installLocal runs aduagent install of file (served by srv) into the spare bank and leaves
// it pending.
func installLocal(t *testing.T, d *device, srv *server, name string, file []byte) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	url := srv.put(name, file)
	_, err := d.agent(nil).InstallLocal(ctx, LocalInstall{Source: Source{URL: url, Size: int64(len(file))}, NoReboot: true})
	return err
}

// installAndConfirm installs file, reboots into it and lets the agent confirm it.
func installAndConfirm(t *testing.T, d *device, srv *server, name string, file []byte) {
	t.Helper()
	if err := installLocal(t, d, srv, name, file); err != nil {
		t.Fatalf("install %s: %v", name, err)
	}
	want := d.bootState().Pending
	if b := d.reset(); b.Bank != want {
		t.Fatalf("booted %s, want the pending %s", b.Bank, want)
	}
	if err := d.agent(nil).Boot(context.Background()); err != nil {
		t.Fatalf("confirming %s: %v", name, err)
	}
	if st := d.bootState(); st.Pending != "" || st.Primary != want {
		t.Fatalf("after confirming %s: %+v", name, st)
	}
}

// refused checks that an install failed as a downgrade, with nothing left pending.
func refused(t *testing.T, d *device, what string, err error) {
	t.Helper()
	if !errors.Is(err, ErrDowngrade) {
		t.Fatalf("%s: %v, want ErrDowngrade", what, err)
	}
	if _, erc := ResultFor(err); erc != ERCDowngrade {
		t.Errorf("%s: extended result code %v, want ERCDowngrade", what, erc)
	}
	if st := d.bootState(); st.Pending != "" {
		t.Fatalf("%s: a bank is pending after the refusal: %+v", what, st)
	}
}

func withCounter(n uint64) func(*image.SignOptions) {
	return func(o *image.SignOptions) { o.SecurityCounter = n }
}

// The floor rises with the confirmation (not at install), lives in the bootloader too, and a
// wipe of the state folder does not lower it: an image with a lower counter is still refused.
func TestFloorSurvivesStateWipe(t *testing.T) {
	d := newDevice(t, payload(1, 64<<10))
	srv := newServer(t)
	installAndConfirm(t, d, srv, "v2.aduimg", makeImage(t, payload(2, 64<<10), "2.0", withCounter(5)))
	if _, f := d.bootFacts(); !reflect.DeepEqual(f, bootloader.Floors{"rootfs": 5}) {
		t.Fatalf("bootloader floors after the confirm: %v", f)
	}
	if rec := d.agent(nil).Record(); rec.SecurityFloors["rootfs"] != 5 {
		t.Fatalf("journal floors after the confirm: %v", rec.SecurityFloors)
	}

	// Installed but not yet confirmed: the floor stays where it was.
	if err := installLocal(t, d, srv, "v3.aduimg", makeImage(t, payload(3, 64<<10), "3.0", withCounter(9))); err != nil {
		t.Fatal(err)
	}
	if _, f := d.bootFacts(); f["rootfs"] != 5 {
		t.Fatalf("floor after an install without confirm: %v", f)
	}
	if err := d.backend().MarkBad("A"); err != nil { // give the pending trial up
		t.Fatal(err)
	}

	d.wipeState()
	old := makeImage(t, payload(4, 64<<10), "2.1", withCounter(4))
	refused(t, d, "counter 4 after the wipe", installLocal(t, d, srv, "old.aduimg", old))
	if err := installLocal(t, d, srv, "same.aduimg", makeImage(t, payload(5, 64<<10), "2.2", withCounter(5))); err != nil {
		t.Fatalf("counter 5 (the floor) after the wipe: %v", err)
	}
}

// An agent whose journal kept the only floor (an earlier layout, or a bank confirmed with
// aduagent mark-good) copies it into the bootloader at its next start.
func TestFloorMovesIntoBootloader(t *testing.T) {
	d := newDevice(t, payload(1, 64<<10))
	a := d.agent(nil)
	if err := a.save(func(r *Record) { r.Version, r.MinSecurityCounter = 2, 7 }); err != nil {
		t.Fatal(err)
	}
	a = d.agent(nil)
	if rec := a.Record(); rec.SecurityFloors["rootfs"] != 7 {
		t.Fatalf("a version-2 record's floor was not carried over: %+v", rec)
	}
	if _, f := d.bootFacts(); len(f) != 0 {
		t.Fatalf("New wrote floors %v", f)
	}
	if err := a.Boot(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, f := d.bootFacts(); !reflect.DeepEqual(f, bootloader.Floors{"rootfs": 7}) {
		t.Fatalf("bootloader floors after Boot: %v", f)
	}
	env := d.Flash("env").Counters().Ops
	if err := d.agent(nil).Boot(context.Background()); err != nil || d.Flash("env").Counters().Ops != env {
		t.Fatalf("a second Boot: %v, %d flash operations on the environment (want none)", err, d.Flash("env").Counters().Ops-env)
	}
}

// signMCUboot signs payload as an MCUboot image with the test image key; counter nil: no
// SEC_CNT TLV.
func signMCUboot(t *testing.T, payload []byte, v mcuboot.Version, counter *uint32) []byte {
	t.Helper()
	img, err := mcuboot.Sign(payload, getKeys(t).img, mcuboot.SignOptions{Version: v, HeaderSize: 0x200, PadHeader: true, SecurityCounter: counter})
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// MCUboot images meet the same floor through their signed SEC_CNT TLV, with the same result
// code; one without the TLV counts as 0. Their floor is their slot class's own.
func TestMCUbootSecurityCounterFloor(t *testing.T) {
	d := newDevice(t, payload(1, 64<<10))
	srv := newServer(t)
	five, four := uint32(5), uint32(4)
	installAndConfirm(t, d, srv, "v2.bin", signMCUboot(t, payload(2, 64<<10), mcuboot.Version{Major: 2}, &five))
	if _, f := d.bootFacts(); !reflect.DeepEqual(f, bootloader.Floors{"rootfs": 5}) {
		t.Fatalf("bootloader floors after the confirm: %v", f)
	}
	refused(t, d, "SEC_CNT 4", installLocal(t, d, srv, "low.bin", signMCUboot(t, payload(3, 64<<10), mcuboot.Version{Major: 3}, &four)))
	refused(t, d, "no SEC_CNT", installLocal(t, d, srv, "none.bin", signMCUboot(t, payload(4, 64<<10), mcuboot.Version{Major: 3}, nil)))
	if err := installLocal(t, d, srv, "ok.bin", signMCUboot(t, payload(5, 64<<10), mcuboot.Version{Major: 3}, &five)); err != nil {
		t.Fatalf("SEC_CNT 5 (the floor): %v", err)
	}
}

// A bank confirmed by hand (aduagent mark-good, which knows no counters) gets its floor into
// the bootloader when the agent next finishes the deployment.
func TestFloorAfterMarkGood(t *testing.T) {
	d := newDevice(t, payload(1, 64<<10))
	srv := newServer(t)
	if err := installLocal(t, d, srv, "v2.aduimg", makeImage(t, payload(2, 64<<10), "2.0", withCounter(5))); err != nil {
		t.Fatal(err)
	}
	if b := d.reset(); b.Bank != "B" {
		t.Fatalf("booted %s", b.Bank)
	}
	if err := d.backend().Confirm("B"); err != nil {
		t.Fatal(err)
	}
	if _, f := d.bootFacts(); len(f) != 0 {
		t.Fatalf("Confirm wrote floors %v", f)
	}
	if err := d.agent(nil).Boot(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, f := d.bootFacts(); !reflect.DeepEqual(f, bootloader.Floors{"rootfs": 5}) {
		t.Fatalf("bootloader floors after Boot: %v", f)
	}
}
