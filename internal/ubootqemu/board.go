package ubootqemu

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/aduflash/aduflash/internal/peers"
)

// PeerUBootNet returns the path of ../shared/peers/u-boot-qemu-ota/u-boot-net.bin (the same
// board with DHCP, TFTP with a settable server port, crc32/hash and fastboot over UDP), or of
// $ADUFLASH_UBOOT_NET_BIN when set, or "" when neither exists.
func PeerUBootNet() string {
	if p := os.Getenv("ADUFLASH_UBOOT_NET_BIN"); p != "" {
		if _, err := os.Stat(p); err == nil {
			return p
		}
		return ""
	}
	shared := peers.SharedDir()
	if shared == "" {
		return ""
	}
	p := filepath.Join(shared, "peers", "u-boot-qemu-ota", "u-boot-net.bin")
	if _, err := os.Stat(p); err != nil {
		return ""
	}
	return p
}

// RequireNet returns the peer u-boot-net.bin, or calls peers.Missing when it or
// qemu-system-aarch64 is absent.
func RequireNet(t testing.TB) string {
	t.Helper()
	if _, err := exec.LookPath(QEMUBinary); err != nil {
		peers.Missing(t, "%s not found (apt-get install qemu-system-arm)", QEMUBinary)
		return ""
	}
	ub := PeerUBootNet()
	if ub == "" {
		peers.Missing(t, "U-Boot build not found: ../shared/peers/u-boot-qemu-ota/u-boot-net.bin (or $ADUFLASH_UBOOT_NET_BIN)")
		return ""
	}
	return ub
}

// Board is a U-Boot under QEMU whose console is a pseudo-terminal, opened by the program
// under test as it would open a board's serial line; with user networking, where the guest
// reaches the host's 127.0.0.1 as 10.0.2.2. Resets reboot the board (QEMU runs on); a
// poweroff ends QEMU.
type Board struct {
	// Console is the pty's path (/dev/pts/N).
	Console string
	cmd     *exec.Cmd
	done    chan struct{}
}

// StartBoard starts QEMU with cfg's U-Boot (RequireNet) and disk, the console on a pty and
// user networking (cfg.Timeout, Marker and Log do not apply). Stop it with Stop; t.Cleanup
// is a good place.
func StartBoard(ctx context.Context, cfg Config) (*Board, error) {
	if cfg.UBoot == "" || cfg.Disk == "" {
		return nil, errors.New("ubootqemu: Config.UBoot and Config.Disk are required")
	}
	args := []string{
		"-M", "virt", "-cpu", "cortex-a57", "-m", "256",
		"-display", "none", "-monitor", "none", "-serial", "pty",
		"-nic", "user,model=virtio-net-pci",
		"-bios", cfg.UBoot,
		"-device", "sdhci-pci",
		"-drive", "if=none,id=card,file=" + cfg.Disk + ",format=raw",
		"-device", "sd-card,drive=card",
	}
	cmd := exec.CommandContext(ctx, QEMUBinary, append(args, cfg.ExtraArgs...)...)
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("ubootqemu: start %s: %w", QEMUBinary, err)
	}
	b := &Board{cmd: cmd, done: make(chan struct{})}
	pty, rest, err := findPTY(out)
	if err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		return nil, err
	}
	b.Console = pty
	go func() {
		io.Copy(io.Discard, rest)
		cmd.Wait()
		close(b.done)
	}()
	return b, nil
}

var ptyLine = regexp.MustCompile(`char device redirected to (/dev/pts/\d+)`)

// findPTY reads QEMU's output until it names the console's pty.
func findPTY(out io.Reader) (string, io.Reader, error) {
	br := bufio.NewReader(out)
	var seen []string
	for {
		line, err := br.ReadString('\n')
		if m := ptyLine.FindStringSubmatch(line); m != nil {
			return m[1], br, nil
		}
		seen = append(seen, line)
		if err != nil {
			return "", nil, fmt.Errorf("ubootqemu: QEMU named no console pty: %v: %q", err, seen)
		}
	}
}

// Done is closed when QEMU has exited (poweroff, Stop, or a failure).
func (b *Board) Done() <-chan struct{} { return b.done }

// Stop ends QEMU (if it still runs) and waits for it.
func (b *Board) Stop() {
	select {
	case <-b.done:
		return
	default:
	}
	b.cmd.Process.Kill()
	<-b.done
}
