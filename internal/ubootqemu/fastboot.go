package ubootqemu

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/aduflash/aduflash/bootloader/ubootenv"
	"github.com/aduflash/aduflash/internal/peers"
)

const (
	// FastbootBootcmd brings the net build up as a fastboot device: an address from QEMU's
	// DHCP (no file loaded after it), then fastboot over UDP.
	FastbootBootcmd = "setenv autoload no; dhcp; fastboot udp"
	// FastbootReady is what U-Boot prints once fastboot listens.
	FastbootReady = "Listening for fastboot command on"
)

// Partition is a GPT partition of a test disk: its name and extent in 512-byte sectors.
type Partition struct {
	Name           string
	Start, Sectors int64
}

// Offset and Size are the partition's extent in bytes.
func (p Partition) Offset() int64 { return p.Start * 512 }
func (p Partition) Size() int64   { return p.Sectors * 512 }

// FastbootBoard is the net build running `fastboot udp` on an SD card with a GPT, its port
// forwarded from the host's 127.0.0.1.
type FastbootBoard struct {
	*Session
	Addr string // 127.0.0.1:PORT
	Disk string
}

// StartFastboot makes disk (DefaultDiskSize) with a GPT of parts (made by sgdisk, Debian's
// gdisk) and an environment whose bootcmd is FastbootBootcmd, boots the net build on it with
// U-Boot's fastboot port forwarded from a free port of 127.0.0.1, and returns once U-Boot
// listens. The machine stops when the test ends. Missing peers skip the test
// (peers.Missing).
func StartFastboot(t testing.TB, disk string, parts []Partition) *FastbootBoard {
	t.Helper()
	ub := RequireNet(t)
	if _, err := exec.LookPath("sgdisk"); err != nil {
		peers.Missing(t, "sgdisk not found (apt-get install gdisk)")
	}
	if err := makeGPTDisk(disk, parts); err != nil {
		t.Fatal(err)
	}
	if err := writeBootcmd(disk, FastbootBootcmd); err != nil {
		t.Fatal(err)
	}
	port := freeUDPPort(t)
	log, flush := LogWriter(t, "u-boot| ")
	m, err := Start(context.Background(), Config{UBoot: ub, Disk: disk, Log: log,
		Network: true, HostForwards: []string{fmt.Sprintf("udp:127.0.0.1:%d-:%d", port, FastbootPort)}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close(); flush() })
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := m.WaitFor(ctx, FastbootReady, 0); err != nil {
		t.Fatal(err)
	}
	return &FastbootBoard{Session: m, Addr: fmt.Sprintf("127.0.0.1:%d", port), Disk: disk}
}

// makeGPTDisk creates the disk and its GPT with sgdisk; the partitions must leave the
// environment copies alone.
func makeGPTDisk(disk string, parts []Partition) error {
	if err := CreateDisk(disk, DefaultDiskSize); err != nil {
		return err
	}
	args := []string{"-o"}
	for i, p := range parts {
		if p.Offset() < EnvOffsetRedund+EnvSize || p.Offset()+p.Size() > DefaultDiskSize-34*512 {
			return fmt.Errorf("ubootqemu: partition %s (%d+%d bytes) overlaps the environment or the backup GPT", p.Name, p.Offset(), p.Size())
		}
		args = append(args, fmt.Sprintf("-n%d:%d:%d", i+1, p.Start, p.Start+p.Sectors-1), fmt.Sprintf("-c%d:%s", i+1, p.Name))
	}
	if out, err := exec.Command("sgdisk", append(args, disk)...).CombinedOutput(); err != nil {
		return fmt.Errorf("sgdisk: %v: %s", err, out)
	}
	return nil
}

// writeBootcmd writes copy 1 of the environment with bootcmd; copy 2 stays blank (its CRC
// fails), so U-Boot takes copy 1.
func writeBootcmd(disk, bootcmd string) error {
	blob, err := ubootenv.Encode([]ubootenv.Var{{Name: "bootdelay", Value: "0"}, {Name: "bootcmd", Value: bootcmd}},
		ubootenv.Format{Size: EnvSize, Redundant: true}, 1)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(disk, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	if _, err := f.WriteAt(blob, EnvOffset); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// freeUDPPort returns a UDP port of 127.0.0.1 that was free a moment ago.
func freeUDPPort(t testing.TB) int {
	l, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.LocalAddr().(*net.UDPAddr).Port
}
