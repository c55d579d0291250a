// Package vmtest runs a Go test binary inside a real Linux kernel (Debian's amd64 kernel
// under qemu-system-x86_64, TCG) so that tests can use kernel MTD devices: nandsim, mtdram,
// phram, block2mtd, UBI and UBIFS.
//
// A host-side test calls Run: the package under test is compiled with `go test -c`
// (CGO_ENABLED=0, static), packed into an initramfs with a static busybox, the MTD/UBI
// kernel modules, mtd-utils and libubootenv's fw_printenv/fw_setenv, and booted; the guest
// /init loads the modules, runs the setup lines and then the test binary with -test.v, and
// powers off. The guest console is streamed into t.Log; the host test fails when the guest
// tests fail.
//
// The guest tests are ordinary tests that skip unless InGuest() is true:
//
//	func TestKernelNAND(t *testing.T) {
//		if !vmtest.InGuest() {
//			t.Skip("runs inside the VM (see TestKernelVM)")
//		}
//		dev := os.Getenv("ADUFLASH_MTD_DEV")
//		...
//	}
//
//	func TestKernelVM(t *testing.T) {
//		vmtest.Run(t, vmtest.Config{
//			Modules:     []string{vmtest.NANDSim},
//			TestPackage: ".",
//			TestRun:     "TestKernel",
//			Env:         map[string]string{"ADUFLASH_MTD_DEV": "/dev/mtd0"},
//		})
//	}
//
// The kernel (apt-get download linux-image-<ver>, dpkg-deb -x, depmod -b) and the
// initramfs base are cached under CacheDir(), keyed by kernel version and host tool
// versions. VM runs are serialised machine-wide with a lock file in that directory.
//
// Host packages (Debian): qemu-system-x86 busybox-static mtd-utils kmod libubootenv-tool,
// plus apt, dpkg and libc-bin (ldd), which every Debian system has, the go command, and a
// reachable Debian archive for the first run (apt-get download of the kernel package).
package vmtest

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aduflash/aduflash/internal/peers"
)

// GuestEnv is set to "1" in the guest test binary's environment.
const GuestEnv = "ADUFLASH_VMTEST"

// InGuest reports whether the calling test binary runs inside a vmtest VM.
func InGuest() bool { return os.Getenv(GuestEnv) == "1" }

// Need returns the environment variable name, which the VM sets for a test that runs inside
// it, or skips the test where it is unset (outside the VM), saying hint.
func Need(t testing.TB, name, hint string) string {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		t.Skipf("%s is unset: %s", name, hint)
	}
	return v
}

// OutDir is the guest directory whose files come back in Result.Out when Config.CollectOut
// is set; its path is also in the guest's $ADUFLASH_VM_OUT.
const OutDir = "/out"

// Config describes one VM run.
type Config struct {
	// Modules are modprobe argument lines run in the guest before anything else,
	// e.g. NANDSim or "mtdram total_size=1024".
	Modules []string
	// Setup are shell lines (busybox sh, set -e) run in the guest after Modules, in /tmp,
	// with Env exported; mtd-utils and fw_printenv/fw_setenv are on $PATH.
	Setup []string
	// TestPackage is the package compiled with `go test -c`, as the go command takes it,
	// relative to the host test's working directory (its package directory): ".", "./testdata/x",
	// or an import path. Empty: no test binary, only Modules and Setup run (Passed reflects Setup).
	TestPackage string
	// TestRun is the -test.run pattern; empty runs all tests.
	TestRun string
	// TestArgs are more arguments for the test binary (e.g. "-test.count=1").
	TestArgs []string
	// BuildFlags are more `go test -c` flags (e.g. "-tags=foo", "-race" is not possible: static).
	BuildFlags []string
	// Env is set for Setup and the test binary (GuestEnv=1 is always set).
	Env map[string]string
	// Files are put into the guest's root file system: absolute guest path → content, mode 0755.
	Files map[string][]byte
	// Disk, when set, is a host raw image attached as a virtio disk, /dev/vda in the guest
	// ($ADUFLASH_VM_DISK); what the guest writes there stays in the host file.
	Disk string
	// CollectOut returns the files the guest leaves in OutDir as Result.Out (they travel
	// as a tar archive on an extra virtio disk of OutSize bytes, default 64 MiB).
	CollectOut bool
	OutSize    int64
	// Memory is the guest RAM in MiB (default 512).
	Memory int
	// Timeout bounds the VM run (default 5 minutes, and less when the test's deadline is near).
	Timeout time.Duration
	// Cmdline is appended to the kernel command line; unknown key=value words become
	// environment variables of /init.
	Cmdline string
}

