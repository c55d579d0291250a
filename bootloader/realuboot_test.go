package bootloader_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/aduflash/aduflash/bootloader"
	"github.com/aduflash/aduflash/bootloader/ubootenv"
	"github.com/aduflash/aduflash/internal/peers"
	"github.com/aduflash/aduflash/internal/ubootqemu"
)

// scriptOffset is where the test puts boot.scr on the SD card image, raw, after the env copies.
const scriptOffset = 0x300000

// The committed examples/u-boot/boot.scr is what mkimage makes of boot.cmd.
func TestBootScriptCompiled(t *testing.T) {
	mkimage, err := exec.LookPath("mkimage")
	if err != nil {
		peers.Missing(t, "mkimage (apt-get install u-boot-tools): %v", err)
	}
	out := filepath.Join(t.TempDir(), "boot.scr")
	cmd := exec.Command(mkimage, "-A", "arm64", "-O", "linux", "-T", "script", "-C", "none", "-n", "aduflash",
		"-d", filepath.Join("..", "examples", "u-boot", "boot.cmd"), out)
	cmd.Env = append(os.Environ(), "SOURCE_DATE_EPOCH=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("mkimage: %v\n%s", err, b)
	}
	got, _ := os.ReadFile(out)
	want, err := os.ReadFile(filepath.Join("..", "examples", "u-boot", "boot.scr"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("examples/u-boot/boot.scr is stale: recompile it from boot.cmd (see its header)")
	}
}

// realBoard is the peer U-Boot under QEMU with an SD card whose redundant environment we
// write with package ubootenv, and the aduflash boot script at scriptOffset.
type realBoard struct {
	uboot, disk string
	bl          *bootloader.UBoot
	env         *ubootenv.Env
}

func newRealBoard(t *testing.T) *realBoard {
	t.Helper()
	uboot := ubootqemu.Require(t)
	disk := filepath.Join(t.TempDir(), "sd.img")
	if err := ubootqemu.CreateDisk(disk, ubootqemu.DefaultDiskSize); err != nil {
		t.Fatal(err)
	}
	scr, err := os.ReadFile(filepath.Join("..", "examples", "u-boot", "boot.scr"))
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(disk, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(scr, scriptOffset); err != nil {
		t.Fatal(err)
	}
	f.Close()
	l := ubootqemu.Layout()
	env, err := ubootenv.New(ubootenv.Options{Format: ubootenv.Format{Size: int(l.Size)}, HasDefaults: true},
		&ubootenv.FileStorage{Path: disk, Offset: l.Offset}, &ubootenv.FileStorage{Path: disk, Offset: l.OffsetRedund})
	if err != nil {
		t.Fatal(err)
	}
	// U-Boot takes our environment instead of its built-in one, so it carries what the board
	// needs: bootcmd loads the boot script from the card and sources it; adu_load stands in
	// for loading the kernel (it prints what Linux would get, and powers off).
	sectors := len(scr)/512 + 1
	err = env.Update(map[string]string{
		"bootcmd":    "mmc dev 0; mmc read 0x40200000 " + fmt.Sprintf("%#x %#x", scriptOffset/512, sectors) + "; source 0x40200000",
		"adu_root_A": "/dev/mmcblk0p2",
		"adu_root_B": "/dev/mmcblk0p3",
		"adu_load":   "echo ADU-LINUX bootargs=${bootargs}; poweroff",
		"adu_slot":   "A",
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	bl, err := bootloader.NewUBoot(env, bootloader.UBootConfig{Preset: bootloader.PresetAduflash, Attempts: 2})
	if err != nil {
		t.Fatal(err)
	}
	return &realBoard{uboot: uboot, disk: disk, bl: bl, env: env}
}

// boot resets the board and returns the bank Linux was started with and the console.
func (b *realBoard) boot(t *testing.T) (bootloader.Slot, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	log, done := ubootqemu.LogWriter(t, "u-boot| ")
	defer done()
	out, err := ubootqemu.Boot(ctx, ubootqemu.Config{UBoot: b.uboot, Disk: b.disk, Log: log})
	if err != nil {
		t.Fatalf("boot: %v\n%s", err, out)
	}
	i := strings.Index(out, "ADU-LINUX bootargs=")
	if i < 0 {
		t.Fatalf("Linux was not started:\n%s", out)
	}
	line := out[i:]
	if j := strings.IndexByte(line, '\n'); j >= 0 {
		line = line[:j]
	}
	for _, f := range strings.Fields(line) {
		if s, ok := strings.CutPrefix(f, "adu.slot="); ok {
			return bootloader.Slot(s), out
		}
	}
	t.Fatalf("no adu.slot= in %q", line)
	return "", out
}

func (b *realBoard) state(t *testing.T) bootloader.State {
	t.Helper()
	st, err := b.bl.State()
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// The whole cycle against real U-Boot: we mark bank B pending, U-Boot boots it and counts,
// and falls back to A through altbootcmd at bootlimit+1; after our Confirm it stops counting.
// After each boot we read back what U-Boot saved.
func TestRealUBootTrialRollbackConfirm(t *testing.T) {
	if testing.Short() {
		t.Skip("boots real U-Boot under QEMU several times; -short")
	}
	b := newRealBoard(t)
	if s, _ := b.boot(t); s != "A" {
		t.Fatalf("fresh board booted %s", s)
	}

	// Trial of B with two attempts: boots 1 and 2 run B, U-Boot saving bootcount 1, 2.
	if err := b.bl.MarkPending("B"); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 2; i++ {
		s, out := b.boot(t)
		if s != "B" {
			t.Fatalf("trial boot %d started %s", i, s)
		}
		if !strings.Contains(out, fmt.Sprintf("bootcount=%d", i)) {
			t.Errorf("trial boot %d: the script did not see bootcount=%d", i, i)
		}
		st := b.state(t)
		if st.Pending != "B" || st.AttemptsLeft != 2-i {
			t.Fatalf("after trial boot %d U-Boot saved %+v", i, st)
		}
	}
	// Boot 3: bootcount 3 > bootlimit 2: altbootcmd, back to A, B recorded bad.
	s, out := b.boot(t)
	if s != "A" || !strings.Contains(out, "Using altbootcmd") {
		t.Fatalf("boot 3 should roll back to A through altbootcmd, started %s:\n%s", s, out)
	}
	st := b.state(t)
	if want := (bootloader.State{Primary: "A", Bad: []bootloader.Slot{"B"}}); !reflect.DeepEqual(st, want) {
		t.Fatalf("after the rollback U-Boot saved %+v, want %+v", st, want)
	}

	// A new trial of B, confirmed after its first boot: U-Boot stops counting and writes
	// the environment no more.
	if err := b.bl.MarkPending("B"); err != nil {
		t.Fatal(err)
	}
	if s, _ := b.boot(t); s != "B" {
		t.Fatalf("second trial booted %s", s)
	}
	if err := b.bl.Confirm("B"); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(b.disk)
	for i := 0; i < 3; i++ {
		if s, _ := b.boot(t); s != "B" {
			t.Fatalf("boot %d after Confirm started %s", i+1, s)
		}
	}
	after, _ := os.ReadFile(b.disk)
	if !bytes.Equal(before, after) {
		t.Error("U-Boot wrote the environment after Confirm (it should stop counting)")
	}
	if st := b.state(t); st.Primary != "B" || st.Pending != "" || len(st.Bad) != 0 {
		t.Fatalf("after Confirm and three boots: %+v", st)
	}
}
