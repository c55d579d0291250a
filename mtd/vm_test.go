//go:build linux

package mtd

import (
	"testing"

	"github.com/aduflash/aduflash/internal/vmtest"
)

// TestInVM runs this package's kernel tests (kernel_test.go) inside a Linux kernel under
// QEMU: nandsim as /dev/mtd0 (128 MiB NAND, 2 KiB pages, factory bad blocks 3 and 7) and a
// UBI volume on mtdram (/dev/mtd1).
func TestInVM(t *testing.T) {
	modules, setup := vmtest.NANDAndUBI(16384, "-N scratch -s 4MiB")
	vm := vmtest.Run(t, vmtest.Config{
		Modules:     modules,
		Setup:       setup,
		TestPackage: ".",
		TestRun:     "^TestKernel",
		Env: map[string]string{
			"ADUFLASH_MTD_DEV":       "/dev/mtd0",
			"ADUFLASH_MTD_BADBLOCKS": "3,7",
			"ADUFLASH_UBI_VOL":       "scratch",
		},
	})
	if vm == nil {
		return
	}
	t.Logf("guest tests:\n%s", vm.TestOutput)
	t.Logf("prepare %v, VM %v", vm.Prepare, vm.Wall)
}
