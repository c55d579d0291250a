package vmtest

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/aduflash/aduflash/internal/peers"
)

func TestCPIO(t *testing.T) {
	var b bytes.Buffer
	c := newCPIO(&b)
	c.File("/a/b/c.txt", 0o644, []byte("hello"))
	c.Symlink("/bin/sh", "busybox")
	c.CharDev("/dev/console", 0o600, 5, 1)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if b.Len()%4 != 0 {
		t.Fatalf("archive length %d is not a multiple of 4", b.Len())
	}
	cpio, err := exec.LookPath("cpio")
	if err != nil {
		peers.Missing(t, "cpio not found (apt-get install cpio) to cross-check the archive")
	}
	cmd := exec.Command(cpio, "-t", "-v", "--quiet")
	cmd.Stdin = &b
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("cpio -t: %v: %s", err, out)
	}
	for _, want := range []string{"a/b/c.txt", "bin/sh -> busybox", "dev/console", "a/b"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("cpio -t lacks %q:\n%s", want, out)
		}
	}
}

func TestModuleClosure(t *testing.T) {
	deps := map[string][]string{
		"kernel/drivers/mtd/nand/raw/nandsim.ko": {"kernel/drivers/mtd/nand/raw/nand.ko", "kernel/drivers/mtd/mtd.ko"},
		"kernel/drivers/mtd/nand/raw/nand.ko":    {"kernel/lib/bch.ko"},
		"kernel/drivers/mtd/mtd.ko":              nil,
		"kernel/lib/bch.ko":                      nil,
		"kernel/fs/ext4/ext4.ko":                 nil,
	}
	got, err := moduleClosure(deps, []string{"nandsim", "absent"})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(got, " ") != "kernel/drivers/mtd/mtd.ko kernel/drivers/mtd/nand/raw/nand.ko kernel/drivers/mtd/nand/raw/nandsim.ko kernel/lib/bch.ko" {
		t.Fatalf("closure = %v", got)
	}
}

func TestParseResult(t *testing.T) {
	m := "=== VMTEST-abc"
	r := &Result{Output: "boot\n" + m + " TEST-START uptime=1\n=== RUN TestX\n--- PASS: TestX\nPASS\n" + m + " TEST-END\n" + m + " RC=0 STAGE=test uptime=3\n"}
	parseResult(r, m, true)
	if !r.Passed || r.Stage != "test" || r.ExitCode != 0 || !strings.HasPrefix(r.TestOutput, "=== RUN TestX") || strings.Contains(r.TestOutput, "TEST-END") {
		t.Fatalf("%+v", r)
	}
	r = &Result{Output: m + " RC=1 STAGE=setup\n"}
	parseResult(r, m, true)
	if r.Passed || r.Stage != "setup" || r.ExitCode != 1 {
		t.Fatalf("%+v", r)
	}
}

// TestNandsimVM boots the kernel with nandsim and runs testdata/guestprobe inside it.
func TestNandsimVM(t *testing.T) {
	disk := filepath.Join(t.TempDir(), "xchg.img")
	if err := os.WriteFile(disk, append([]byte("HOST"), make([]byte, 1<<20)...), 0o644); err != nil {
		t.Fatal(err)
	}
	vm := Run(t, Config{
		Modules: []string{NANDSim},
		Setup: []string{
			"cat /proc/mtd",
			"mtdinfo /dev/mtd0",
			"head -c 4 /dev/vda > /out/disk-head", // the exchange disk came through
			"fw_printenv -V",
		},
		TestPackage: "./testdata/guestprobe",
		TestRun:     "TestGuest",
		Env:         map[string]string{"ADUFLASH_MTD_DEV": "/dev/mtd0"},
		Files:       map[string][]byte{"/etc/hello": []byte("hi\n")},
		Disk:        disk,
		CollectOut:  true,
	})
	if vm == nil || t.Failed() {
		return
	}
	if !strings.Contains(vm.TestOutput, "--- PASS: TestGuest") {
		t.Errorf("guest test output lacks --- PASS: TestGuest:\n%s", vm.TestOutput)
	}
	if !strings.Contains(vm.Output, "Sub-page size:                  512 bytes") {
		t.Errorf("mtdinfo output missing from the console")
	}
	if got := string(vm.Out["disk-head"]); got != "HOST" {
		t.Errorf("guest read %q from the exchange disk, want HOST", got)
	}
	if got := string(vm.Out["geometry.txt"]); got != "134217728 131072\n" {
		t.Errorf("geometry.txt = %q", got)
	}
	if len(vm.Out["page0.bin"]) != 2048 {
		t.Errorf("page0.bin has %d bytes", len(vm.Out["page0.bin"]))
	}
	t.Logf("prepare %v, VM wall %v", vm.Prepare, vm.Wall)
}

// recorder is a testing.TB that records failures instead of failing the real test.
type recorder struct {
	testing.TB
	mu     sync.Mutex
	errors []string
	fatal  bool
}

func (r *recorder) Errorf(f string, a ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errors = append(r.errors, fmt.Sprintf(f, a...))
}

func (r *recorder) Fatalf(f string, a ...any) {
	r.Errorf(f, a...)
	r.mu.Lock()
	r.fatal = true
	r.mu.Unlock()
	runtime.Goexit()
}

func (r *recorder) Fatal(a ...any) { r.Fatalf("%s", fmt.Sprint(a...)) }

// TestGuestFailureFailsHost: mtdram is not the NAND the guest test expects, so the guest
// test fails and Run must report it.
func TestGuestFailureFailsHost(t *testing.T) {
	if testing.Short() {
		t.Skip("boots a VM; -short")
	}
	if err := Requirements(); err != nil {
		peers.Missing(t, "%v", err)
	}
	rec := &recorder{TB: t}
	var vm *Result
	done := make(chan struct{})
	go func() {
		defer close(done)
		vm = Run(rec, Config{
			Modules:     []string{"mtdram total_size=1024 erase_size=64"},
			TestPackage: "./testdata/guestprobe",
			TestRun:     "TestGuest",
			Env:         map[string]string{"ADUFLASH_MTD_DEV": "/dev/mtd0"},
		})
	}()
	<-done
	if rec.fatal || vm == nil {
		t.Fatalf("Run failed fatally: %v", rec.errors)
	}
	if vm.Passed || vm.Stage != "test" || vm.ExitCode == 0 {
		t.Fatalf("guest run = passed %v stage %q exit %d, want a failed test stage", vm.Passed, vm.Stage, vm.ExitCode)
	}
	if len(rec.errors) != 1 || !strings.Contains(rec.errors[0], "guest tests failed") {
		t.Fatalf("host errors = %q, want one 'guest tests failed'", rec.errors)
	}
	if !strings.Contains(vm.TestOutput, "type = \"ram\", want nand") {
		t.Errorf("guest output lacks the type mismatch:\n%s", vm.TestOutput)
	}
}
