package ubootqemu

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aduflash/aduflash/internal/peers"
)

func TestLayout(t *testing.T) {
	l := Layout()
	if l.Offset != 0x100000 || l.OffsetRedund != 0x120000 || l.Size != 0x20000 || l.MMCDev != 0 || !l.CounterFlags {
		t.Fatalf("Layout() = %+v", l)
	}
	if l.Offset+l.Size > l.OffsetRedund || l.OffsetRedund+l.Size > DefaultDiskSize {
		t.Fatalf("copies overlap or do not fit the default disk: %+v", l)
	}
	want := "/x/d.img 0x100000 0x20000\n/x/d.img 0x120000 0x20000\n"
	if got := FwEnvConfig("/x/d.img"); got != want {
		t.Fatalf("FwEnvConfig = %q, want %q", got, want)
	}
	if err := CreateDisk(filepath.Join(t.TempDir(), "d"), 3<<20); err == nil {
		t.Fatal("CreateDisk accepted a size that is not a power of two")
	}
}

// writeEnv writes env (key=value lines) with mkenvimage -r as copy 1 of disk, with
// redundancy flags 1; copy 2 stays blank (zeros: CRC invalid), so U-Boot takes copy 1.
func writeEnv(t *testing.T, disk string, env []string) {
	t.Helper()
	if _, err := exec.LookPath("mkenvimage"); err != nil {
		peers.Missing(t, "mkenvimage not found (apt-get install u-boot-tools)")
	}
	dir := t.TempDir()
	txt := filepath.Join(dir, "env.txt")
	if err := os.WriteFile(txt, []byte(strings.Join(env, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(dir, "env.bin")
	if out, err := exec.Command("mkenvimage", "-r", "-s", "0x20000", "-o", img, txt).CombinedOutput(); err != nil {
		t.Fatalf("mkenvimage: %v: %s", err, out)
	}
	blob, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	if len(blob) != EnvSize {
		t.Fatalf("mkenvimage wrote %d bytes, want %d", len(blob), EnvSize)
	}
	f, err := os.OpenFile(disk, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(blob, EnvOffset); err != nil {
		t.Fatal(err)
	}
}

// fwPrintenv reads the disk's environment with libubootenv's fw_printenv.
func fwPrintenv(t *testing.T, disk string) map[string]string {
	t.Helper()
	if _, err := exec.LookPath("fw_printenv"); err != nil {
		peers.Missing(t, "fw_printenv not found (apt-get install libubootenv-tool)")
	}
	cfg := filepath.Join(t.TempDir(), "fw_env.config")
	if err := os.WriteFile(cfg, []byte(FwEnvConfig(disk)), 0o644); err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd := exec.Command("fw_printenv", "-c", cfg)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("fw_printenv: %v: %s", err, stderr.Bytes())
	}
	env := map[string]string{}
	for _, line := range strings.Split(string(out), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			env[k] = v
		}
	}
	return env
}

func flags(t *testing.T, disk string) (byte, byte) {
	t.Helper()
	b, err := os.ReadFile(disk)
	if err != nil {
		t.Fatal(err)
	}
	return b[EnvOffset+4], b[EnvOffsetRedund+4]
}

func boot(t *testing.T, cfg Config) string {
	t.Helper()
	w, flush := LogWriter(t, "uboot| ")
	cfg.Log = w
	start := time.Now()
	out, err := Boot(context.Background(), cfg)
	flush()
	t.Logf("boot took %v", time.Since(start).Round(time.Millisecond))
	if err != nil {
		t.Fatalf("Boot: %v", err)
	}
	return out
}

func TestBootMarker(t *testing.T) {
	ub := Require(t)
	disk := filepath.Join(t.TempDir(), "sd.img")
	if err := CreateDisk(disk, DefaultDiskSize); err != nil {
		t.Fatal(err)
	}
	const marker = "ADUFLASH-UBOOTQEMU-MARKER"
	writeEnv(t, disk, []string{
		"bootdelay=0",
		"greeting=" + marker,
		"bootcmd=echo ${greeting}; poweroff",
	})
	out := boot(t, Config{UBoot: ub, Disk: disk})
	if !strings.Contains(out, marker) {
		t.Fatalf("marker %q not in console", marker)
	}
	if !strings.Contains(out, "Loading Environment from MMC... OK") {
		t.Errorf("U-Boot did not load our environment from MMC")
	}

	// Stop on a marker instead of waiting for poweroff: this bootcmd would fall to the prompt.
	writeEnv(t, disk, []string{"bootdelay=0", "bootcmd=echo STOP-" + "HERE; sleep 30"})
	out = boot(t, Config{UBoot: ub, Disk: disk, Marker: "STOP-HERE"})
	if !strings.Contains(out, "STOP-HERE") {
		t.Fatal("marker not in console")
	}

	// A bootcmd that returns leaves U-Boot at its prompt: ErrPrompt, not a timeout.
	writeEnv(t, disk, []string{"bootdelay=0", "bootcmd=echo nothing"})
	start := time.Now()
	_, err := Boot(context.Background(), Config{UBoot: ub, Disk: disk, Timeout: 30 * time.Second})
	if err == nil || !strings.Contains(err.Error(), "prompt") {
		t.Fatalf("Boot = %v, want ErrPrompt", err)
	}
	t.Logf("prompt detected after %v", time.Since(start).Round(time.Millisecond))
}

func TestBootcountRollback(t *testing.T) {
	ub := Require(t)
	disk := filepath.Join(t.TempDir(), "sd.img")
	if err := CreateDisk(disk, DefaultDiskSize); err != nil {
		t.Fatal(err)
	}
	writeEnv(t, disk, []string{
		"bootdelay=0",
		"bootlimit=2",
		"bootcount=0",
		"upgrade_available=1",
		"boot_slot=b",
		"altbootcmd=echo ROLLBACK from ${boot_slot}; setenv boot_slot a; setenv upgrade_available 0; setenv bootcount 0; saveenv; run boot_it",
		"boot_it=echo SLOT=${boot_slot} BOOTCOUNT=${bootcount} UPG=${upgrade_available}; poweroff",
		"bootcmd=run boot_it",
	})
	if env := fwPrintenv(t, disk); env["bootcount"] != "0" || env["upgrade_available"] != "1" {
		t.Fatalf("before boot fw_printenv reads %v", env)
	}
	prevFlags := byte(1)
	for i, want := range []string{"1", "2"} {
		out := boot(t, Config{UBoot: ub, Disk: disk})
		if !strings.Contains(out, "SLOT=b BOOTCOUNT="+want+" UPG=1") {
			t.Fatalf("boot %d: console lacks SLOT=b BOOTCOUNT=%s", i+1, want)
		}
		env := fwPrintenv(t, disk)
		if env["bootcount"] != want || env["boot_slot"] != "b" || env["upgrade_available"] != "1" {
			t.Fatalf("boot %d: saved env bootcount=%q boot_slot=%q upgrade_available=%q, want %s/b/1",
				i+1, env["bootcount"], env["boot_slot"], env["upgrade_available"], want)
		}
		f1, f2 := flags(t, disk)
		if max(f1, f2) != prevFlags+1 {
			t.Errorf("boot %d: redundancy flags %02x/%02x, want the newest = %02x", i+1, f1, f2, prevFlags+1)
		}
		prevFlags = max(f1, f2)
		t.Logf("boot %d: bootcount=%s flags=%02x/%02x", i+1, env["bootcount"], f1, f2)
	}
	// bootcount 3 > bootlimit 2: U-Boot runs altbootcmd.
	out := boot(t, Config{UBoot: ub, Disk: disk})
	if !strings.Contains(out, "Bootlimit (2) exceeded. Using altbootcmd") || !strings.Contains(out, "ROLLBACK from b") {
		t.Fatal("third boot did not run altbootcmd")
	}
	if !strings.Contains(out, "SLOT=a BOOTCOUNT=0 UPG=0") {
		t.Fatal("altbootcmd did not switch to slot a")
	}
	env := fwPrintenv(t, disk)
	if env["boot_slot"] != "a" || env["bootcount"] != "0" || env["upgrade_available"] != "0" {
		t.Fatalf("after rollback saved env = boot_slot=%q bootcount=%q upgrade_available=%q", env["boot_slot"], env["bootcount"], env["upgrade_available"])
	}
	// With upgrade_available=0 U-Boot counts in RAM only and saves nothing.
	f1, f2 := flags(t, disk)
	boot(t, Config{UBoot: ub, Disk: disk})
	if g1, g2 := flags(t, disk); g1 != f1 || g2 != f2 {
		t.Errorf("U-Boot saved the env although upgrade_available=0: flags %02x/%02x -> %02x/%02x", f1, f2, g1, g2)
	}
	if env := fwPrintenv(t, disk); env["bootcount"] != "0" {
		t.Errorf("bootcount saved as %q with upgrade_available=0", env["bootcount"])
	}
}

// startSession starts a session (cfg with U-Boot and a fresh disk filled in) whose
// environment runs bootcmd at once; it ends with the test.
func startSession(t *testing.T, bootcmd string, cfg Config) *Session {
	t.Helper()
	if testing.Short() {
		t.Skip("boots U-Boot under QEMU")
	}
	cfg.UBoot = Require(t)
	cfg.Disk = filepath.Join(t.TempDir(), "sd.img")
	if err := CreateDisk(cfg.Disk, DefaultDiskSize); err != nil {
		t.Fatal(err)
	}
	writeEnv(t, cfg.Disk, []string{"bootdelay=0", "bootcmd=" + bootcmd})
	m, err := Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// A session in the background: WaitFor sees the console as it comes, and says so when QEMU
// exits before the marker; Wait returns at the exit.
func TestSession(t *testing.T) {
	m := startSession(t, "echo MACHINE-UP; poweroff", Config{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := m.WaitFor(ctx, "MACHINE-UP", 0); err != nil {
		t.Fatal(err)
	}
	if _, err := m.WaitFor(ctx, "never printed", 0); !errors.Is(err, ErrExited) {
		t.Fatalf("WaitFor after poweroff: %v, want QEMU's exit named", err)
	}
	if err := m.Wait(ctx); err != nil {
		t.Fatalf("Wait: %v", err)
	}
}

// A session whose console is a pty: U-Boot prints on the pty (its bootcmd's line read there),
// and a reset reboots the board instead of ending QEMU.
func TestSessionPTY(t *testing.T) {
	m := startSession(t, "echo BOARD-UP; sleep 1; reset", Config{ConsolePTY: true})
	if !strings.HasPrefix(m.PTY, "/dev/pts/") {
		t.Fatalf("PTY = %q", m.PTY)
	}
	pty, err := os.Open(m.PTY)
	if err != nil {
		t.Fatal(err)
	}
	defer pty.Close()
	pty.SetReadDeadline(time.Now().Add(time.Minute))
	var seen bytes.Buffer
	buf := make([]byte, 4096)
	for strings.Count(seen.String(), "BOARD-UP\r\n") < 2 { // printed again after a reset
		n, err := pty.Read(buf)
		if err != nil {
			t.Fatalf("reading the pty: %v (read %q)", err, seen.String())
		}
		seen.Write(buf[:n])
	}
}
