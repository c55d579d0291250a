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

// The boot scripts of examples/u-boot, one per variable preset.
var bootScripts = []struct {
	preset     bootloader.Preset
	name, base string
}{
	{bootloader.PresetAduflash, "aduflash", "boot"},
	{bootloader.PresetMender, "aduflash-mender", "boot-mender"},
	{bootloader.PresetRAUC, "aduflash-rauc", "boot-rauc"},
}

// The committed .scr files are what mkimage makes of the .cmd sources.
func TestBootScriptsCompiled(t *testing.T) {
	mkimage, err := exec.LookPath("mkimage")
	if err != nil {
		peers.Missing(t, "mkimage (apt-get install u-boot-tools): %v", err)
	}
	for _, bs := range bootScripts {
		out := filepath.Join(t.TempDir(), "boot.scr")
		cmd := exec.Command(mkimage, "-A", "arm64", "-O", "linux", "-T", "script", "-C", "none", "-n", bs.name,
			"-d", filepath.Join("..", "examples", "u-boot", bs.base+".cmd"), out)
		cmd.Env = append(os.Environ(), "SOURCE_DATE_EPOCH=0")
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("mkimage: %v\n%s", err, b)
		}
		got, _ := os.ReadFile(out)
		want, err := os.ReadFile(filepath.Join("..", "examples", "u-boot", bs.base+".scr"))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("examples/u-boot/%s.scr is stale: recompile it from %s.cmd (see its header)", bs.base, bs.base)
		}
	}
}

// realBoard is the peer U-Boot under QEMU with an SD card whose redundant environment we
// write with package ubootenv, and the aduflash boot script at scriptOffset.
type realBoard struct {
	uboot, disk string
	bl          *bootloader.UBoot
	env         *ubootenv.Env
}

// presetEnv is what each preset's default environment holds besides bootcmd and adu_load.
func presetEnv(p bootloader.Preset) map[string]string {
	switch p {
	case bootloader.PresetMender:
		return map[string]string{
			"mender_boot_part": "2", "mender_boot_part_hex": "2", "mender_kernel_root_base": "/dev/mmcblk0p",
			"bootlimit": "1", "upgrade_available": "0", "bootcount": "0",
			"altbootcmd": "run mender_altbootcmd; run bootcmd",
			"mender_altbootcmd": "if test ${mender_boot_part} = 2; then setenv mender_boot_part 3; setenv mender_boot_part_hex 3; " +
				"else setenv mender_boot_part 2; setenv mender_boot_part_hex 2; fi; setenv upgrade_available 0; saveenv",
		}
	case bootloader.PresetRAUC:
		return map[string]string{"BOOT_ORDER": "A B", "BOOT_A_LEFT": "3", "BOOT_B_LEFT": "3",
			"adu_root_A": "/dev/mmcblk0p2", "adu_root_B": "/dev/mmcblk0p3"}
	}
	return map[string]string{"adu_slot": "A", "adu_root_A": "/dev/mmcblk0p2", "adu_root_B": "/dev/mmcblk0p3"}
}

func newRealBoard(t *testing.T, p bootloader.Preset, script string, attempts int) *realBoard {
	t.Helper()
	uboot := ubootqemu.Require(t)
	disk := filepath.Join(t.TempDir(), "sd.img")
	if err := ubootqemu.CreateDisk(disk, ubootqemu.DefaultDiskSize); err != nil {
		t.Fatal(err)
	}
	scr, err := os.ReadFile(filepath.Join("..", "examples", "u-boot", script+".scr"))
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
	vars := presetEnv(p)
	vars["bootcmd"] = "mmc dev 0; mmc read 0x40200000 " + fmt.Sprintf("%#x %#x", scriptOffset/512, sectors) + "; source 0x40200000"
	vars["adu_load"] = "echo ADU-LINUX bootargs=${bootargs}; poweroff"
	if err := env.Update(vars, nil); err != nil {
		t.Fatal(err)
	}
	bl, err := bootloader.NewUBoot(env, bootloader.UBootConfig{Preset: p, Attempts: attempts})
	if err != nil {
		t.Fatal(err)
	}
	return &realBoard{uboot: uboot, disk: disk, bl: bl, env: env}
}

