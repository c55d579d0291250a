//go:build linux

package mtd

import (
	"testing"

	"golang.org/x/sys/unix"
)

func TestKernelConstants(t *testing.T) {
	if mtdWriteable != unix.MTD_WRITEABLE {
		t.Fatal("MTD_WRITEABLE")
	}
	for k, v := range map[uint8]Type{unix.MTD_NORFLASH: TypeNOR, unix.MTD_NANDFLASH: TypeNAND, unix.MTD_MLCNANDFLASH: TypeMLCNAND, unix.MTD_RAM: TypeRAM, unix.MTD_UBIVOLUME: TypeUBIVolume} {
		if typeFromKernel(k) != v || uint8(v) != k {
			t.Errorf("type %d", k)
		}
	}
}
