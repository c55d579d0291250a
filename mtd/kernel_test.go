//go:build linux

package mtd

// Tests against a real kernel MTD device (nandsim or mtdram under QEMU). They skip unless
// ADUFLASH_MTD_DEV names a scratch device whose content may be destroyed, e.g. nandsim
// loaded with "id_bytes=0x20,0xa1,0x00,0x15 badblocks=3,7" as /dev/mtd0. The UBI test
// also needs ADUFLASH_UBI_VOL, the name of a scratch UBI volume.

import (
	"bytes"
	"errors"
	"io"
	"os"
	"strconv"
	"testing"
)

func kernelDevice(t *testing.T) *Device {
	t.Helper()
	path := os.Getenv("ADUFLASH_MTD_DEV")
	if path == "" {
		t.Skip("ADUFLASH_MTD_DEV is unset: set it to a scratch MTD device (e.g. /dev/mtd0 from nandsim badblocks=3,7) to run kernel tests")
	}
	d, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	if !d.Info().Writable {
		t.Fatalf("%s is not writable", path)
	}
	return d
}

// firstGood returns the offset of the first good erase block at or after block from.
func firstGood(t *testing.T, d *Device, from int) int64 {
	t.Helper()
	i := d.Info()
	for b := from; b < i.Blocks(); b++ {
		bad, err := d.IsBad(i.BlockOffset(b))
		if err != nil {
			t.Fatal(err)
		}
		if !bad {
			return i.BlockOffset(b)
		}
	}
	t.Fatal("no good block")
	return 0
}

func TestKernelInfo(t *testing.T) {
	d := kernelDevice(t)
	i := d.Info()
	t.Logf("%s: %+v", d.Path(), i)
	if i.Size <= 0 || i.EraseSize <= 0 || i.WriteSize <= 0 || i.Size%int64(i.EraseSize) != 0 || i.SubpageSize <= 0 {
		t.Fatalf("implausible geometry %+v", i)
	}
}

func TestKernelEraseWriteRead(t *testing.T) {
	d := kernelDevice(t)
	i := d.Info()
	off := firstGood(t, d, 0)
	if err := d.Unlock(off, int64(i.EraseSize)); err != nil {
		t.Fatal(err)
	}
	if err := d.Erase(off, int64(i.EraseSize)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, i.EraseSize)
	if _, err := d.ReadAt(buf, off); err != nil {
		t.Fatal(err)
	}
	if !IsErased(buf) {
		t.Fatal("erased block does not read 0xFF")
	}
	n := 2 * i.WriteSize
	if n > i.EraseSize {
		n = i.EraseSize
	}
	pat := make([]byte, n)
	for j := range pat {
		pat[j] = byte(j*7 + 1)
	}
	if w, err := d.WriteAt(pat, off); err != nil || w != n {
		t.Fatal(w, err)
	}
	if err := d.Sync(); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, n)
	if _, err := d.ReadAt(got, off); err != nil || !bytes.Equal(got, pat) {
		t.Fatal("readback mismatch", err)
	}
	if _, err := d.ReadAt(got, i.Size-1); err != io.EOF {
		t.Fatalf("read past the end: %v", err)
	}
	if err := d.Erase(off+1, int64(i.EraseSize)); !errors.Is(err, ErrUnaligned) {
		t.Fatal(err)
	}
}

func TestKernelUnalignedWrite(t *testing.T) {
	d := kernelDevice(t)
	i := d.Info()
	if i.WriteSize == 1 {
		t.Skip("write size 1 (NOR/RAM): every alignment is valid")
	}
	off := firstGood(t, d, 0)
	if _, err := d.WriteAt([]byte{1, 2, 3}, off+int64(i.WriteSize)+1); !errors.Is(err, ErrUnaligned) {
		t.Fatal(err)
	}
	// the raw kernel answer, bypassing our check: EINVAL
	if _, err := d.f.WriteAt([]byte{1, 2, 3}, off+int64(i.WriteSize)+1); err == nil {
		t.Fatal("kernel accepted an unaligned NAND write")
	}
}

func TestKernelBadBlocks(t *testing.T) {
	d := kernelDevice(t)
	i := d.Info()
	if !i.Type.HasBadBlocks() {
		if bad, err := d.IsBad(0); bad || err != nil {
			t.Fatal(bad, err)
		}
		if err := d.MarkBad(0); !errors.Is(err, ErrUnsupported) {
			t.Fatal(err)
		}
		return
	}
	var bad []int
	for b := range i.Blocks() {
		isBad, err := d.IsBad(i.BlockOffset(b))
		if err != nil {
			t.Fatal(err)
		}
		if isBad {
			bad = append(bad, b)
		}
	}
	t.Logf("bad blocks: %v", bad)
	if want := os.Getenv("ADUFLASH_MTD_BADBLOCKS"); want != "" {
		got := ""
		for k, b := range bad {
			if k > 0 {
				got += ","
			}
			got += strconv.Itoa(b)
		}
		if got != want {
			t.Fatalf("bad blocks %q, want %q", got, want)
		}
	}
	if len(bad) > 0 {
		off := i.BlockOffset(bad[0])
		if err := d.Erase(off, int64(i.EraseSize)); !errors.Is(err, ErrBadBlock) {
			t.Fatalf("erase of bad block: %v", err)
		}
		if _, err := d.WriteAt(make([]byte, i.WriteSize), off); !errors.Is(err, ErrBadBlock) {
			t.Fatalf("write into bad block: %v", err)
		}
	}
	last := i.BlockOffset(i.Blocks() - 1)
	if err := d.MarkBad(last); err != nil {
		t.Fatal(err)
	}
	if isBad, err := d.IsBad(last + 1); err != nil || !isBad {
		t.Fatal("MarkBad did not stick", isBad, err)
	}
}

func TestKernelUBIUpdate(t *testing.T) {
	name := os.Getenv("ADUFLASH_UBI_VOL")
	if name == "" {
		t.Skip("ADUFLASH_UBI_VOL is unset: set it to the name of a scratch UBI volume to run the UBI update test")
	}
	v, err := FindVolume(name)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v", v)
	size := int64(3000000)
	if size > v.ReservedSize() {
		size = v.ReservedSize() / 2
	}
	data := make([]byte, size)
	for i := range data {
		data[i] = byte(i % 251)
	}
	w, err := v.Update(size)
	if err != nil {
		t.Fatal(err)
	}
	for off := int64(0); off < size; off += 4096 {
		if _, err := w.Write(data[off:min(off+4096, size)]); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if v, err = FindVolume(name); err != nil { // refresh data_bytes
		t.Fatal(err)
	}
	if v.Type == VolumeStatic && v.Size() != size {
		t.Fatalf("static volume size %d, want %d", v.Size(), size)
	}
	got := make([]byte, size)
	if _, err := v.ReadAt(got, 0); err != nil || !bytes.Equal(got, data) {
		t.Fatal("UBI readback mismatch", err)
	}
	if _, err := v.Update(v.ReservedSize() + 1); !errors.Is(err, ErrOutOfRange) {
		t.Fatal(err)
	}
	short, err := v.Update(10)
	if err != nil {
		t.Fatal(err)
	}
	short.Write([]byte("abc"))
	if err := short.Close(); !errors.Is(err, ErrUpdateSize) {
		t.Fatal(err)
	}
}
