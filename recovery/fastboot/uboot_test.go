package fastboot_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aduflash/aduflash/internal/ubootqemu"
	"github.com/aduflash/aduflash/recovery/fastboot"
)

// The partitions of the SD card of the real-U-Boot tests: 4 MiB each, after the environment.
var (
	rootfsA = ubootqemu.Partition{Name: "rootfs_a", Start: 4096, Sectors: 8192}
	rootfsB = ubootqemu.Partition{Name: "rootfs_b", Start: 12288, Sectors: 8192}
)

// readPartition reads a partition back from the SD card's image file.
func readPartition(t *testing.T, disk string, p ubootqemu.Partition) []byte {
	t.Helper()
	f, err := os.Open(disk)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, p.Size())
	if _, err := f.ReadAt(b, p.Offset()); err != nil {
		t.Fatal(err)
	}
	return b
}

// TestRealUBoot runs the client against U-Boot 2023.01's `fastboot udp` under QEMU: its
// variables, a GPT partition flashed and read back from the card's image file, a download
// abandoned midway that flashes nothing and leaves U-Boot usable, a payload too large for
// the partition refused before a byte goes, and a reboot.
func TestRealUBoot(t *testing.T) {
	if testing.Short() {
		t.Skip("boots U-Boot under QEMU")
	}
	board := ubootqemu.StartFastboot(t, filepath.Join(t.TempDir(), "sd.img"), []ubootqemu.Partition{rootfsA, rootfsB})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := fastboot.Dial(ctx, board.Addr, fastboot.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	for name, want := range map[string]string{"version": "0.4", "max-download-size": "0x08000000", "partition-size:rootfs_a": "0x0000000000400000"} {
		if v, err := c.GetVar(ctx, name); err != nil || v != want {
			t.Fatalf("getvar %s = %q, %v; want %q", name, v, err, want)
		}
	}

	p := payload(1<<20 + 123)
	if err := c.Flash(ctx, rootfsA.Name, bytes.NewReader(p), int64(len(p))); err != nil {
		t.Fatal(err)
	}
	if got := readPartition(t, board.Disk, rootfsA); !bytes.Equal(got[:len(p)], p) {
		t.Fatal("rootfs_a on the card does not hold the payload")
	}

	bad := &failingReader{good: bytes.NewReader(p[:300<<10]), err: errBadChunk}
	if err := c.Flash(ctx, rootfsB.Name, bad, int64(len(p))); !errors.Is(err, fastboot.ErrAborted) || !errors.Is(err, errBadChunk) {
		t.Fatalf("a payload failing midway: %v, want ErrAborted around the reader's error", err)
	}
	if got := readPartition(t, board.Disk, rootfsB); !bytes.Equal(got, make([]byte, len(got))) {
		t.Fatal("rootfs_b was written from an abandoned download")
	}
	if v, err := c.GetVar(ctx, "version"); err != nil || v != "0.4" {
		t.Fatalf("after the abandoned download: getvar version = %q, %v", v, err)
	}

	downloads := strings.Count(board.Console(), "Starting download")
	big := payload(int(rootfsB.Size()) + 1)
	if err := c.Flash(ctx, rootfsB.Name, bytes.NewReader(big), int64(len(big))); !errors.Is(err, fastboot.ErrTooLarge) {
		t.Fatalf("a payload larger than rootfs_b: %v, want ErrTooLarge", err)
	}
	if n := strings.Count(board.Console(), "Starting download"); n != downloads {
		t.Fatal("U-Boot started a download of a payload too large for the partition")
	}

	if err := c.Reboot(ctx); err != nil {
		t.Fatal(err)
	}
	if err := board.Wait(ctx); err != nil {
		t.Fatalf("QEMU after the reboot: %v", err)
	}
	if !strings.Contains(board.Console(), "resetting ...") {
		t.Fatal("U-Boot did not reset")
	}
}
