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
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/aduflash/aduflash/internal/vmtest"
)

func kernelDevice(t *testing.T) *Device {
	t.Helper()
	path := vmtest.Need(t, "ADUFLASH_MTD_DEV", "set it to a scratch MTD device (e.g. /dev/mtd0 from nandsim badblocks=3,7) to run kernel tests")
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
	name := vmtest.Need(t, "ADUFLASH_UBI_VOL", "set it to the name of a scratch UBI volume to run the UBI update test")
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

// Our writes read back by nanddump, and nandwrite's writes read back by us: the same bytes
// at the same offsets, on the kernel's NAND driver with its bad blocks.
func TestKernelAgainstMTDUtils(t *testing.T) {
	d := kernelDevice(t)
	info := d.Info()
	if !info.Type.IsNAND() {
		t.Skip("not a NAND device")
	}
	for _, tool := range []string{"nanddump", "nandwrite", "flash_erase"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not on PATH (mtd-utils): %v", tool, err)
		}
	}
	bs := int64(info.EraseSize)
	off := firstGood(t, d, 8)
	data := make([]byte, bs)
	for i := range data {
		data[i] = byte(i*7 + 3)
	}
	// Ours → nanddump.
	if err := d.Erase(off, bs); err != nil {
		t.Fatal(err)
	}
	if _, err := d.WriteAt(data, off); err != nil {
		t.Fatal(err)
	}
	dump := filepath.Join(t.TempDir(), "dump.bin")
	run(t, "nanddump", "--omitoob", "-s", strconv.FormatInt(off, 10), "-l", strconv.FormatInt(bs, 10), "-f", dump, d.Path())
	got, err := os.ReadFile(dump)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Fatalf("nanddump of our write differs (%d bytes read)", len(got))
	}
	// flash_erase + nandwrite → ours.
	for i := range data {
		data[i] = byte(i*13 + 1)
	}
	img := filepath.Join(t.TempDir(), "img.bin")
	if err := os.WriteFile(img, data, 0o644); err != nil {
		t.Fatal(err)
	}
	run(t, "flash_erase", d.Path(), strconv.FormatInt(off, 10), "1")
	run(t, "nandwrite", "-p", "-s", strconv.FormatInt(off, 10), d.Path(), img)
	back := make([]byte, bs)
	if _, err := d.ReadAt(back, off); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(back, data) {
		t.Fatal("our read of nandwrite's write differs")
	}
	// flash_erase skips the bad blocks we report bad.
	out := run(t, "flash_erase", d.Path(), "0", "8")
	for _, b := range []int{3, 7} {
		if isBad, _ := d.IsBad(int64(b) * bs); isBad && !bytes.Contains(out, []byte("Skipping bad block")) {
			t.Errorf("flash_erase did not skip bad block %d that we report bad:\n%s", b, out)
		}
	}
}

// ubiupdatevol's volume content read by us, and ours compared byte for byte by cmp.
func TestKernelUBIAgainstUbiupdatevol(t *testing.T) {
	name := vmtest.Need(t, "ADUFLASH_UBI_VOL", "runs inside the VM")
	if _, err := exec.LookPath("ubiupdatevol"); err != nil {
		t.Skipf("ubiupdatevol not on PATH: %v", err)
	}
	v, err := FindVolume(name)
	if err != nil {
		t.Fatal(err)
	}
	data := make([]byte, 1<<20+123)
	for i := range data {
		data[i] = byte(i * 31)
	}
	img := filepath.Join(t.TempDir(), "vol.bin")
	if err := os.WriteFile(img, data, 0o644); err != nil {
		t.Fatal(err)
	}
	run(t, "ubiupdatevol", v.Path, img)
	got := make([]byte, len(data))
	if _, err := v.ReadAt(got, 0); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("our read of ubiupdatevol's content differs: %v", err)
	}
	// Ours, then the kernel's view through the volume's character device.
	for i := range data {
		data[i] = byte(i * 17)
	}
	w, err := v.Update(int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(img, data, 0o644); err != nil {
		t.Fatal(err)
	}
	run(t, "cmp", "-n", strconv.Itoa(len(data)), img, v.Path)
}

func run(t *testing.T, name string, args ...string) []byte {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
	return out
}

// A device opened read-only (the running bank's slot a copy reads) is read and tells its bad
// blocks (MEMGETBADBLOCK needs no write access), and the kernel refuses its erases and
// programs.
func TestKernelOpenReadOnly(t *testing.T) {
	w := kernelDevice(t)
	d, err := Paths{}.OpenReadOnly(w.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	i := d.Info()
	if wi := w.Info(); i.Writable || i.Size != wi.Size || i.EraseSize != wi.EraseSize || i.WriteSize != wi.WriteSize {
		t.Fatalf("read-only info %+v, read-write %+v", i, w.Info())
	}
	off := firstGood(t, w, 0)
	if _, err := d.ReadAt(make([]byte, i.WriteSize), off); err != nil {
		t.Fatal(err)
	}
	for b := 0; b < i.Blocks(); b++ {
		got, err := d.IsBad(i.BlockOffset(b))
		want, werr := w.IsBad(i.BlockOffset(b))
		if err != nil || werr != nil || got != want {
			t.Fatalf("block %d: bad %v (%v) read-only, %v (%v) read-write", b, got, err, want, werr)
		}
	}
	if err := d.Erase(off, int64(i.EraseSize)); err == nil {
		t.Fatal("an erase through a read-only device succeeded")
	}
	if _, err := d.WriteAt(make([]byte, i.WriteSize), off); err == nil {
		t.Fatal("a program through a read-only device succeeded")
	}
}
