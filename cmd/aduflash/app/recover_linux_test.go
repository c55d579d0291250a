package app

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/aduflash/aduflash/cmd/internal/exitcode"
	"github.com/aduflash/aduflash/internal/tftptest"
	"github.com/aduflash/aduflash/internal/ubootqemu"
)

// The bricked SD card of the QEMU board: both rootfs slots garbage, both environment copies
// erased (U-Boot starts with its built-in environment, whose bootcmd tries a network boot).
const (
	slotA = 2 << 20 // bytes from the start of the card; block 0x1000
	slotB = 8 << 20
)

type brickedBoard struct {
	disk, console, tftpDir string
	payload, before        []byte
}

func newBrickedBoard(t *testing.T, payloadSize int) *brickedBoard {
	t.Helper()
	if testing.Short() {
		t.Skip("QEMU test; skipped under -short")
	}
	ub := ubootqemu.RequireNet(t)
	dir := t.TempDir()
	b := &brickedBoard{disk: filepath.Join(dir, "sd.img"), tftpDir: filepath.Join(dir, "tftp")}
	rng := rand.NewChaCha8([32]byte{1})
	disk := make([]byte, ubootqemu.DefaultDiskSize)
	rng.Read(disk[slotA:])
	erased := bytes.Repeat([]byte{0xff}, ubootqemu.EnvSize)
	copy(disk[ubootqemu.EnvOffset:], erased)
	copy(disk[ubootqemu.EnvOffsetRedund:], erased)
	b.before = disk
	b.payload = make([]byte, payloadSize)
	rand.NewChaCha8([32]byte{2}).Read(b.payload)
	if err := os.WriteFile(b.disk, disk, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(b.tftpDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(b.tftpDir, "rootfs.img"), b.payload, 0o644); err != nil {
		t.Fatal(err)
	}
	qemu, err := ubootqemu.Start(context.Background(), ubootqemu.Config{UBoot: ub, Disk: b.disk, Network: true, ConsolePTY: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(qemu.Close)
	b.console = qemu.PTY
	return b
}

// recover runs aduflash recover against the board with a TFTP server on port.
func (b *brickedBoard) recover(t *testing.T, port int) (code int, stdout, stderr, log string) {
	t.Helper()
	logPath := filepath.Join(t.TempDir(), "console.log")
	script := writeScript(t, recoveryScript(b.payload, slotA/512))
	code, stdout, stderr = run(t, "recover", "--console", b.console, "--ipaddr", "10.0.2.15", "--serverip", "10.0.2.2",
		"--tftp-port", fmt.Sprint(port), "--script", script, "--up", "booting bank A", "--log", logPath, "--prompt-timeout", "1m")
	l, _ := os.ReadFile(logPath)
	return code, stdout, stderr, string(l)
}

// A bricked board comes back: the rootfs of bank A and a fresh environment written through
// the real U-Boot's console, the board reset and seen booting bank A; bank B untouched.
func TestRecoverBrickedBoard(t *testing.T) {
	b := newBrickedBoard(t, 3<<20)
	srv := tftptest.Start(t, b.tftpDir, nil)
	code, out, errOut, log := b.recover(t, srv.Port)
	if code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s\nlog:\n%s", code, out, errOut, log)
	}
	for _, want := range []string{"step network: ok", "step load rootfs A: ok", "step write rootfs A: ok", "step environment: ok", `recovered in`} {
		if !strings.Contains(out, want) {
			t.Errorf("stdout lacks %q:\n%s", want, out)
		}
	}
	for _, want := range []string{fmt.Sprintf("Bytes transferred = %d", len(b.payload)), "blocks written: OK", "booting bank A"} {
		if !strings.Contains(log, want) {
			t.Errorf("console log lacks %q", want)
		}
	}
	disk, err := os.ReadFile(b.disk)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(disk[slotA:slotA+len(b.payload)], b.payload) {
		t.Error("slot A does not hold the payload")
	}
	if !bytes.Equal(disk[slotA+len(b.payload):], b.before[slotA+len(b.payload):]) {
		t.Error("bytes past the payload changed (slot A's tail or slot B)")
	}
}

// A transfer damaged on the way: U-Boot's CRC-32 differs from the workstation's, so nothing
// is written (the card is byte for byte the bricked one) and recover exits 1 naming the image.
func TestRecoverCorruptedTransfer(t *testing.T) {
	b := newBrickedBoard(t, 1<<20)
	srv := tftptest.Start(t, b.tftpDir, map[string]int64{"rootfs.img": 123456})
	code, out, errOut, log := b.recover(t, srv.Port)
	if code != exitcode.Invalid {
		t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s\nlog:\n%s", code, exitcode.Invalid, out, errOut, log)
	}
	for _, want := range []string{`step "load rootfs A" (image rootfs.img)`, "check failed", "hash crc32"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr lacks %q: %s", want, errOut)
		}
	}
	if strings.Contains(log, "mmc write") || strings.Contains(log, "saveenv") {
		t.Error("commands after the failed check were typed")
	}
	disk, err := os.ReadFile(b.disk)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(disk, b.before) {
		t.Error("the card changed although the check failed")
	}
}

// openPTY returns a pseudo-terminal's master and its slave's path: a stand-in for a serial
// line whose other end the test plays.
func openPTY(t *testing.T) (*os.File, string) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals here: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetUint32(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	return m, fmt.Sprintf("/dev/pts/%d", n)
}

// A board whose U-Boot never shows a prompt (it prints garbage, or nothing): exit 3 with an
// error that names the console and what it saw.
func TestRecoverNoPrompt(t *testing.T) {
	for name, c := range map[string]struct{ garbage, want string }{
		"garbage": {"\x00\xfe Starting kernel ...\r\n", `last line: "`},
		"silent":  {"", "nothing received"},
	} {
		t.Run(name, func(t *testing.T) {
			m, pty := openPTY(t)
			go func() { // the board's side swallows what is typed
				buf := make([]byte, 256)
				for {
					if _, err := m.Read(buf); err != nil {
						return
					}
				}
			}()
			if c.garbage != "" {
				go func() { // and prints garbage until the test closes it
					tick := time.NewTicker(20 * time.Millisecond)
					defer tick.Stop()
					for range tick.C {
						if _, err := m.Write([]byte(c.garbage)); err != nil {
							return
						}
					}
				}()
			}
			script := writeScript(t, "# step: a\ntrue\n")
			code, _, errOut := run(t, "recover", "--console", pty, "--ipaddr", "dhcp", "--serverip", "10.0.2.2", "--script", script,
				"--prompt-timeout", "500ms", "--log", filepath.Join(t.TempDir(), "log"))
			if code != exitcode.IO {
				t.Fatalf("exit %d, want %d: %s", code, exitcode.IO, errOut)
			}
			for _, want := range []string{"no U-Boot prompt", pty, "500ms", c.want} {
				if !strings.Contains(errOut, want) {
					t.Errorf("stderr lacks %q: %s", want, errOut)
				}
			}
		})
	}
}

func TestRecoverBaud(t *testing.T) {
	script := writeScript(t, "# step: a\ntrue\n")
	code, _, errOut := run(t, "recover", "--console", "/dev/null", "--baud", "12345", "--ipaddr", "dhcp", "--serverip", "10.0.2.2", "--script", script)
	if code != exitcode.Usage || !strings.Contains(errOut, "unsupported baud rate: 12345") {
		t.Fatalf("exit %d, %q; want a usage error naming the rate", code, errOut)
	}
	code, _, errOut = run(t, "recover", "--console", "/dev/null", "--ipaddr", "dhcp", "--serverip", "10.0.2.2", "--script", script,
		"--log", filepath.Join(t.TempDir(), "log"))
	if code != exitcode.IO || !strings.Contains(errOut, "not a terminal") {
		t.Fatalf("exit %d, %q; want an I/O error: /dev/null is no serial line", code, errOut)
	}
}
