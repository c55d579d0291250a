package slots

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aduflash/aduflash/internal/gptdisk/gpttest"
	"github.com/aduflash/aduflash/slots/slotstest"
)

// gptDiskParts are the banks' partitions of the test disks: 4 MiB each at 1 MiB and 5 MiB.
var gptDiskParts = gpttest.Banks(2048, 10240, 8192)

// writeGPTDisk makes a 16 MiB disk image with gptDiskParts.
func writeGPTDisk(t testing.TB, path string) { gpttest.WriteFile(t, path, 16<<20, gptDiskParts) }

const gptSlotsTOML = `
[slots]
` + slotstest.RootfsA + `[[slots.slot]]
class = "rootfs"
bank = "B"
type = "block"
partuuid = "6E8C21A2-0C1A-4D3E-9F00-0000000000B2"
`

// TestPartitionsWithoutUdev: with no /dev/disk links (busybox mdev), slots by PARTLABEL and
// PARTUUID are found on the disks' GPTs through sysfs.
func TestPartitionsWithoutUdev(t *testing.T) {
	root := t.TempDir()
	dev, sys := filepath.Join(root, "dev"), filepath.Join(root, "sys")
	for _, d := range []string{dev, filepath.Join(sys, "block", "vda", "vda1"), filepath.Join(sys, "block", "vda", "vda2"), filepath.Join(sys, "block", "vdb")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	writeGPTDisk(t, filepath.Join(dev, "vda"))
	for name, content := range map[string]string{
		filepath.Join(sys, "block", "vda", "vda1", "partition"): "1\n",
		filepath.Join(sys, "block", "vda", "vda2", "partition"): "2\n",
		filepath.Join(dev, "vdb"):                               "no partition table here",
	} {
		if err := os.WriteFile(name, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cfg, err := ParseConfig([]byte(gptSlotsTOML))
	if err != nil {
		t.Fatal(err)
	}
	l := NewLayout(cfg, Env{Dev: dev, Sysfs: sys})
	for slot, want := range map[string]string{"rootfs-a": "vda1", "rootfs-b": "vda2"} {
		s, err := l.Slot(slot)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := l.Resolve(s); err != nil || got != filepath.Join(dev, want) {
			t.Fatalf("Resolve(%s) = %q, %v; want %s", slot, got, err, want)
		}
	}

	// A label on two disks names no one place.
	if err := os.MkdirAll(filepath.Join(sys, "block", "vdc", "vdc1"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeGPTDisk(t, filepath.Join(dev, "vdc"))
	if err := os.WriteFile(filepath.Join(sys, "block", "vdc", "vdc1", "partition"), []byte("1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	s, _ := l.Slot("rootfs-a")
	if _, err := l.Resolve(s); !errors.Is(err, ErrUnknownSlot) || !strings.Contains(err.Error(), "two disks") {
		t.Fatalf("a label on two disks: %v", err)
	}

	// With udev's links present, they are the truth: no GPT is read.
	if err := os.MkdirAll(filepath.Join(dev, "disk", "by-partlabel"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Resolve(s); !errors.Is(err, ErrUnknownSlot) || !strings.Contains(err.Error(), "by-partlabel") {
		t.Fatalf("with /dev/disk/by-partlabel but no link: %v", err)
	}
}
