package gptdisk

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aduflash/aduflash/internal/peers"
)

// memDisk is a disk image in memory.
type memDisk []byte

func (d memDisk) WriteAt(p []byte, off int64) (int, error) { return copy(d[off:], p), nil }

var testParts = []Partition{
	{Number: 1, Name: "rootfs_a", UUID: "6e8c21a2-0c1a-4d3e-9f00-0000000000a1", FirstLBA: 34, LastLBA: 41},
	{Number: 3, Name: "rootfs_b", UUID: "6E8C21A2-0C1A-4D3E-9F00-0000000000B2", FirstLBA: 42, LastLBA: 49},
}

// smallDisk is a 64-block disk with an 8-entry table and testParts.
func smallDisk(t testing.TB) []byte {
	t.Helper()
	d := make(memDisk, 64*BlockSize)
	if err := Write(d, 64, "0a0b0c0d-0e0f-1011-1213-141516171819", 8, testParts); err != nil {
		t.Fatal(err)
	}
	return d
}

func TestWriteRead(t *testing.T) {
	tab, err := Read(bytes.NewReader(smallDisk(t)))
	if err != nil {
		t.Fatal(err)
	}
	if tab.DiskUUID != "0a0b0c0d-0e0f-1011-1213-141516171819" || len(tab.Partitions) != 2 {
		t.Fatalf("table = %+v", tab)
	}
	b, err := tab.ByName("rootfs_b")
	if err != nil {
		t.Fatal(err)
	}
	want := Partition{Number: 3, Name: "rootfs_b", UUID: "6e8c21a2-0c1a-4d3e-9f00-0000000000b2", Type: LinuxFilesystem, FirstLBA: 42, LastLBA: 49}
	if b != want {
		t.Fatalf("ByName(rootfs_b) = %+v, want %+v", b, want)
	}
	if b.Offset() != 42*512 || b.Size() != 8*512 || b.Blocks() != 8 {
		t.Fatalf("offset %d size %d blocks %d", b.Offset(), b.Size(), b.Blocks())
	}
	if p, err := tab.ByUUID("6E8C21A2-0C1A-4D3E-9F00-0000000000A1"); err != nil || p.Name != "rootfs_a" {
		t.Fatalf("ByUUID = %+v, %v", p, err)
	}
	if p, err := tab.ByNumber(3); err != nil || p.Name != "rootfs_b" {
		t.Fatalf("ByNumber(3) = %+v, %v", p, err)
	}
	if _, err := tab.ByName("rootfs_c"); !errors.Is(err, ErrNoPartition) || !strings.Contains(err.Error(), `1 "rootfs_a", 3 "rootfs_b"`) {
		t.Fatalf("ByName(rootfs_c) = %v, want ErrNoPartition listing the partitions", err)
	}
}

func TestDuplicateNameIsNoPartition(t *testing.T) {
	parts := append([]Partition{}, testParts...)
	parts[1].Name = "rootfs_a"
	d := make(memDisk, 64*BlockSize)
	if err := Write(d, 64, "0a0b0c0d-0e0f-1011-1213-141516171819", 8, parts); err != nil {
		t.Fatal(err)
	}
	tab, err := Read(bytes.NewReader(d))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tab.ByName("rootfs_a"); !errors.Is(err, ErrNoPartition) || !strings.Contains(err.Error(), "partitions 1 and 3") {
		t.Fatalf("ByName of a name used twice = %v", err)
	}
}

func TestRefusesBrokenTables(t *testing.T) {
	for _, tc := range []struct {
		name   string
		break_ func(d []byte)
		want   string
	}{
		{"no signature", func(d []byte) { d[512] = 'X' }, "signature"},
		{"primary CRC", func(d []byte) { d[2*512+56] ^= 1 }, "CRC"},
		{"backup lost", func(d []byte) { clear(d[len(d)-512:]) }, "backup header"},
		// A huge entry size would make u-root allocate NPart × size before any CRC check.
		{"entry size", func(d []byte) { setHeader(d, 512, 84, 1<<30) }, "entry size"},
		{"backup entry size", func(d []byte) { setHeader(d, int64(len(d)-512), 84, 1<<30) }, "entry size"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := smallDisk(t)
			tc.break_(d)
			_, err := Read(bytes.NewReader(d))
			if !errors.Is(err, ErrNoGPT) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Read = %v, want ErrNoGPT naming %q", err, tc.want)
			}
		})
	}
}

