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

	"github.com/aduflash/aduflash/internal/peers"
)

// The net build of the peer (VARIANT=net of uboot-build-ota.sh): everything of u-boot.bin plus
// DHCP, TFTP and fastboot over UDP on port 5554 writing to mmc 0. Its fastboot download
// buffer lies at 0x50000000 and is 128 MiB (CONFIG_FASTBOOT_BUF_ADDR, _SIZE): beyond the
// 256 MiB of RAM from 0x40000000 that Args gives, where a download crashes U-Boot
// ("Synchronous Abort"), so UserNet asks for NetMemory.
const (
	NetMemory = "512" // MiB, -m
	// FastbootPort is the UDP port of U-Boot's fastboot (CONFIG_UDP_FUNCTION_FASTBOOT_PORT).
	FastbootPort = 5554
)

// PeerUBootNet returns the path of ../shared/peers/u-boot-qemu-ota/u-boot-net.bin, or of
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
// qemu-system-aarch64 (Debian package qemu-system-arm) is absent.
func RequireNet(t testing.TB) string {
	t.Helper()
	if _, err := exec.LookPath(QEMUBinary); err != nil {
		peers.Missing(t, "%s not found (apt-get install qemu-system-arm)", QEMUBinary)
		return ""
	}
	ub := PeerUBootNet()
	if ub == "" {
		peers.Missing(t, "U-Boot net build not found: ../shared/peers/u-boot-qemu-ota/u-boot-net.bin (or $ADUFLASH_UBOOT_NET_BIN)")
	}
	return ub
}

// UserNet returns the QEMU arguments (for Config.ExtraArgs, after Args' "-nic none" and
// "-m 256", which they override) for a virtio NIC on QEMU's user network, where DHCP gives
// the guest 10.0.2.15 and the guest reaches the host's 127.0.0.1 as 10.0.2.2, with host
// forwards such as "udp:127.0.0.1:PORT-:5554", and NetMemory of RAM.
func UserNet(hostfwd ...string) []string {
	nic := "user,model=virtio-net-pci"
	for _, f := range hostfwd {
		nic += ",hostfwd=" + f
	}
	return []string{"-m", NetMemory, "-nic", nic}
}

// Machine is a U-Boot under QEMU that runs in the background (Start) while a test talks to
// it over the network, until it exits (a reset with Args' -no-reboot) or Stop.
type Machine struct {
	cmd    *exec.Cmd
	cancel context.CancelFunc
	log    io.Writer
	exited chan struct{}

	mu      sync.Mutex
	console bytes.Buffer
	changed chan struct{} // closed at every console change
	err     error         // QEMU's exit, once exited is closed
}

// Start runs QEMU for cfg (Config.Marker and Config.Timeout are not used: WaitFor waits, ctx
// bounds the machine's life).
func Start(ctx context.Context, cfg Config) (*Machine, error) {
	if cfg.UBoot == "" || cfg.Disk == "" {
		return nil, errors.New("ubootqemu: Config.UBoot and Config.Disk are required")
	}
	ctx, cancel := context.WithCancel(ctx)
	m := &Machine{cancel: cancel, log: cfg.Log, exited: make(chan struct{}), changed: make(chan struct{})}
	m.cmd = exec.CommandContext(ctx, QEMUBinary, Args(cfg)...)
	m.cmd.Stdout, m.cmd.Stderr = m, m
	if err := m.cmd.Start(); err != nil {
		cancel()
		return nil, fmt.Errorf("ubootqemu: start %s: %w", QEMUBinary, err)
	}
	go func() {
		err := m.cmd.Wait()
		m.mu.Lock()
		m.err = err
		m.mu.Unlock()
		close(m.exited)
	}()
	return m, nil
}

// Write takes QEMU's output: the console, carriage returns removed.
func (m *Machine) Write(p []byte) (int, error) {
	chunk := bytes.ReplaceAll(p, []byte("\r"), nil)
	if m.log != nil {
		m.log.Write(chunk)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.console.Write(chunk)
	close(m.changed)
	m.changed = make(chan struct{})
	return len(p), nil
}

// Console returns the console so far.
func (m *Machine) Console() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.console.String()
}

// WaitFor returns once the console holds marker; an error when QEMU exits before or ctx
// ends.
func (m *Machine) WaitFor(ctx context.Context, marker string) error {
	for {
		m.mu.Lock()
		found, changed := strings.Contains(m.console.String(), marker), m.changed
		m.mu.Unlock()
		if found {
			return nil
		}
		select {
		case <-changed:
		case <-m.exited:
			if strings.Contains(m.Console(), marker) {
				return nil
			}
			return fmt.Errorf("ubootqemu: QEMU exited (%v) before %q appeared", m.exitErr(), marker)
		case <-ctx.Done():
			return fmt.Errorf("ubootqemu: waiting for %q: %w", marker, ctx.Err())
		}
	}
}

// Wait waits until QEMU exits (or ctx ends) and returns its exit error.
func (m *Machine) Wait(ctx context.Context) error {
	select {
	case <-m.exited:
		return m.exitErr()
	case <-ctx.Done():
		return fmt.Errorf("ubootqemu: waiting for QEMU to exit: %w", ctx.Err())
	}
}

// Stop kills QEMU (if it still runs) and waits for it.
func (m *Machine) Stop() {
	m.cancel()
	<-m.exited
}

func (m *Machine) exitErr() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.err
}
