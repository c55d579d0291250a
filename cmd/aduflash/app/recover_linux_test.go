package app

import (
	"bytes"
	"context"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/aduflash/aduflash/bootloader/ubootenv"
	"github.com/aduflash/aduflash/cmd/internal/cliapp"
	"github.com/aduflash/aduflash/cmd/internal/clitest"
	"github.com/aduflash/aduflash/cmd/internal/exitcode"
	"github.com/aduflash/aduflash/image"
	"github.com/aduflash/aduflash/image/testkey"
	"github.com/aduflash/aduflash/internal/gptdisk/gpttest"
	"github.com/aduflash/aduflash/internal/testpayload"
	"github.com/aduflash/aduflash/internal/ubootqemu"
	"github.com/aduflash/aduflash/slots/slotstest"
)

// The QEMU board's SD card: the redundant environment at 1 MiB and 1.125 MiB, then a GPT with
// the banks' root file systems from 2 MiB on, each half of the rest (less 1 MiB for the backup
// GPT), in whole MiB.
const (
	slotA       = 2 << 20 // rootfs_a's first byte
	bootedBankA = "booting bank A"
)

func slotSize(disk int64) int64 { return (disk - slotA - 1<<20) / 2 &^ (1<<20 - 1) }

// boardTOML is the QEMU board's device config: the banks by GPT label, the RAM U-Boot loads
// into, and a bootcmd for the fresh environment that says which bank it boots, then powers
// off (the board has no kernel to boot).
const boardTOML = `[slots]
banks = ["A", "B"]
` + slotstest.RootfsA + slotstest.RootfsB + `
` + ubootqemu.UBootTOML + `
[uboot.env]
bootcmd = "echo booting bank ${adu_slot}; poweroff"

[bootloader]
type = "u-boot"
preset = "aduflash"
`

// brickedBoard is the QEMU board with a bricked SD card: both rootfs slots garbage, both
// environment copies erased (U-Boot starts with its built-in environment, whose bootcmd
// tries a network boot); and a signed image of a root file system to recover it with.
type brickedBoard struct {
	uboot, disk, console, dir, config, pub, image string
	diskSize                                      int64
	payload, before                               []byte
	qemu                                          *ubootqemu.Session
}

// newBrickedBoard makes the signed image of a payload of payloadSize random bytes and the
// board's config; boot starts the board on a bricked card of diskSize bytes.
func newBrickedBoard(t testing.TB, payloadSize int, diskSize int64) *brickedBoard {
	t.Helper()
	if testing.Short() {
		t.Skip("QEMU test; skipped under -short")
	}
	dir := t.TempDir()
	b := &brickedBoard{uboot: ubootqemu.RequireNet(t), dir: dir, disk: filepath.Join(dir, "sd.img"), diskSize: diskSize,
		config: filepath.Join(dir, "board.toml"), pub: filepath.Join(dir, "release.pub.pem"), image: filepath.Join(dir, "rootfs.aduimg")}
	b.payload = make([]byte, payloadSize)
	mrand.NewChaCha8([32]byte{2}).Read(b.payload)
	b.signImage(t)
	if err := os.WriteFile(b.config, []byte(boardTOML), 0o644); err != nil {
		t.Fatal(err)
	}
	return b
}

