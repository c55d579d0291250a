package bootloader_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"reflect"
	"testing"

	"github.com/aduflash/aduflash/bootloader"
	"github.com/aduflash/aduflash/bootloader/mcuboottrailer"
	"github.com/aduflash/aduflash/bootloader/sim"
	"github.com/aduflash/aduflash/image/mcuboot"
	"github.com/aduflash/aduflash/mtd"
	"github.com/aduflash/aduflash/mtd/mtdsim"
)

const (
	mcuErase    = 4096
	mcuSlotSize = 16 * mcuErase
)

// mcuBoard is an MCU's SPI NOR (strict mode) with MCUboot's primary slot at 0 and the
// secondary slot right after it, as Linux sees it through MTD.
type mcuBoard struct {
	flash    *mtdsim.Flash
	pri, sec mcuboottrailer.Slot
	boot     *sim.MCUboot
}

func newMCUBoard(t *testing.T, writeSize int, seed uint64) *mcuBoard {
	t.Helper()
	f, err := mtdsim.NewNOR(2*mcuSlotSize, mcuErase, mtdsim.WithStrict(), mtdsim.WithSeed(seed))
	if err != nil {
		t.Fatal(err)
	}
	b := &mcuBoard{flash: f}
	b.pri = mcuboottrailer.Slot{Flash: f, Offset: 0, Size: mcuSlotSize, EraseSize: mcuErase, WriteSize: writeSize}
	b.sec = b.pri
	b.sec.Offset = mcuSlotSize
	b.boot = &sim.MCUboot{Primary: b.pri, Secondary: b.sec}
	// The factory image in the primary slot, its trailer erased (flashed by a programmer).
	b.write(t, b.pri, mcuImage(1, 5000))
	return b
}

func (b *mcuBoard) backend(t *testing.T, mode bootloader.UpgradeMode) *bootloader.MCUboot {
	t.Helper()
	bl, err := bootloader.NewMCUboot(bootloader.MCUbootConfig{Primary: b.pri, Secondary: b.sec, Mode: mode})
	if err != nil {
		t.Fatal(err)
	}
	return bl
}

// mcuImage is an MCUboot image (header, body, an unprotected TLV area with a SHA-256 record;
// not signed, the simulator does not validate) whose body is a pattern of its version.
func mcuImage(version byte, body int) []byte {
	h, _ := mcuboot.Header{Magic: mcuboot.Magic, HeaderSize: mcuboot.HeaderSize, ImageSize: uint32(body),
		Version: mcuboot.Version{Major: version}}.MarshalBinary()
	img := append(h, bytes.Repeat([]byte{version, ^version, 0x5a}, body/3+1)[:body]...)
	tlv := make([]byte, 4+4+32)
	binary.LittleEndian.PutUint16(tlv[0:], mcuboot.TLVInfoMagic)
	binary.LittleEndian.PutUint16(tlv[2:], uint16(len(tlv)))
	binary.LittleEndian.PutUint16(tlv[4:], 0x10)
	binary.LittleEndian.PutUint16(tlv[6:], 32)
	return append(img, tlv...)
}

// write erases a slot and writes data at its start, as the slots layer does.
func (b *mcuBoard) write(t *testing.T, s mcuboottrailer.Slot, data []byte) {
	t.Helper()
	must(t, b.flash.Erase(s.Offset, s.Size))
	d := bytes.Clone(data)
	for len(d)%s.WriteSize != 0 {
		d = append(d, 0xff)
	}
	if _, err := b.flash.WriteAt(d, s.Offset); err != nil {
		t.Fatal(err)
	}
}

// holds reports whether slot s starts with img.
func (b *mcuBoard) holds(s mcuboottrailer.Slot, img []byte) bool {
	return bytes.Equal(b.flash.Bytes()[s.Offset:s.Offset+int64(len(img))], img)
}

