// Package ubootqemu boots the real U-Boot of ../shared/peers/u-boot-qemu-ota (Debian's
// 2023.01 source built for QEMU's arm64 virt machine with CONFIG_BOOTCOUNT_LIMIT,
// CONFIG_BOOTCOUNT_ENV and a redundant environment at raw offsets of an SD card) under
// qemu-system-aarch64, so tests can write an environment into a disk image, let U-Boot run
// its bootcmd (and its bootcount/altbootcmd logic), and read back what U-Boot saved.
//
// u-boot-net.bin, the same board with DHCP, TFTP, fastboot over UDP, crc32 and hash, boots
// the same way with Config.Network set.
//
// The environment's bootcmd decides what a boot does; end it with "poweroff" so that QEMU
// exits, or print a marker and set Config.Marker so that QEMU is stopped when it appears.
//
// Host packages (Debian): qemu-system-arm; the tests also use u-boot-tools (mkenvimage)
// and libubootenv-tool (fw_printenv).
package ubootqemu

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aduflash/aduflash/internal/peers"
)

// Where this U-Boot build keeps its environment (the peer's uboot-build-ota.sh, VARIANT=mmc):
// CONFIG_ENV_IS_IN_MMC, CONFIG_SYS_REDUNDAND_ENVIRONMENT, CONFIG_SYS_MMC_ENV_DEV=0 (the
// sd-card on QEMU's sdhci-pci controller), counter-style redundancy flags (each save writes
// the other copy with flags = previous + 1).
const (
	EnvOffset       = 0x100000 // CONFIG_ENV_OFFSET: copy 1, bytes from the start of the disk
	EnvOffsetRedund = 0x120000 // CONFIG_ENV_OFFSET_REDUND: copy 2
	EnvSize         = 0x20000  // CONFIG_ENV_SIZE: each copy, CRC32 + flags byte included
	MMCEnvDev       = 0        // CONFIG_SYS_MMC_ENV_DEV
	// DefaultDiskSize is a size QEMU's sd-card accepts (it wants a power of two) with room
	// for both copies.
	DefaultDiskSize = 16 << 20
)

// UBootTOML is the [uboot] section of a device config for this board: images load into RAM
// at 0x40400000 (above U-Boot's own use of the virt machine's RAM from 0x40000000), and the
// SD card is mmc 0.
const UBootTOML = `[uboot]
load_addr = 0x40400000
load_size = "128MiB"
mmc_dev = 0
`

// EnvLayout describes where the environment copies live on the disk image.
type EnvLayout struct {
	Offset, OffsetRedund int64 // copy 1 and copy 2, bytes from the start of the disk
	Size                 int64 // bytes per copy: [CRC32 LE][flags][data...]
	MMCDev               int   // U-Boot's mmc device number of the card
	CounterFlags         bool  // true: counter flags (MMC/NAND style); false: NOR's boolean flags
}

// Layout returns the environment layout of the peer's SD-card build.
func Layout() EnvLayout {
	return EnvLayout{Offset: EnvOffset, OffsetRedund: EnvOffsetRedund, Size: EnvSize, MMCDev: MMCEnvDev, CounterFlags: true}
}

// FwEnvConfig returns the fw_env.config text (libubootenv: "DEVICE OFFSET SIZE" per copy)
// that makes fw_printenv/fw_setenv read and write the environment of disk.
func FwEnvConfig(disk string) string {
	l := Layout()
	return fmt.Sprintf("%s %#x %#x\n%s %#x %#x\n", disk, l.Offset, l.Size, disk, l.OffsetRedund, l.Size)
}