// boot writes the bricked card and starts the board with its console on a pty; the board
// stops when the test ends, or at stop.
func (b *brickedBoard) boot(t testing.TB) {
	t.Helper()
	b.writeDisk(t)
	qemu, err := ubootqemu.Start(context.Background(), ubootqemu.Config{UBoot: b.uboot, Disk: b.disk, Network: true, ConsolePTY: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(qemu.Close)
	b.qemu, b.console = qemu, qemu.PTY
}

func (b *brickedBoard) stop() { b.qemu.Close() }

// writeDisk makes the card: the GPT, garbage in both slots, both env copies erased.
func (b *brickedBoard) writeDisk(t testing.TB) {
	size, slotB := slotSize(b.diskSize), slotA+slotSize(b.diskSize)
	disk := gpttest.Disk(t, b.diskSize, gpttest.Banks(slotA/512, uint64(slotB)/512, uint64(size)/512))
	mrand.NewChaCha8([32]byte{1}).Read(disk[slotA : slotB+size])
	erased := bytes.Repeat([]byte{0xff}, ubootqemu.EnvSize)
	copy(disk[ubootqemu.EnvOffset:], erased)
	copy(disk[ubootqemu.EnvOffsetRedund:], erased)
	b.before = disk
	if err := os.WriteFile(b.disk, disk, 0o644); err != nil {
		t.Fatal(err)
	}
}

// signImage signs the payload as an aduimg of the rootfs class and writes the public key.
func (b *brickedBoard) signImage(t testing.TB) {
	key, _ := testkey.New(t)
	if err := os.WriteFile(b.pub, testkey.PEM(t, key), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(b.image)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, _, err := image.Sign(f, bytes.NewReader(b.payload), int64(len(b.payload)), key, image.SignOptions{
		Version: "1.2.0", SlotClass: "rootfs", Compression: image.CompressZstd, Created: time.Unix(1e9, 0)}); err != nil {
		t.Fatal(err)
	}
}

// args are aduflash recover's arguments for the board: the TFTP server on a free port of
// 127.0.0.1, reached by the board as 10.0.2.2.
func (b *brickedBoard) args(log string) []string {
	return []string{"recover", "--config", b.config, "--pub", b.pub, "--gpt", b.disk, "--console", b.console,
		"--ipaddr", "10.0.2.15", "--serverip", "10.0.2.2", "--listen", "127.0.0.1:0",
		"--up", bootedBankA, "--log", log, "--prompt-timeout", "1m", b.image}
}

// recover runs aduflash recover against the board; tamper, if set, changes what its TFTP
// server sends.
func (b *brickedBoard) recover(t testing.TB, tamper func(string, io.Reader) io.Reader) (code int, stdout, stderr, log string) {
	t.Helper()
	logPath := filepath.Join(t.TempDir(), "console.log")
	main := func(ctx context.Context, args []string, stdout, stderr io.Writer) int {
		return cliapp.Run(ctx, newApp(&env{stdout: stdout, stderr: stderr, tamper: tamper}), args, stderr)
	}
	code, stdout, stderr = clitest.Run(context.Background(), main, "aduflash", b.args(logPath)...)
	l, _ := os.ReadFile(logPath)
	return code, stdout, stderr, string(l)
}

// A bricked board comes back: the rootfs of bank A and a fresh environment written through
// the real U-Boot's console with the images served by recover itself, the board reset and
// seen booting bank A; slot A holds the payload, bank B and the GPT are untouched, and both
// environment copies hold the fresh environment with bank A primary.
func TestRecoverBrickedBoard(t *testing.T) {
	b := newBrickedBoard(t, 3<<20+100, ubootqemu.DefaultDiskSize)
	b.boot(t)
	code, out, errOut, log := b.recover(t, nil)
	if code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s\nlog:\n%s", code, out, errOut, log)
	}
	for _, want := range []string{"step network: ok", "step locate rootfs-a: ok", "step load rootfs-a: ok", "step check rootfs-a: ok",
		"step write rootfs-a: ok", "step verify rootfs-a: ok", "step env: ok", "recovered in"} {
		if !strings.Contains(out, want) {
			t.Errorf("stdout lacks %q:\n%s", want, out)
		}
	}
	for _, want := range []string{fmt.Sprintf("Bytes transferred = %d", len(b.payload)), "aduflash: ok: check rootfs-a",
		"blocks written: OK", bootedBankA, "msg=request", "file=rootfs.aduimg", "msg=sent"} {
		if !strings.Contains(log, want) {
			t.Errorf("console log lacks %q", want)
		}
	}
	disk, err := os.ReadFile(b.disk)
	if err != nil {
		t.Fatal(err)
	}
	end := slotA + len(b.payload)
	if !bytes.Equal(disk[slotA:end], b.payload) {
		t.Error("slot A does not hold the payload")
	}
	if pad := (512 - end%512) % 512; !bytes.Equal(disk[end:end+pad], make([]byte, pad)) || !bytes.Equal(disk[end+pad:], b.before[end+pad:]) {
		t.Error("bytes past the payload's last block changed (slot B, the backup GPT), or its tail is not zeros")
	}
	if !bytes.Equal(disk[:ubootqemu.EnvOffset], b.before[:ubootqemu.EnvOffset]) {
		t.Error("the GPT changed")
	}
	for i, off := range []int64{ubootqemu.EnvOffset, ubootqemu.EnvOffsetRedund} {
		blk, err := ubootenv.Decode(disk[off:off+ubootqemu.EnvSize], ubootenv.Format{Size: ubootqemu.EnvSize, Redundant: true})
		if err != nil {
			t.Fatalf("env copy %d: %v", i+1, err)
		}
		vars := map[string]string{}
		for _, v := range blk.Vars {
			vars[v.Name] = v.Value
		}
		if vars["adu_slot"] != "A" || vars["upgrade_available"] != "0" || !strings.HasPrefix(vars["bootcmd"], "echo booting bank") {
			t.Errorf("env copy %d: adu_slot=%q upgrade_available=%q bootcmd=%q", i+1, vars["adu_slot"], vars["upgrade_available"], vars["bootcmd"])
		}
	}
}

// A transfer damaged on the way (the server flips a byte after it was verified): U-Boot's
// SHA-256 differs from the catalog's, so nothing is written (the card is byte for byte the
// bricked one) and recover exits 1 naming the image.
func TestRecoverCorruptedTransfer(t *testing.T) {
	b := newBrickedBoard(t, 1<<20, ubootqemu.DefaultDiskSize)
	b.boot(t)
	flip := func(name string, r io.Reader) io.Reader { return testpayload.Flip(r, 123456) }
	code, out, errOut, log := b.recover(t, flip)
	if code != exitcode.Invalid {
		t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s\nlog:\n%s", code, exitcode.Invalid, out, errOut, log)
	}
	for _, want := range []string{`step "check rootfs-a" (image rootfs.aduimg)`, "check failed",
		"rootfs.aduimg differs from what the workstation serves (sha256); nothing written"} {
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
	fx, disk := scriptFixture(t)
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
			code, _, errOut := run(t, "recover", "--config", fx.cfg, "--pub", fx.pub, "--gpt", disk, "--console", pty,
				"--ipaddr", "dhcp", "--serverip", "10.0.2.2", "--listen", "127.0.0.1:0", "--prompt-timeout", "500ms",
				"--log", filepath.Join(t.TempDir(), "log"), fx.img)
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
	fx, disk := scriptFixture(t)
	args := []string{"recover", "--config", fx.cfg, "--pub", fx.pub, "--gpt", disk, "--console", "/dev/null",
		"--ipaddr", "dhcp", "--serverip", "10.0.2.2", "--listen", "127.0.0.1:0", "--log", filepath.Join(t.TempDir(), "log")}
	code, _, errOut := run(t, append(args, "--baud", "12345", fx.img)...)
	if code != exitcode.Usage || !strings.Contains(errOut, "unsupported baud rate: 12345") {
		t.Fatalf("exit %d, %q; want a usage error naming the rate", code, errOut)
	}
	code, _, errOut = run(t, append(args, fx.img)...)
	if code != exitcode.IO || !strings.Contains(errOut, "not a terminal") {
		t.Fatalf("exit %d, %q; want an I/O error: /dev/null is no serial line", code, errOut)
	}
}