func (b *mcuBoard) reset(t *testing.T, want mcuboottrailer.SwapType) {
	t.Helper()
	boot, err := b.boot.Reset()
	must(t, err)
	if b.boot.LastSwap != want || boot.Bank != "primary" || boot.Rollback != (want == mcuboottrailer.SwapRevert) {
		t.Fatalf("reset: swap %s, boot %+v; want swap %s", b.boot.LastSwap, boot, want)
	}
}

func wantState(t *testing.T, bl bootloader.Backend, want bootloader.State) {
	t.Helper()
	got, err := bl.State()
	must(t, err)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("state %+v, want %+v", got, want)
	}
}

var (
	mcuIdle     = bootloader.State{Primary: "primary"}
	mcuTest     = bootloader.State{Primary: "secondary", Pending: "secondary", AttemptsLeft: 1, Fallback: "primary"}
	mcuPerm     = bootloader.State{Primary: "secondary", Pending: "secondary", AttemptsLeft: 1}
	mcuTrial    = bootloader.State{Primary: "primary", Pending: "primary", Fallback: "secondary"}
	mcuReverted = bootloader.State{Primary: "primary", Bad: []bootloader.Bank{"secondary"}}
)

func TestMCUbootCycle(t *testing.T) {
	for _, ws := range []int{1, 4, 8} {
		t.Run(fmt.Sprintf("write size %d", ws), func(t *testing.T) {
			b := newMCUBoard(t, ws, 1)
			bl := b.backend(t, "")
			v1, v2, v3 := mcuImage(1, 5000), mcuImage(2, 7001), mcuImage(3, 3003)
			wantState(t, bl, mcuIdle)

			// Update to v2, confirmed.
			b.write(t, b.sec, v2)
			must(t, bl.MarkPending("secondary"))
			wantState(t, bl, mcuTest)
			must(t, bl.MarkPending("secondary")) // repeating writes nothing
			b.reset(t, mcuboottrailer.SwapTest)
			if !b.holds(b.pri, v2) || !b.holds(b.sec, v1) {
				t.Fatal("the test swap did not exchange the images")
			}
			wantState(t, bl, mcuTrial)
			must(t, bl.Confirm("primary"))
			wantState(t, bl, mcuIdle)
			b.reset(t, mcuboottrailer.SwapNone)
			if !b.holds(b.pri, v2) {
				t.Fatal("the confirmed image did not stay")
			}
			b.flash.ResetCounters()
			must(t, bl.Confirm("primary")) // outside a trial: nothing to write
			if c := b.flash.Counters(); c.Ops != 0 {
				t.Fatalf("Confirm outside a trial made %d flash operations", c.Ops)
			}

			// Update to v3, never confirmed: MCUboot reverts to v2.
			b.write(t, b.sec, v3)
			must(t, bl.MarkPending("secondary"))
			b.reset(t, mcuboottrailer.SwapTest)
			if !b.holds(b.pri, v3) {
				t.Fatal("v3 did not boot")
			}
			wantState(t, bl, mcuTrial)
			b.flash.ResetCounters()
			must(t, bl.MarkBad("primary")) // MCUboot reverts by itself at the next reset
			if c := b.flash.Counters(); c.Ops != 0 {
				t.Fatalf("MarkBad during a trial made %d flash operations", c.Ops)
			}
			wantState(t, bl, mcuTrial)
			b.reset(t, mcuboottrailer.SwapRevert)
			if !b.holds(b.pri, v2) || !b.holds(b.sec, v3) {
				t.Fatal("the revert did not bring v2 back")
			}
			wantState(t, bl, mcuReverted)
			b.reset(t, mcuboottrailer.SwapNone)
			if !b.holds(b.pri, v2) {
				t.Fatal("v2 did not stay after the revert")
			}

			// A permanent update to v3 needs no confirmation.
			bp := b.backend(t, bootloader.UpgradePermanent)
			must(t, bp.MarkPending("secondary")) // v3 is still in the secondary slot
			wantState(t, bp, mcuPerm)
			b.reset(t, mcuboottrailer.SwapPerm)
			if !b.holds(b.pri, v3) {
				t.Fatal("v3 did not boot")
			}
			wantState(t, bp, mcuIdle)
			b.reset(t, mcuboottrailer.SwapNone)
			if !b.holds(b.pri, v3) {
				t.Fatal("the permanent image did not stay")
			}
		})
	}
}