// boot resets the board and returns the bank Linux was started with and the console.
func (b *realBoard) boot(t *testing.T) (bootloader.Bank, string) {
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
			return bootloader.Bank(s), out
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

// The whole cycle against real U-Boot, for each variable preset and its boot script: we mark
// bank B pending, U-Boot boots it and counts (bootcount, or RAUC's BOOT_B_LEFT), and falls
// back to A once the attempts are spent (through altbootcmd at bootlimit+1 for the bootcount
// presets); after our Confirm it keeps booting B. After each boot we read back what U-Boot saved.
func TestRealUBootTrialRollbackConfirm(t *testing.T) {
	if testing.Short() {
		t.Skip("boots real U-Boot under QEMU several times; -short")
	}
	for _, bs := range bootScripts {
		t.Run(string(bs.preset), func(t *testing.T) {
			attempts := 2
			if bs.preset == bootloader.PresetMender {
				attempts = 1 // Mender's bootlimit=1, which the preset keeps
			}
			b := newRealBoard(t, bs.preset, bs.base, attempts)
			if s, _ := b.boot(t); s != "A" {
				t.Fatalf("fresh board booted %s", s)
			}
			// The anti-rollback floor rides along; U-Boot's own saves must keep it.
			if err := b.bl.ConfirmRaising("A", bootloader.Floors{"rootfs": 3}); err != nil {
				t.Fatal(err)
			}

			// A trial of B: it boots attempts times, U-Boot saving the count each time.
			if err := b.bl.MarkPending("B"); err != nil {
				t.Fatal(err)
			}
			for i := 1; i <= attempts; i++ {
				if s, _ := b.boot(t); s != "B" {
					t.Fatalf("trial boot %d started %s", i, s)
				}
				st := b.state(t)
				if st.Pending != "B" || st.AttemptsLeft != attempts-i {
					t.Fatalf("after trial boot %d U-Boot saved %+v", i, st)
				}
			}
			// The next boot falls back to A.
			s, out := b.boot(t)
			if s != "A" {
				t.Fatalf("boot %d should fall back to A, started %s:\n%s", attempts+1, s, out)
			}
			if bs.preset != bootloader.PresetRAUC && !strings.Contains(out, "Using altbootcmd") {
				t.Errorf("the fallback did not go through altbootcmd:\n%s", out)
			}
			st := b.state(t)
			switch bs.preset {
			case bootloader.PresetAduflash:
				if want := (bootloader.State{Primary: "A", Bad: []bootloader.Bank{"B"}}); !reflect.DeepEqual(st, want) {
					t.Fatalf("after the rollback U-Boot saved %+v, want %+v", st, want)
				}
			case bootloader.PresetMender:
				if want := (bootloader.State{Primary: "A"}); !reflect.DeepEqual(st, want) {
					t.Fatalf("after the rollback U-Boot saved %+v, want %+v", st, want)
				}
			case bootloader.PresetRAUC:
				// RAUC's variables still name B as the trial, with no attempts left; the
				// agent, running A, marks it bad.
				if st.Pending != "B" || st.AttemptsLeft != 0 || st.Fallback != "A" {
					t.Fatalf("after the fallback U-Boot saved %+v", st)
				}
			}
			if f, err := b.bl.Floors(); err != nil || f["rootfs"] != 3 {
				t.Fatalf("after the rollback the floors are %v, %v; want rootfs 3", f, err)
			}
			// The agent on A records B as bad.
			if err := b.bl.MarkBad("B"); err != nil {
				t.Fatal(err)
			}
			if st := b.state(t); st.Primary != "A" || st.Pending != "" || !st.IsBad("B") {
				t.Fatalf("after MarkBad(B): %+v", st)
			}
			if s, _ := b.boot(t); s != "A" {
				t.Fatalf("after MarkBad(B) booted %s", s)
			}
			if err := b.bl.Confirm("A"); err != nil {
				t.Fatal(err)
			}

			// A new trial of B, confirmed after its first boot: B stays.
			if err := b.bl.MarkPending("B"); err != nil {
				t.Fatal(err)
			}
			if s, _ := b.boot(t); s != "B" {
				t.Fatalf("second trial booted %s", s)
			}
			if err := b.bl.ConfirmRaising("B", bootloader.Floors{"rootfs": 5}); err != nil {
				t.Fatal(err)
			}
			before, _ := os.ReadFile(b.disk)
			for i := 0; i < 3; i++ {
				if s, _ := b.boot(t); s != "B" {
					t.Fatalf("boot %d after Confirm started %s", i+1, s)
				}
				// The agent, at every healthy boot; the floor is already there.
				if err := b.bl.ConfirmRaising("B", bootloader.Floors{"rootfs": 5}); err != nil {
					t.Fatal(err)
				}
			}
			after, _ := os.ReadFile(b.disk)
			if bs.preset != bootloader.PresetRAUC && !bytes.Equal(before, after) {
				t.Error("the environment was written after Confirm (U-Boot should stop counting, the agent has nothing to do)")
			}
			if st := b.state(t); st.Primary != "B" || st.Pending != "" || len(st.Bad) != 0 {
				t.Fatalf("after Confirm and three boots: %+v", st)
			}
			if f, err := b.bl.Floors(); err != nil || f["rootfs"] != 5 {
				t.Fatalf("after Confirm and three boots the floors are %v, %v; want rootfs 5", f, err)
			}
		})
	}
}
