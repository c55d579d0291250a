//go:build linux

package app

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aduflash/aduflash/internal/vmtest"
)

// aduflash env on kernel NAND: a redundant env whose first copy's block is bad (nandsim bad
// blocks 3 and 7), set and printed by aduflash, read by fw_printenv, written by fw_setenv,
// and reported healthy by doctor. Runs in the VM (TestEnvInVM).
func TestKernelEnvOnNAND(t *testing.T) {
	dev := vmtest.Need(t, "ADUFLASH_MTD_DEV", "runs inside the VM (TestEnvInVM)")
	cfg := filepath.Join(t.TempDir(), "fw_env.config")
	conf := dev + " 0x60000 0x4000 0x20000 2\n" + dev + " 0xc0000 0x4000 0x20000 2\n"
	if err := os.WriteFile(cfg, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"env", "set", "-c", cfg, "adu_slot=A", "bootcmd=run adu_boot"},
		{"env", "set", "-c", cfg, "adu_slot=B", "upgrade_available=1"},
	} {
		if code, _, stderr := run(t, args...); code != 0 {
			t.Fatalf("%v: exit %d: %s", args, code, stderr)
		}
	}
	code, out, stderr := run(t, "env", "print", "-c", cfg)
	if code != 0 || !strings.Contains(out, "adu_slot=B\n") || !strings.Contains(out, "upgrade_available=1\n") {
		t.Fatalf("env print: exit %d %q %s", code, out, stderr)
	}
	theirs, err := exec.Command("fw_printenv", "-c", cfg).CombinedOutput()
	if err != nil {
		t.Fatalf("fw_printenv: %v\n%s", err, theirs)
	}
	if string(theirs) != out {
		t.Fatalf("fw_printenv prints\n%s\naduflash env print prints\n%s", theirs, out)
	}
	if o, err := exec.Command("fw_setenv", "-c", cfg, "bootcount", "2").CombinedOutput(); err != nil {
		t.Fatalf("fw_setenv: %v\n%s", err, o)
	}
	if code, out, _ := run(t, "env", "print", "-c", cfg, "-n", "bootcount"); code != 0 || out != "2\n" {
		t.Fatalf("after fw_setenv: exit %d %q", code, out)
	}
	code, out, stderr = run(t, "env", "doctor", "-c", cfg)
	if code != 0 {
		t.Fatalf("doctor on a healthy NAND env: exit %d\n%s%s", code, out, stderr)
	}
	if !strings.Contains(out, "found at 0x80000 after skipping bad block(s)") {
		t.Errorf("doctor does not say that copy 1 lies in block 4 (block 3 is bad):\n%s", out)
	}
	t.Logf("doctor:\n%s", out)
}

// aduflash env on UBI: a redundant env in two UBI volumes (on mtdram), set by aduflash, read
// by fw_printenv, written by fw_setenv, read by aduflash.
func TestKernelEnvOnUBI(t *testing.T) {
	vmtest.Need(t, "ADUFLASH_UBI_ENV", "runs inside the VM (TestEnvInVM)")
	cfg := filepath.Join(t.TempDir(), "fw_env.config")
	if err := os.WriteFile(cfg, []byte("/dev/ubi0:env1 0x0 0x4000\n/dev/ubi0:env2 0x0 0x4000\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"env", "set", "-c", cfg, "adu_slot=A"},
		{"env", "set", "-c", cfg, "adu_slot=B", "upgrade_available=1"},
	} {
		if code, _, stderr := run(t, args...); code != 0 {
			t.Fatalf("%v: exit %d: %s", args, code, stderr)
		}
	}
	theirs, err := exec.Command("fw_printenv", "-c", cfg).CombinedOutput()
	if err != nil {
		t.Fatalf("fw_printenv: %v\n%s", err, theirs)
	}
	if !strings.Contains(string(theirs), "adu_slot=B") || !strings.Contains(string(theirs), "upgrade_available=1") {
		t.Fatalf("fw_printenv reads:\n%s", theirs)
	}
	if o, err := exec.Command("fw_setenv", "-c", cfg, "bootcount", "1").CombinedOutput(); err != nil {
		t.Fatalf("fw_setenv: %v\n%s", err, o)
	}
	if code, out, stderr := run(t, "env", "print", "-c", cfg, "-n", "bootcount"); code != 0 || out != "1\n" {
		t.Fatalf("after fw_setenv: exit %d %q %s", code, out, stderr)
	}
}

func TestEnvInVM(t *testing.T) {
	modules, setup := vmtest.NANDAndUBI(8192, "-N env1 -s 256KiB", "-N env2 -s 256KiB")
	vm := vmtest.Run(t, vmtest.Config{
		Modules:     modules,
		Setup:       setup,
		TestPackage: ".",
		TestRun:     "^TestKernel",
		Env:         map[string]string{"ADUFLASH_MTD_DEV": "/dev/mtd0", "ADUFLASH_UBI_ENV": "1"},
	})
	if vm != nil {
		t.Logf("guest:\n%s", vm.TestOutput)
	}
}