func TestMCUbootRefusals(t *testing.T) {
	b := newMCUBoard(t, 8, 1)
	bl := b.backend(t, "")
	noWrite := func(name string, err, want error) {
		t.Helper()
		if !errors.Is(err, want) {
			t.Fatalf("%s: %v, want %v", name, err, want)
		}
		if c := b.flash.Counters(); c.Ops != 0 {
			t.Fatalf("%s: refused but made %d flash operations", name, c.Ops)
		}
	}
	b.write(t, b.sec, mcuImage(2, 4000))
	b.flash.ResetCounters()
	noWrite("MarkPending(primary)", bl.MarkPending("primary"), bootloader.ErrPrimaryBank)
	noWrite("MarkPending(C)", bl.MarkPending("C"), bootloader.ErrUnknownBank)
	noWrite("Confirm(C)", bl.Confirm("C"), bootloader.ErrUnknownBank)
	noWrite("MarkBad(C)", bl.MarkBad("C"), bootloader.ErrUnknownBank)
	noWrite("Confirm(secondary)", bl.Confirm("secondary"), bootloader.ErrNotPrimary)
	noWrite("MarkBad(primary)", bl.MarkBad("primary"), bootloader.ErrPrimaryBank)
	must(t, bl.MarkBad("secondary")) // nothing requested: nothing to record
	wantState(t, bl, mcuIdle)

	// During a trial the secondary slot holds the image MCUboot returns to.
	must(t, bl.MarkPending("secondary"))
	b.reset(t, mcuboottrailer.SwapTest)
	b.flash.ResetCounters()
	noWrite("MarkPending(secondary) on trial", bl.MarkPending("secondary"), bootloader.ErrPrimaryBank)
	noWrite("MarkBad(secondary) on trial", bl.MarkBad("secondary"), bootloader.ErrNoFallback)
	wantState(t, bl, mcuTrial)

	for _, cfg := range []bootloader.MCUbootConfig{
		{Primary: b.pri, Secondary: b.sec, PrimaryName: "x", SecondaryName: "x"},
		{Primary: b.pri, Secondary: b.sec, Mode: "sometimes"},
		{Primary: b.pri},
		{Primary: b.pri, Secondary: mcuboottrailer.Slot{Flash: b.flash, Offset: mcuSlotSize, Size: mcuSlotSize, EraseSize: mcuErase, WriteSize: 8, MaxAlign: 16}},
	} {
		if _, err := bootloader.NewMCUboot(cfg); err == nil {
			t.Errorf("NewMCUboot(%+v) accepted", cfg)
		}
	}
}

