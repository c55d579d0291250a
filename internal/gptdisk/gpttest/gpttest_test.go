package gpttest

import (
	"bytes"
	"testing"

	"github.com/aduflash/aduflash/internal/gptdisk"
)

// TestDiskReadsBack: the disk's table holds the banks where Banks put them.
func TestDiskReadsBack(t *testing.T) {
	tab, err := gptdisk.Read(bytes.NewReader(Disk(t, 16<<20, Banks(2048, 10240, 8192))))
	if err != nil {
		t.Fatal(err)
	}
	b, err := tab.ByName("rootfs_b")
	if err != nil {
		t.Fatal(err)
	}
	if b.UUID != UUIDB || b.Offset() != 10240*512 || b.Size() != 4<<20 || tab.DiskUUID != DiskUUID {
		t.Fatalf("rootfs_b %+v on disk %s", b, tab.DiskUUID)
	}
}
