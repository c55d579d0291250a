//go:build linux

package ubootenv

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aduflash/aduflash/internal/vmtest"
	"github.com/aduflash/aduflash/mtd"
)

// A redundant environment on real kernel NAND (nandsim with bad blocks 3 and 7, 128 KiB
// erase blocks), laid out as fw_env.config says: copy 1 searched from block 3 (bad, so it
// lands in block 4), copy 2 from block 6 (good; block 7 is bad). We write it, libubootenv's
// fw_printenv reads it, its fw_setenv writes, we read. Runs in the VM (TestInVM).
func TestKernelNANDEnvWithBadBlock(t *testing.T) {
	path := vmtest.Need(t, "ADUFLASH_MTD_DEV", "runs inside the VM (TestInVM)")
	for _, tool := range []string{"fw_printenv", "fw_setenv"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not on PATH: %v", tool, err)
		}
	}
	dev, err := mtd.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	info := dev.Info()
	if bad, _ := dev.IsBad(3 * int64(info.EraseSize)); !bad {
		t.Fatalf("block 3 of %s is not bad: load nandsim with badblocks=3,7", path)
	}
	geo := MTDGeometry{NAND: info.Type.IsNAND(), Size: info.Size, EraseSize: info.EraseSize, WriteSize: info.WriteSize}
	bs := int64(info.EraseSize)
	for b := int64(3); b < 9; b++ {
		if bad, _ := dev.IsBad(b * bs); !bad {
			if err := dev.Erase(b*bs, bs); err != nil {
				t.Fatal(err)
			}
		}
	}
	const size = 0x4000
	open := func() *Env {
		var st []Storage
		for i, off := range []int64{3 * bs, 6 * bs} {
			s, err := NewMTDStorage("env"+string(rune('1'+i)), dev, geo, off, bs, 2, true)
			if err != nil {
				t.Fatal(err)
			}
			st = append(st, s)
		}
		env, err := New(Options{Format: Format{Size: size}, HasDefaults: true}, st...)
		if err != nil {
			t.Fatal(err)
		}
		return env
	}
	env := open()
	if err := env.Set(Change{Name: "bootcmd", Value: "run adu_boot"}, Change{Name: "adu_slot", Value: "A"}); err != nil {
		t.Fatal(err)
	}
	if err := env.Set(Change{Name: "adu_slot", Value: "B"}, Change{Name: "upgrade_available", Value: "1"}); err != nil {
		t.Fatal(err)
	}
	// Block 3 stayed bad and untouched by us; the copy went to block 4.
	if bad, _ := dev.IsBad(3 * bs); !bad {
		t.Fatal("block 3 is no longer bad")
	}
	page := make([]byte, 8)
	if _, err := dev.ReadAt(page, 4*bs); err != nil {
		t.Fatal(err)
	}
	if mtd.IsErased(page) {
		t.Fatal("block 4 holds no env copy: the bad block was not skipped")
	}

	dir := t.TempDir()
	cfg := filepath.Join(dir, "fw_env.config")
	conf := path + " 0x60000 0x4000 0x20000 2\n" + path + " 0xc0000 0x4000 0x20000 2\n"
	if err := os.WriteFile(cfg, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("fw_printenv", "-c", cfg).CombinedOutput()
	if err != nil {
		t.Fatalf("fw_printenv: %v\n%s", err, out)
	}
	for _, want := range []string{"adu_slot=B", "upgrade_available=1", "bootcmd=run adu_boot"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("fw_printenv lacks %q:\n%s", want, out)
		}
	}
	if out, err := exec.Command("fw_setenv", "-c", cfg, "bootcount", "3").CombinedOutput(); err != nil {
		t.Fatalf("fw_setenv: %v\n%s", err, out)
	}
	env = open()
	if v, _ := env.Get("bootcount"); v != "3" {
		t.Fatalf("after fw_setenv we read bootcount=%q", v)
	}
	if v, _ := env.Get("adu_slot"); v != "B" {
		t.Fatalf("after fw_setenv we read adu_slot=%q", v)
	}
}