func TestMCUbootCancel(t *testing.T) {
	for _, mode := range []bootloader.UpgradeMode{bootloader.UpgradeTest, bootloader.UpgradePermanent} {
		t.Run(string(mode), func(t *testing.T) {
			b := newMCUBoard(t, 4, 1)
			bl := b.backend(t, mode)
			b.write(t, b.sec, mcuImage(2, 4000))
			must(t, bl.MarkPending("secondary"))
			must(t, bl.MarkBad("secondary"))
			wantState(t, bl, mcuIdle)
			b.reset(t, mcuboottrailer.SwapNone)
			if !b.holds(b.sec, mcuImage(2, 4000)) {
				t.Fatal("cancelling erased image data")
			}
			// The request can be made again.
			must(t, bl.MarkPending("secondary"))
			wantState(t, bl, map[bootloader.UpgradeMode]bootloader.State{bootloader.UpgradeTest: mcuTest, bootloader.UpgradePermanent: mcuPerm}[mode])
		})
	}

	// Raw bytes without an MCUboot header: where the image ends is unknown, so the trailer
	// is never erased.
	b := newMCUBoard(t, 1, 1)
	bl := b.backend(t, "")
	b.write(t, b.sec, bytes.Repeat([]byte{0x42}, 1000))
	must(t, bl.MarkPending("secondary"))
	b.flash.ResetCounters()
	if err := bl.MarkBad("secondary"); !errors.Is(err, mcuboottrailer.ErrStale) {
		t.Fatalf("MarkBad of raw bytes: %v, want ErrStale", err)
	}
	if c := b.flash.Counters(); c.Ops != 0 {
		t.Fatalf("refused cancel made %d flash operations", c.Ops)
	}
	wantState(t, bl, mcuTest)

	// With ImageEnd configured it can.
	sec := b.sec
	sec.ImageEnd = 1000
	bl2, err := bootloader.NewMCUboot(bootloader.MCUbootConfig{Primary: b.pri, Secondary: sec})
	must(t, err)
	must(t, bl2.MarkBad("secondary"))
	wantState(t, bl2, mcuIdle)

	// An image that reaches into the trailer's erase block: never erased.
	b = newMCUBoard(t, 1, 1)
	bl = b.backend(t, "")
	b.write(t, b.sec, mcuImage(2, mcuSlotSize-mcuErase))
	must(t, bl.MarkPending("secondary"))
	if err := bl.MarkBad("secondary"); !errors.Is(err, mcuboottrailer.ErrStale) {
		t.Fatalf("MarkBad of a large image: %v, want ErrStale", err)
	}
}