// CreateDisk creates (or truncates to zero and regrows) a sparse raw disk image of size
// bytes; size must be a power of two of at least 2 MiB because QEMU's sd-card requires it.
func CreateDisk(path string, size int64) error {
	if size < 2<<20 || size&(size-1) != 0 {
		return fmt.Errorf("ubootqemu: disk size %d is not a power of two >= 2 MiB (QEMU's sd-card needs that)", size)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := f.Truncate(size); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// PeerUBoot returns the path of ../shared/peers/u-boot-qemu-ota/u-boot.bin, or of
// $ADUFLASH_UBOOT_BIN when set, or "" when neither exists.
func PeerUBoot() string { return peerBuild("ADUFLASH_UBOOT_BIN", "u-boot.bin") }

// PeerUBootNet returns the path of the network build beside it, u-boot-net.bin (the same
// board and env layout, plus DHCP, TFTP with a settable server port, fastboot over UDP,
// crc32 and hash), or of $ADUFLASH_UBOOT_NET_BIN when set, or "" when neither exists. Boot
// it with Config.Network set.
func PeerUBootNet() string { return peerBuild("ADUFLASH_UBOOT_NET_BIN", "u-boot-net.bin") }

func peerBuild(env, name string) string {
	if p := os.Getenv(env); p != "" {
		if _, err := os.Stat(p); err == nil {
			return p
		}
		return ""
	}
	shared := peers.SharedDir()
	if shared == "" {
		return ""
	}
	p := filepath.Join(shared, "peers", "u-boot-qemu-ota", name)
	if _, err := os.Stat(p); err != nil {
		return ""
	}
	return p
}

// QEMUBinary is the emulator Boot runs.
const QEMUBinary = "qemu-system-aarch64"

// Require returns the peer u-boot.bin, or calls peers.Missing when it or
// qemu-system-aarch64 (Debian package qemu-system-arm) is absent.
func Require(t testing.TB) string {
	t.Helper()
	return require(t, PeerUBoot(), "U-Boot build not found: ../shared/peers/u-boot-qemu-ota/u-boot.bin (or $ADUFLASH_UBOOT_BIN)")
}

// RequireNet returns the peer u-boot-net.bin, or calls peers.Missing when it or
// qemu-system-aarch64 is absent.
func RequireNet(t testing.TB) string {
	t.Helper()
	return require(t, PeerUBootNet(), "U-Boot network build not found: ../shared/peers/u-boot-qemu-ota/u-boot-net.bin (or $ADUFLASH_UBOOT_NET_BIN)")
}

// require returns the U-Boot build ub, or calls peers.Missing (saying missing when ub is "")
// when it or QEMU is absent.
func require(t testing.TB, ub, missing string) string {
	t.Helper()
	if _, err := exec.LookPath(QEMUBinary); err != nil {
		peers.Missing(t, "%s not found (apt-get install qemu-system-arm)", QEMUBinary)
		return ""
	}
	if ub == "" {
		peers.Missing(t, "%s", missing)
		return ""
	}
	return ub
}

// Config is one boot.
type Config struct {
	UBoot string // u-boot.bin (PeerUBoot or Require)
	Disk  string // raw SD image, size a power of two (CreateDisk); U-Boot's mmc 0
	// Timeout bounds the boot (default 60 s); ctx can end it earlier.
	Timeout time.Duration
	// Marker, when set, ends the boot as soon as the console contains it: QEMU is stopped
	// and Boot returns without error. Without it Boot waits until QEMU exits (the env's
	// bootcmd ends with "poweroff").
	Marker string
	// Log, when set, receives the console as it arrives (e.g. a writer around t.Log).
	Log io.Writer
	// ExtraArgs are appended to QEMU's command line.
	ExtraArgs []string
	// Network gives the board QEMU's user network (a virtio-net card; DHCP gives it 10.0.2.15
	// and the host's 127.0.0.1 is 10.0.2.2 to the guest) and NetMemory of RAM: for
	// u-boot-net.bin (PeerUBootNet). Without it the board has none.
	Network bool
	// HostForwards are QEMU hostfwd rules of the user network, e.g.
	// "udp:127.0.0.1:PORT-:5554" for U-Boot's fastboot (with Network).
	HostForwards []string
	// ConsolePTY puts the console on a pseudo-terminal instead of QEMU's standard input and
	// output (Start: Session.PTY), and lets a reset reboot the board.
	ConsolePTY bool
}

// ErrPrompt is returned (wrapped) when U-Boot reaches its interactive prompt: the bootcmd
// returned instead of powering off, and nobody will type anything.
var ErrPrompt = errors.New("ubootqemu: U-Boot reached its command prompt (bootcmd returned without poweroff)")

// ErrTimeout is returned (wrapped) when the boot did not finish in time.
var ErrTimeout = errors.New("ubootqemu: boot timed out")

// Args returns QEMU's command line (without the binary) for cfg, as the peer's
// uboot-mmc-bootcount.sh runs it.
func Args(cfg Config) []string {
	nic, mem := "none", "256"
	if cfg.Network {
		nic, mem = "user,model=virtio-net-pci", NetMemory
		for _, f := range cfg.HostForwards {
			nic += ",hostfwd=" + f
		}
	}
	console := []string{"-nographic", "-no-reboot"}
	if cfg.ConsolePTY {
		console = []string{"-display", "none", "-monitor", "none", "-serial", "pty"}
	}
	args := append([]string{
		"-M", "virt", "-cpu", "cortex-a57", "-m", mem,
		"-nic", nic}, console...)
	args = append(args,
		"-bios", cfg.UBoot,
		"-device", "sdhci-pci",
		// not id=sd0: that clashes with the bus QEMU names itself
		"-drive", "if=none,id=card,file="+cfg.Disk+",format=raw",
		"-device", "sd-card,drive=card",
	)
	return append(args, cfg.ExtraArgs...)
}

// Boot runs U-Boot once and returns its console (carriage returns removed). It returns an
// error when QEMU cannot start or fails, on timeout (ErrTimeout), or when U-Boot stops at its
// prompt (ErrPrompt); the console gathered so far is returned in every case.
func Boot(ctx context.Context, cfg Config) (string, error) {
	if cfg.UBoot == "" || cfg.Disk == "" {
		return "", errors.New("ubootqemu: Config.UBoot and Config.Disk are required")
	}
	if st, err := os.Stat(cfg.Disk); err != nil {
		return "", err
	} else if sz := st.Size(); sz&(sz-1) != 0 || sz == 0 {
		return "", fmt.Errorf("ubootqemu: disk %s is %d bytes; QEMU's sd-card wants a power of two", cfg.Disk, sz)
	}
	timeout := cfg.Timeout
	if timeout <= 0 {
		timeout = 60 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	cmd := exec.CommandContext(ctx, QEMUBinary, Args(cfg)...)
	cmd.Stdin = nil
	cmd.WaitDelay = 5 * time.Second
	pr, pw := io.Pipe()
	cmd.Stdout = pw
	cmd.Stderr = pw
	if err := cmd.Start(); err != nil {
		return "", fmt.Errorf("ubootqemu: start %s: %w", QEMUBinary, err)
	}

	var (
		mu       sync.Mutex
		console  bytes.Buffer
		why      error // set by the reader when it stopped QEMU on purpose
		sawMark  bool
		readDone = make(chan struct{})
	)
	go func() {
		defer close(readDone)
		readConsole(pr, cfg.Log, func(chunk []byte) {
			mu.Lock()
			defer mu.Unlock()
			console.Write(chunk)
			s := console.Bytes()
			if cfg.Marker != "" && !sawMark && bytes.Contains(s, []byte(cfg.Marker)) {
				sawMark = true
				cancel()
			} else if why == nil && !sawMark && bytes.HasSuffix(s, []byte("\n=> ")) {
				why = ErrPrompt
				cancel()
			}
		})
	}()
	werr := cmd.Wait()
	pw.Close()
	<-readDone

	mu.Lock()
	defer mu.Unlock()
	out := console.String()
	switch {
	case sawMark:
		return out, nil
	case why != nil:
		return out, why
	case ctx.Err() != nil:
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return out, fmt.Errorf("%w after %v", ErrTimeout, timeout)
		}
		return out, ctx.Err()
	case werr != nil:
		return out, fmt.Errorf("ubootqemu: %s: %w", QEMUBinary, werr)
	}
	if cfg.Marker != "" {
		return out, fmt.Errorf("ubootqemu: QEMU exited before the marker %q appeared", cfg.Marker)
	}
	return out, nil
}

// LogWriter returns an io.Writer that sends complete lines to t.Log (for Config.Log). Call
// its Flush (via the returned func) before the test ends to log a trailing partial line.
func LogWriter(t testing.TB, prefix string) (io.Writer, func()) {
	lw := &lineLogger{t: t, prefix: prefix}
	return lw, lw.flush
}

type lineLogger struct {
	t      testing.TB
	prefix string
	mu     sync.Mutex
	buf    []byte
}

func (l *lineLogger) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf = append(l.buf, p...)
	for {
		i := bytes.IndexByte(l.buf, '\n')
		if i < 0 {
			break
		}
		l.t.Log(l.prefix + strings.TrimRight(string(l.buf[:i]), "\r"))
		l.buf = l.buf[i+1:]
	}
	return len(p), nil
}

func (l *lineLogger) flush() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.buf) > 0 {
		l.t.Log(l.prefix + string(l.buf))
		l.buf = nil
	}
}
