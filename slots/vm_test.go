//go:build linux

package slots

import (
	"os"
	"testing"

	"github.com/aduflash/aduflash/internal/vmtest"
)

// TestInVM runs kernel_test.go inside a Linux kernel under QEMU with nandsim (bad blocks 3
// and 7) as /dev/mtd0. With ADUFLASH_VM_BENCH set it runs the in-VM benchmarks instead
// (scripts/bench-mtd).
func TestInVM(t *testing.T) {
	cfg := vmtest.Config{
		Modules:     []string{vmtest.NANDSim},
		TestPackage: ".",
		TestRun:     "^TestKernel",
		Env:         map[string]string{"ADUFLASH_MTD_DEV": "/dev/mtd0"},
	}
	if os.Getenv("ADUFLASH_VM_BENCH") != "" {
		cfg.TestRun = "^$"
		cfg.TestArgs = []string{"-test.bench=^BenchmarkKernel", "-test.benchtime=5x"}
		cfg.Memory = 1024
	}
	if vm := vmtest.Run(t, cfg); vm != nil {
		t.Logf("guest:\n%s", vm.TestOutput)
	}
}