// A swap that MCUboot began but did not finish (primary magic and swap_info written,
// copy_done not yet) is not mistaken for any state.
func TestMCUbootInterruptedSwap(t *testing.T) {
	b := newMCUBoard(t, 8, 1)
	bl := b.backend(t, "")
	l := mcuboot.Layout(8)
	end := b.pri.Offset + b.pri.Size
	if _, err := b.flash.WriteAt(mcuboot.TrailerMagic(8), end-16); err != nil {
		t.Fatal(err)
	}
	if _, err := b.flash.WriteAt([]byte{mcuboot.SwapTypeTest, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, end+int64(l.SwapInfo)); err != nil {
		t.Fatal(err)
	}
	if _, err := bl.State(); !errors.Is(err, bootloader.ErrBadState) {
		t.Fatalf("State: %v, want ErrBadState", err)
	}
	if err := bl.MarkPending("secondary"); !errors.Is(err, bootloader.ErrBadState) {
		t.Fatalf("MarkPending: %v, want ErrBadState", err)
	}
}

// Power is cut at every flash operation of MarkPending, Confirm and MarkBad (cancel), each
// cut tearing the operation at a random point, three rounds. After power returns the state
// is the old or the new one, and repeating the transition completes it.
func TestMCUbootPowerCutAtEveryOperation(t *testing.T) {
	type tr struct {
		name string
		prep func(t *testing.T, b *mcuBoard, bl *bootloader.MCUboot)
		do   func(bl *bootloader.MCUboot) error
	}
	newImage := mcuImage(2, 6000)
	trs := []tr{
		{"MarkPending", func(t *testing.T, b *mcuBoard, bl *bootloader.MCUboot) {
			b.write(t, b.sec, newImage)
		}, func(bl *bootloader.MCUboot) error { return bl.MarkPending("secondary") }},
		{"MarkPending after a cancel", func(t *testing.T, b *mcuBoard, bl *bootloader.MCUboot) {
			b.write(t, b.sec, newImage)
			must(t, bl.MarkPending("secondary"))
			must(t, bl.MarkBad("secondary"))
		}, func(bl *bootloader.MCUboot) error { return bl.MarkPending("secondary") }},
		{"Confirm", func(t *testing.T, b *mcuBoard, bl *bootloader.MCUboot) {
			b.write(t, b.sec, newImage)
			must(t, bl.MarkPending("secondary"))
			_, err := b.boot.Reset()
			must(t, err)
		}, func(bl *bootloader.MCUboot) error { return bl.Confirm("primary") }},
		{"MarkBad", func(t *testing.T, b *mcuBoard, bl *bootloader.MCUboot) {
			b.write(t, b.sec, newImage)
			must(t, bl.MarkPending("secondary"))
		}, func(bl *bootloader.MCUboot) error { return bl.MarkBad("secondary") }},
	}
	for _, ws := range []int{1, 8} {
		for _, mode := range []bootloader.UpgradeMode{bootloader.UpgradeTest, bootloader.UpgradePermanent} {
			for _, x := range trs {
				if x.name == "Confirm" && mode == bootloader.UpgradePermanent {
					continue // a permanent swap leaves nothing to confirm
				}
				t.Run(fmt.Sprintf("ws%d/%s/%s", ws, mode, x.name), func(t *testing.T) {
					b := newMCUBoard(t, ws, 7)
					bl := b.backend(t, mode)
					x.prep(t, b, bl)
					before := b.flash.Snapshot()
					old, err := bl.State()
					must(t, err)

					b.flash.ResetCounters()
					must(t, x.do(bl))
					ops := int(b.flash.Counters().Ops)
					newer, err := bl.State()
					must(t, err)
					if reflect.DeepEqual(old, newer) || ops == 0 {
						t.Fatalf("the transition changed nothing (%d operations): %+v", ops, old)
					}
					t.Logf("%d operations; %+v -> %+v", ops, old, newer)
					retryErases := 0
					for round := 1; round <= 3; round++ {
						for n := 0; n < ops; n++ {
							must(t, b.flash.Restore(before))
							b.flash.PowerCutAfter(n)
							if err := x.do(bl); !errors.Is(err, mtd.ErrPowerCut) {
								t.Fatalf("cut after %d of %d operations: %v, want a power-cut error", n, ops, err)
							}
							b.flash.PowerOn()
							got, err := bl.State()
							if err != nil {
								t.Fatalf("cut after %d of %d operations (round %d): %v", n, ops, round, err)
							}
							if !reflect.DeepEqual(got, old) && !reflect.DeepEqual(got, newer) {
								t.Fatalf("cut after %d of %d operations (round %d): state %+v is neither the old %+v nor the new %+v", n, ops, round, got, old, newer)
							}
							b.flash.ResetCounters()
							if err := x.do(bl); err != nil {
								t.Fatalf("cut after %d of %d operations (round %d): retry: %v", n, ops, round, err)
							}
							if b.flash.Counters().Erases > 0 {
								retryErases++
							}
							if got, err := bl.State(); err != nil || !reflect.DeepEqual(got, newer) {
								t.Fatalf("cut after %d of %d operations (round %d): after the retry state %+v (%v), want %+v", n, ops, round, got, err, newer)
							}
							if x.name != "MarkBad" {
								b.reset(t, map[bool]mcuboottrailer.SwapType{true: mcuboottrailer.SwapNone,
									false: map[bootloader.UpgradeMode]mcuboottrailer.SwapType{bootloader.UpgradeTest: mcuboottrailer.SwapTest, bootloader.UpgradePermanent: mcuboottrailer.SwapPerm}[mode]}[x.name == "Confirm"])
								if !b.holds(b.pri, newImage) {
									t.Fatalf("cut after %d of %d operations (round %d): the new image does not run after the retry", n, ops, round)
								}
							}
						}
					}
					t.Logf("%d retries had to erase a torn trailer", retryErases)
				})
			}
		}
	}
}
