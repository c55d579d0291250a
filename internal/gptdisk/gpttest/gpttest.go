// Package gpttest builds the GPT disks of the tests that find banks by PARTLABEL or
// PARTUUID (slots, ubootscript, aduflash): the two root file system partitions rootfs_a and
// rootfs_b, on a disk image in memory or in a file.
package gpttest

import (
	"os"
	"testing"

	"github.com/aduflash/aduflash/internal/gptdisk"
)

// DiskUUID is the disk GUID of the test disks.
const DiskUUID = "0a0b0c0d-0e0f-1011-1213-141516171819"

// The PARTUUIDs of the banks' partitions.
const (
	UUIDA = "6e8c21a2-0c1a-4d3e-9f00-0000000000a1"
	UUIDB = "6e8c21a2-0c1a-4d3e-9f00-0000000000b2"
)

// Banks returns the banks' partitions: rootfs_a (entry 1) from block firstA and rootfs_b
// (entry 2) from block firstB, blocks blocks each.
func Banks(firstA, firstB, blocks uint64) []gptdisk.Partition {
	return []gptdisk.Partition{
		{Number: 1, Name: "rootfs_a", UUID: UUIDA, FirstLBA: firstA, LastLBA: firstA + blocks - 1},
		{Number: 2, Name: "rootfs_b", UUID: UUIDB, FirstLBA: firstB, LastLBA: firstB + blocks - 1},
	}
}

// Disk returns a disk image of size bytes (a multiple of gptdisk.BlockSize) with a GPT of
// 128 entries holding parts, zeros elsewhere.
func Disk(t testing.TB, size int64, parts []gptdisk.Partition) []byte {
	t.Helper()
	d := make(memDisk, size)
	if err := gptdisk.Write(d, uint64(size/gptdisk.BlockSize), DiskUUID, 128, parts); err != nil {
		t.Fatal(err)
	}
	return d
}

// WriteFile writes Disk(t, size, parts) to the file path.
func WriteFile(t testing.TB, path string, size int64, parts []gptdisk.Partition) {
	t.Helper()
	if err := os.WriteFile(path, Disk(t, size, parts), 0o644); err != nil {
		t.Fatal(err)
	}
}

type memDisk []byte

func (d memDisk) WriteAt(p []byte, off int64) (int, error) { return copy(d[off:], p), nil }
