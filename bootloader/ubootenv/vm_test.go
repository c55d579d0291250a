//go:build linux

package ubootenv

import (
	"testing"

	"github.com/aduflash/aduflash/internal/vmtest"
)

// TestInVM runs the kernel tests of kernel_test.go inside a Linux kernel under QEMU with
// nandsim (bad blocks 3 and 7) as /dev/mtd0 and libubootenv's tools on PATH.
func TestInVM(t *testing.T) {
	vm := vmtest.Run(t, vmtest.Config{
		Modules:     []string{vmtest.NANDSim},
		TestPackage: ".",
		TestRun:     "^TestKernel",
		Env:         map[string]string{"ADUFLASH_MTD_DEV": "/dev/mtd0"},
	})
	if vm != nil {
		t.Logf("guest tests:\n%s", vm.TestOutput)
	}
}