// Result is what a VM run produced.
type Result struct {
	Output     string            // the whole guest console, \r removed
	TestOutput string            // the test binary's part of Output
	ExitCode   int               // the test binary's exit status (Setup's when it failed); -1 if unknown
	Stage      string            // "test", or "setup" when Modules/Setup failed, "" if the VM never reported
	Passed     bool              // ExitCode == 0 at Stage "test" (or "setup" with no TestPackage)
	Out        map[string][]byte // files from the guest's OutDir (CollectOut), by relative path
	Wall       time.Duration     // QEMU's wall time (boot, setup, tests, poweroff)
	Prepare    time.Duration     // host preparation: kernel, image base, go test -c, initramfs
}

// Requirements returns nil when the host has what Run needs, else an error naming the
// Debian packages to install.
func Requirements() error {
	var missing []string
	for _, c := range []struct{ bin, pkg string }{
		{"qemu-system-x86_64", "qemu-system-x86"}, {"apt-get", "apt"}, {"dpkg-deb", "dpkg"}, {"ldd", "libc-bin"},
	} {
		if _, err := exec.LookPath(c.bin); err != nil {
			missing = append(missing, fmt.Sprintf("%s (apt-get install %s)", c.bin, c.pkg))
		}
	}
	if _, err := os.Stat(depmodPath()); err != nil {
		missing = append(missing, "depmod (apt-get install kmod)")
	}
	if _, err := goTool(); err != nil {
		missing = append(missing, err.Error())
	}
	if _, _, err := findTools(); err != nil {
		missing = append(missing, err.Error())
	}
	if len(missing) > 0 {
		return fmt.Errorf("vmtest needs: %s", strings.Join(missing, "; "))
	}
	return nil
}

