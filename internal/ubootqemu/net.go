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
// 256 MiB of RAM from 0x40000000 that Args gives otherwise, where a download crashes U-Boot
// ("Synchronous Abort"), so a board with Config.Network gets NetMemory.
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
