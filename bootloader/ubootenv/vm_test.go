//go:build linux

package ubootenv

import (
	"testing"

	"github.com/aduflash/aduflash/internal/vmtest"
)

// TestInVM runs the kernel tests of kernel_test.go inside a Linux kernel under QEMU with
// nandsim (bad blocks 3 and 7) as /dev/mtd0 and libubootenv's tools on PATH.
func TestInVM(t *testing.T) {
	if vmtest.InGuest() {
		t.Skip("already inside the VM")
	}
	if testing.Short() {
		t.Skip("boots a VM (about 10 s under TCG); -short")
	}
	vm := vmtest.Run(t, vmtest.Config{
		Modules:     []string{"nandsim id_bytes=0x20,0xa1,0x00,0x15 badblocks=3,7"},
		TestPackage: ".",
		TestRun:     "^TestKernel",
		Env:         map[string]string{"ADUFLASH_MTD_DEV": "/dev/mtd0"},
	})
	if vm != nil {
		t.Logf("guest tests:\n%s", vm.TestOutput)
	}
}