func goTool() (string, error) {
	if p, err := exec.LookPath("go"); err == nil {
		return p, nil
	}
	if r := os.Getenv("GOROOT"); r != "" {
		if p := filepath.Join(r, "bin", "go"); fileExists(p) {
			return p, nil
		}
	}
	return "", errors.New("the go command is not on $PATH")
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// NANDSim is the Modules line of the NAND most kernel tests use: nandsim as a 128 MiB NAND
// with 2 KiB pages and factory bad blocks 3 and 7 (/dev/mtd0 when it is the first MTD).
const NANDSim = "nandsim id_bytes=0x20,0xa1,0x00,0x15 badblocks=3,7"

// NANDAndUBI returns the Modules and Setup of the MTD tests' VM: NANDSim as /dev/mtd0, and
// UBI on an mtdram device of ramKiB KiB (/dev/mtd1) attached as ubi0 with the volumes, each
// given as ubimkvol takes it ("-N name -s size").
func NANDAndUBI(ramKiB int, volumes ...string) (modules, setup []string) {
	modules = []string{NANDSim, fmt.Sprintf("mtdram total_size=%d erase_size=128", ramKiB), "ubi"}
	setup = []string{"ubiformat -y /dev/mtd1", "ubiattach -p /dev/mtd1"}
	for _, v := range volumes {
		setup = append(setup, "ubimkvol /dev/ubi0 "+v)
	}
	return modules, setup
}

// Run boots the VM described by cfg and waits for it. It skips the test inside the guest and
// under go test -short (a VM boots in about 10 s under TCG); missing host tools make it call
// peers.Missing (skip, or fail in CI). The host test fails when the VM does not report, when
// Setup fails, or when the guest tests fail; the Result is returned for inspection unless
// the failure was fatal.
func Run(t testing.TB, cfg Config) *Result {
	t.Helper()
	if !hostCanBoot(t) {
		return nil
	}
	start := time.Now()
	cache, err := CacheDir()
	if err != nil {
		t.Fatal(err)
	}
	m, err := prepare(t, cache, t.TempDir(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	res := &Result{ExitCode: -1, Prepare: time.Since(start)}
	qerr := m.boot(t, cache, cfg, res)
	t.Logf("vmtest: kernel %s, prepare %v, VM %v", m.kernel.Version, res.Prepare.Round(time.Millisecond), res.Wall.Round(time.Millisecond))
	parseResult(res, m.marker, cfg.TestPackage != "")
	m.collectOut(t, res)
	judge(t, res, cfg, qerr)
	return res
}

// hostCanBoot skips t inside the guest and under -short, and reports whether the host has
// what Run needs (else peers.Missing has skipped or failed t).
func hostCanBoot(t testing.TB) bool {
	t.Helper()
	if InGuest() {
		t.Skip("already inside the VM")
	}
	if testing.Short() {
		t.Skip("boots a VM (about 10 s under TCG); -short")
	}
	if err := Requirements(); err != nil {
		peers.Missing(t, "%v", err)
		return false
	}
	return true
}

// machine is a VM ready to boot: the kernel, this run's initramfs, the virtio disks, and the
// marker the guest's /init prints before each report.
type machine struct {
	kernel *kernel
	initrd string
	drives []string // Config.Disk, then the OutDir disk
	outImg string   // the disk the guest's OutDir comes back on ("" without CollectOut)
	marker string
}

// prepare builds what the VM boots, under tmp: the test binary (compiled while the cached
// kernel and initramfs base are made ready), the disks and the initramfs.
func prepare(t testing.TB, cache, tmp string, cfg Config) (*machine, error) {
	type built struct {
		bin []byte
		err error
	}
	buildc := make(chan built, 1)
	go func() {
		if cfg.TestPackage == "" {
			buildc <- built{}
			return
		}
		b, err := buildTest(tmp, cfg)
		buildc <- built{b, err}
	}()
	k, base, err := prepareImage(t, cache)
	b := <-buildc
	if err != nil {
		return nil, err
	}
	if b.err != nil {
		return nil, b.err
	}
	m := &machine{kernel: k, marker: newMarker()}
	guestDisk, outDev, err := m.attachDisks(tmp, cfg)
	if err != nil {
		return nil, err
	}
	m.initrd = filepath.Join(tmp, "initrd.cpio")
	if err := writeInitrd(m.initrd, base, cfg, b.bin, m.marker, guestDisk, outDev, len(m.drives)); err != nil {
		return nil, fmt.Errorf("vmtest: initrd: %w", err)
	}
	return m, nil
}

// prepareImage returns the kernel and the initramfs base, from the cache or made on first use.
func prepareImage(t testing.TB, cache string) (*kernel, string, error) {
	var logMu sync.Mutex
	var logs []string
	logf := func(f string, a ...any) { logMu.Lock(); logs = append(logs, fmt.Sprintf(f, a...)); logMu.Unlock() }
	k, err := prepareKernel(cache, logf)
	for _, l := range logs {
		t.Log(l)
	}
	if err != nil {
		return nil, "", err
	}
	busybox, tools, err := findTools()
	if err != nil {
		return nil, "", err
	}
	base, err := buildBase(cache, k, busybox, tools)
	if err != nil {
		return nil, "", fmt.Errorf("vmtest: initramfs base: %w", err)
	}
	return k, base, nil
}

// newMarker returns a marker for the guest's reports that no console output has by chance.
func newMarker() string {
	nonce := make([]byte, 6)
	rand.Read(nonce)
	return "=== VMTEST-" + hex.EncodeToString(nonce)
}

// attachDisks lists the virtio disks: Config.Disk and, with CollectOut, an empty image of
// OutSize bytes for the guest's OutDir. It returns their names in the guest ("" for none).
func (m *machine) attachDisks(tmp string, cfg Config) (guestDisk, outDev string, err error) {
	if cfg.Disk != "" {
		m.drives = append(m.drives, cfg.Disk)
		guestDisk = "/dev/vda"
	}
	if !cfg.CollectOut {
		return guestDisk, "", nil
	}
	m.outImg = filepath.Join(tmp, "out.img")
	size := cfg.OutSize
	if size <= 0 {
		size = 64 << 20
	}
	f, err := os.Create(m.outImg)
	if err == nil {
		err = f.Truncate(size)
		f.Close()
	}
	if err != nil {
		return "", "", err
	}
	outDev = "/dev/vd" + string(rune('a'+len(m.drives)))
	m.drives = append(m.drives, m.outImg)
	return guestDisk, outDev, nil
}

// qemuArgs is the machine's QEMU command line.
func (m *machine) qemuArgs(cfg Config) []string {
	mem := cfg.Memory
	if mem <= 0 {
		mem = 512
	}
	args := []string{
		"-m", strconv.Itoa(mem), "-nographic", "-no-reboot", "-nic", "none",
		"-kernel", m.kernel.Vmlinuz(), "-initrd", m.initrd,
		"-append", strings.TrimSpace("console=ttyS0 panic=-1 quiet " + cfg.Cmdline),
	}
	for _, d := range m.drives {
		args = append(args, "-drive", "file="+d+",format=raw,if=virtio")
	}
	return args
}

// boot runs the machine once no other VM of this host runs (a lock file in cache), and
// records its console and wall time in res. It returns QEMU's error.
func (m *machine) boot(t testing.TB, cache string, cfg Config, res *Result) error {
	asked := time.Now()
	unlock, err := lockFile(filepath.Join(cache, "qemu.lock"))
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	if waited := time.Since(asked); waited > time.Second {
		t.Logf("vmtest: waited %v for another VM to finish", waited.Round(time.Millisecond))
	}
	vmStart := time.Now()
	out, qerr := runQEMU(t, runTimeout(t, cfg), m.qemuArgs(cfg), m.marker)
	res.Wall = time.Since(vmStart)
	res.Output = out
	return qerr
}

// runTimeout is Config.Timeout (default 5 minutes), cut short to end 15 s before the test's
// deadline (but never below 10 s).
func runTimeout(t testing.TB, cfg Config) time.Duration {
	timeout := cfg.Timeout
	if timeout <= 0 {
		timeout = 5 * time.Minute
	}
	if d, ok := t.(interface{ Deadline() (time.Time, bool) }); ok {
		if dl, ok := d.Deadline(); ok {
			if left := time.Until(dl) - 15*time.Second; left < timeout {
				timeout = max(left, 10*time.Second)
			}
		}
	}
	return timeout
}

// collectOut reads the files the guest left in OutDir into res.Out, when it asked for them
// and the guest reported.
func (m *machine) collectOut(t testing.TB, res *Result) {
	if m.outImg == "" || res.Stage == "" {
		return
	}
	var err error
	if res.Out, err = readOutTar(m.outImg); err != nil {
		t.Errorf("vmtest: reading the guest's %s: %v", OutDir, err)
	}
}

// judge fails the host test as the guest's report says.
func judge(t testing.TB, res *Result, cfg Config, qerr error) {
	switch {
	case res.Stage == "":
		t.Fatalf("vmtest: the guest never reported a result (%v); console above", qerr)
	case res.Stage == "setup" && res.ExitCode != 0:
		t.Fatalf("vmtest: guest setup (Modules/Setup) failed with exit status %d; console above", res.ExitCode)
	case !res.Passed:
		t.Errorf("vmtest: guest tests failed (exit status %d)", res.ExitCode)
	case cfg.TestPackage != "" && strings.Contains(res.TestOutput, "testing: warning: no tests to run"):
		t.Errorf("vmtest: no guest test matched -test.run %q", cfg.TestRun)
	}
}

func buildTest(dir string, cfg Config) ([]byte, error) {
	gocmd, err := goTool()
	if err != nil {
		return nil, err
	}
	bin := filepath.Join(dir, "guest.test")
	args := append([]string{"test", "-c", "-o", bin}, cfg.BuildFlags...)
	args = append(args, cfg.TestPackage)
	cmd := exec.Command(gocmd, args...)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("vmtest: go test -c %s: %v\n%s", cfg.TestPackage, err, out)
	}
	b, err := os.ReadFile(bin)
	if err != nil {
		return nil, fmt.Errorf("vmtest: go test -c %s wrote no binary (no test files?): %v\n%s", cfg.TestPackage, err, out)
	}
	return b, nil
}

// shq quotes s for sh.
func shq(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// writeInitrd writes the run's initramfs to dst: the base, then /init, the setup script, the
// test binary and Config.Files. disk and outDev are the guest's names of Config.Disk and the
// OutDir disk ("" for none); ndisks is how many virtio disks there are.
func writeInitrd(dst, base string, cfg Config, testBin []byte, marker, disk, outDev string, ndisks int) error {
	f, err := os.Create(dst)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := copyInto(f, base); err != nil {
		return err
	}
	c := newCPIO(f)
	c.File("/init", 0o755, []byte(initScript(cfg, guestEnv(cfg, disk, outDev), testBin != nil, marker, outDev)))
	c.File("/vmtest/setup.sh", 0o755, []byte(setupScript(cfg, ndisks)))
	if testBin != nil {
		c.File("/vmtest/guest.test", 0o755, testBin)
	}
	if err := addFiles(c, cfg.Files); err != nil {
		return err
	}
	if err := c.Close(); err != nil {
		return err
	}
	return f.Close()
}

// copyInto appends the file at path to w.
func copyInto(w io.Writer, path string) error {
	r, err := os.Open(path)
	if err != nil {
		return err
	}
	defer r.Close()
	_, err = io.Copy(w, r)
	return err
}

// guestEnv is the environment of Setup and the test binary: GuestEnv=1, the disks' names,
// and Config.Env.
func guestEnv(cfg Config, disk, outDev string) map[string]string {
	env := map[string]string{GuestEnv: "1", "TMPDIR": "/tmp", "HOME": "/tmp",
		"PATH": "/usr/bin:/bin:/sbin:/usr/sbin"}
	if disk != "" {
		env["ADUFLASH_VM_DISK"] = disk
	}
	if outDev != "" {
		env["ADUFLASH_VM_OUT"] = OutDir
	}
	for k, v := range cfg.Env {
		env[k] = v
	}
	return env
}

// setupScript waits for the virtio disks, loads Config.Modules and runs Config.Setup.
func setupScript(cfg Config, ndisks int) string {
	var setup strings.Builder
	setup.WriteString("set -ex\ncd /tmp\n")
	if ndisks > 0 {
		last := "/dev/vd" + string(rune('a'+ndisks-1))
		setup.WriteString("modprobe virtio_pci\nmodprobe virtio_blk\n")
		setup.WriteString("i=0; while [ ! -b " + last + " ] && [ $i -lt 100 ]; do usleep 50000; i=$((i+1)); done\n")
	}
	for _, m := range cfg.Modules {
		setup.WriteString("modprobe " + m + "\n")
	}
	for _, s := range cfg.Setup {
		setup.WriteString(s + "\n")
	}
	return setup.String()
}

// initScript is the guest's /init: mount, export env, run the setup script and the test
// binary (when there is one), send OutDir back on outDev, report behind marker, power off.
func initScript(cfg Config, env map[string]string, hasTest bool, marker, outDev string) string {
	var init strings.Builder
	init.WriteString("#!/bin/busybox sh\n/bin/busybox --install -s /bin\n")
	init.WriteString("mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev\n")
	fmt.Fprintf(&init, "M=%s\n", shq(marker))
	for _, k := range slices.Sorted(maps.Keys(env)) {
		fmt.Fprintf(&init, "export %s=%s\n", k, shq(env[k]))
	}
	init.WriteString(`echo "$M BOOTED uptime=$(cut -d' ' -f1 /proc/uptime)"` + "\n")
	init.WriteString("sh /vmtest/setup.sh 2>&1; rc=$?\n")
	init.WriteString(`if [ $rc -ne 0 ]; then echo "$M RC=$rc STAGE=setup"; sync; poweroff -f; sleep 60; fi` + "\n")
	if hasTest {
		init.WriteString("mkdir -p /tmp/work; cd /tmp/work\n")
		init.WriteString(`echo "$M TEST-START uptime=$(cut -d' ' -f1 /proc/uptime)"` + "\n")
		fmt.Fprintf(&init, "/vmtest/guest.test %s 2>&1; rc=$?\n", strings.Join(testArgs(cfg), " "))
		init.WriteString(`echo "$M TEST-END uptime=$(cut -d' ' -f1 /proc/uptime)"` + "\n")
		init.WriteString("stage=test\n")
	} else {
		init.WriteString("stage=setup\n")
	}
	if outDev != "" {
		fmt.Fprintf(&init, "tar -cf %s -C %s . || echo \"$M OUT-FAILED\"\n", outDev, OutDir)
	}
	init.WriteString("sync\n")
	init.WriteString(`echo "$M RC=$rc STAGE=$stage uptime=$(cut -d' ' -f1 /proc/uptime)"` + "\n")
	init.WriteString("poweroff -f\nsleep 60\n")
	return init.String()
}

// testArgs are the test binary's arguments, quoted for sh.
func testArgs(cfg Config) []string {
	targs := []string{"-test.v"}
	if cfg.TestRun != "" {
		targs = append(targs, "-test.run="+cfg.TestRun)
	}
	if cfg.Timeout > 0 {
		targs = append(targs, "-test.timeout="+(cfg.Timeout*9/10).String())
	}
	targs = append(targs, cfg.TestArgs...)
	for i, a := range targs {
		targs[i] = shq(a)
	}
	return targs
}

// addFiles puts Config.Files into the initramfs, in name order.
func addFiles(c *cpioWriter, files map[string][]byte) error {
	for _, n := range slices.Sorted(maps.Keys(files)) {
		if !path.IsAbs(n) {
			return fmt.Errorf("Config.Files: %q is not an absolute guest path", n)
		}
		c.File(n, 0o755, files[n])
	}
	return nil
}

// runQEMU runs qemu-system-x86_64 and streams the console into t.Log line by line. Once the
// result marker has been printed QEMU gets a few seconds to power off before it is killed.
func runQEMU(t testing.TB, timeout time.Duration, args []string, marker string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "qemu-system-x86_64", args...)
	cmd.WaitDelay = 5 * time.Second
	pr, pw := io.Pipe()
	cmd.Stdout = pw
	cmd.Stderr = pw
	if err := cmd.Start(); err != nil {
		return "", fmt.Errorf("start qemu-system-x86_64: %w", err)
	}
	var (
		mu      sync.Mutex
		console strings.Builder
		done    = make(chan struct{})
	)
	resultRE := regexp.MustCompile(regexp.QuoteMeta(marker) + ` RC=`)
	go func() {
		defer close(done)
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 4<<20)
		for sc.Scan() {
			line := strings.TrimRight(sc.Text(), "\r")
			line = ansiRE.ReplaceAllString(strings.ReplaceAll(line, "\r", ""), "")
			t.Log("vm| " + line)
			mu.Lock()
			console.WriteString(line + "\n")
			mu.Unlock()
			if resultRE.MatchString(line) {
				time.AfterFunc(10*time.Second, cancel) // poweroff -f should end QEMU at once
			}
		}
		io.Copy(io.Discard, pr)
	}()
	werr := cmd.Wait()
	pw.Close()
	<-done
	if ctx.Err() == context.DeadlineExceeded {
		werr = fmt.Errorf("VM timed out after %v", timeout)
	}
	mu.Lock()
	defer mu.Unlock()
	return console.String(), werr
}

// ansiRE matches the terminal escapes SeaBIOS prints (reset, clear screen, wrap mode).
var ansiRE = regexp.MustCompile(`\x1b(c|\[[0-9;?]*[A-Za-z])`)

func parseResult(res *Result, marker string, hasTest bool) {
	re := regexp.MustCompile(regexp.QuoteMeta(marker) + ` RC=(\d+) STAGE=(\w+)`)
	m := re.FindStringSubmatch(res.Output)
	if m == nil {
		return
	}
	res.ExitCode, _ = strconv.Atoi(m[1])
	res.Stage = m[2]
	res.Passed = res.ExitCode == 0 && (res.Stage == "test" || !hasTest)
	if i := strings.Index(res.Output, marker+" TEST-START"); i >= 0 {
		s := res.Output[i:]
		if nl := strings.IndexByte(s, '\n'); nl >= 0 {
			s = s[nl+1:]
		}
		if j := strings.Index(s, marker+" TEST-END"); j >= 0 {
			s = s[:j]
		}
		res.TestOutput = s
	}
}

func readOutTar(img string) (map[string][]byte, error) {
	f, err := os.Open(img)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[string][]byte{}
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		var b bytes.Buffer
		if _, err := io.Copy(&b, tr); err != nil {
			return out, err
		}
		out[strings.TrimPrefix(path.Clean("/"+h.Name), "/")] = b.Bytes()
	}
}
