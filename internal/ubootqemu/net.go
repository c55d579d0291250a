package ubootqemu

import (
	"os"
	"os/exec"
	"path/filepath"
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
