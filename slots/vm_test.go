//go:build linux

package slots

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/aduflash/aduflash/internal/testpayload"
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

// TestInVMGPT runs TestKernelGPT in a kernel without udev, on a virtio disk whose GPT sgdisk
// made (gdisk; our own writer when sgdisk is missing), and checks on the host that bank B's
// partition of the disk image holds what the guest wrote.
func TestInVMGPT(t *testing.T) {
	if vmtest.InGuest() {
		t.Skip("already inside the VM")
	}
	if testing.Short() {
		t.Skip("boots a VM (about 10 s under TCG); -short")
	}
	disk := filepath.Join(t.TempDir(), "disk.img")
	if _, err := exec.LookPath("sgdisk"); err == nil {
		if err := os.WriteFile(disk, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(disk, 16<<20); err != nil {
			t.Fatal(err)
		}
		sh(t, "sgdisk", "-o", "-n", "1:2048:10239", "-c", "1:rootfs_a", "-u", "1:"+gptDiskParts[0].UUID,
			"-n", "2:10240:18431", "-c", "2:rootfs_b", "-u", "2:"+gptDiskParts[1].UUID, disk)
	} else {
		writeGPTDisk(t, disk)
	}
	vm := vmtest.Run(t, vmtest.Config{TestPackage: ".", TestRun: "^TestKernelGPT$", Disk: disk})
	if vm == nil {
		return
	}
	t.Logf("guest:\n%s", vm.TestOutput)
	f, err := os.Open(disk)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got := make([]byte, gptPayloadSize)
	if _, err := f.ReadAt(got, 10240*512); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, testpayload.Bytes(11, gptPayloadSize)) {
		t.Fatal("bank B's partition of the disk image does not hold what the guest wrote")
	}
}