// setHeader sets a 32-bit field of the header at off and fixes the header's CRC, so only the
// field is wrong.
func setHeader(d []byte, off int64, field int, v uint32) {
	h := d[off : off+92]
	binary.LittleEndian.PutUint32(h[field:], v)
	binary.LittleEndian.PutUint32(h[16:], 0)
	binary.LittleEndian.PutUint32(h[16:], crc32.ChecksumIEEE(h))
}

// TestAgainstSgdisk reads a table sgdisk (gdisk, not ours) wrote, and has sgdisk check a
// table we wrote.
func TestAgainstSgdisk(t *testing.T) {
	if _, err := exec.LookPath("sgdisk"); err != nil {
		peers.Missing(t, "sgdisk not found (apt-get install gdisk)")
		return
	}
	img := filepath.Join(t.TempDir(), "disk.img")
	if err := os.WriteFile(img, make([]byte, 4<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	sgdisk(t, "-o", "-U", "0a0b0c0d-0e0f-1011-1213-141516171819",
		"-n", "1:2048:+1M", "-c", "1:rootfs_a", "-u", "1:6e8c21a2-0c1a-4d3e-9f00-0000000000a1",
		"-n", "2:0:+512K", "-c", "2:rootfs b ü", "-u", "2:6e8c21a2-0c1a-4d3e-9f00-0000000000b2", "-t", "2:8300", img)
	f, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tab, err := Read(f)
	if err != nil {
		t.Fatal(err)
	}
	want := []Partition{
		{Number: 1, Name: "rootfs_a", UUID: "6e8c21a2-0c1a-4d3e-9f00-0000000000a1", Type: LinuxFilesystem, FirstLBA: 2048, LastLBA: 4095},
		{Number: 2, Name: "rootfs b ü", UUID: "6e8c21a2-0c1a-4d3e-9f00-0000000000b2", Type: LinuxFilesystem, FirstLBA: 4096, LastLBA: 5119},
	}
	if tab.DiskUUID != "0a0b0c0d-0e0f-1011-1213-141516171819" || len(tab.Partitions) != 2 || tab.Partitions[0] != want[0] || tab.Partitions[1] != want[1] {
		t.Fatalf("sgdisk's table read as %+v, want %+v", tab, want)
	}

	ours := filepath.Join(t.TempDir(), "ours.img")
	if err := os.WriteFile(ours, smallDisk(t), 0o644); err != nil {
		t.Fatal(err)
	}
	out := sgdisk(t, "-v", ours)
	if !strings.Contains(out, "No problems found") {
		t.Fatalf("sgdisk -v on our table:\n%s", out)
	}
	if out := sgdisk(t, "-i", "3", ours); !strings.Contains(out, "'rootfs_b'") || !strings.Contains(out, "6E8C21A2-0C1A-4D3E-9F00-0000000000B2") {
		t.Fatalf("sgdisk -i 3 on our table:\n%s", out)
	}
}

func sgdisk(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("sgdisk", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("sgdisk %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func FuzzRead(f *testing.F) {
	f.Add(smallDisk(f))
	f.Fuzz(func(t *testing.T, disk []byte) {
		tab, err := Read(bytes.NewReader(disk))
		if err != nil {
			if !errors.Is(err, ErrNoGPT) {
				t.Fatalf("error %v is not ErrNoGPT", err)
			}
			return
		}
		for _, p := range tab.Partitions {
			if p.Number < 1 || p.LastLBA < p.FirstLBA || p.Size() <= 0 {
				t.Fatalf("partition %+v", p)
			}
		}
	})
}
