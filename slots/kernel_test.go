//go:build linux

package slots

import (
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/aduflash/aduflash/internal/testpayload"
	"github.com/aduflash/aduflash/internal/vmtest"
	"github.com/aduflash/aduflash/mtd"
)

// Kernel tests: run inside the VM by TestInVM (vm_test.go) with nandsim as ADUFLASH_MTD_DEV
// (128 MiB NAND, 128 KiB blocks, 2 KiB pages, bad blocks 3 and 7).

func kernelNAND(t testing.TB) (string, mtd.Info) {
	t.Helper()
	path := vmtest.Need(t, "ADUFLASH_MTD_DEV", "runs inside the VM (TestInVM)")
	d, err := mtd.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	return path, d.Info()
}

func sh(t testing.TB, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
}

// writeFlash streams img into [off, off+length) of the device at path.
func writeFlash(t testing.TB, path string, off, length int64, img []byte, opts ...Option) Stats {
	t.Helper()
	d, err := mtd.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	w, err := NewFlashWriter(d, "nand", off, length, int64(len(img)), nil, opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if _, err := io.Copy(w, bytes.NewReader(img)); err != nil {
		t.Fatal(err)
	}
	if err := w.Finish(); err != nil {
		t.Fatal(err)
	}
	if err := w.Verify(bytes.NewReader(img)); err != nil {
		t.Fatal(err)
	}
	return w.Stats()
}

// Our writer on kernel NAND with bad blocks in the region: nanddump, skipping bad blocks as
// nandwrite does, reads back exactly the image; nandwrite's layout of the same image is
// byte for byte ours; a second write of the same image erases and programs nothing.
func TestKernelFlashWriterAgainstNandwrite(t *testing.T) {
	path, info := kernelNAND(t)
	for _, tool := range []string{"nanddump", "nandwrite", "flash_erase"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not on PATH: %v", tool, err)
		}
	}
	bs := int64(info.EraseSize)
	length := 64 * bs                        // blocks 0..63: bad blocks 3 and 7 inside
	img := testpayload.Bytes(9, 6<<20+12345) // an end that is not page-aligned
	st := writeFlash(t, path, 0, length, img)
	if st.BadSkipped != 2 {
		t.Errorf("stepped over %d bad blocks, want 2 (3 and 7)", st.BadSkipped)
	}
	dir := t.TempDir()
	ours := filepath.Join(dir, "ours.bin")
	sh(t, "nanddump", "--omitoob", "--bb=skipbad", "-s", "0", "-l", strconv.FormatInt(length, 10), "-f", ours, path)
	got, err := os.ReadFile(ours)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) < len(img) || !bytes.Equal(got[:len(img)], img) {
		t.Fatalf("nanddump --bb=skipbad of our write differs from the image (%d bytes dumped)", len(got))
	}
	// The same image through flash_erase + nandwrite into blocks 64..127 (no bad blocks),
	// and ours there too: identical raw content.
	imgFile := filepath.Join(dir, "img.bin")
	if err := os.WriteFile(imgFile, img, 0o644); err != nil {
		t.Fatal(err)
	}
	sh(t, "flash_erase", path, strconv.FormatInt(64*bs, 10), "64")
	sh(t, "nandwrite", "-p", "-s", strconv.FormatInt(64*bs, 10), path, imgFile)
	theirs := filepath.Join(dir, "theirs.bin")
	sh(t, "nanddump", "--omitoob", "-s", strconv.FormatInt(64*bs, 10), "-l", strconv.FormatInt(length, 10), "-f", theirs, path)
	writeFlash(t, path, 64*bs, length, img, WithoutSkip())
	ours2 := filepath.Join(dir, "ours2.bin")
	sh(t, "nanddump", "--omitoob", "-s", strconv.FormatInt(64*bs, 10), "-l", strconv.FormatInt(length, 10), "-f", ours2, path)
	a, _ := os.ReadFile(theirs)
	b, _ := os.ReadFile(ours2)
	if !bytes.Equal(a, b) {
		t.Fatal("our write and nandwrite's differ on the same blocks")
	}
	// Unchanged image: nothing erased, nothing programmed.
	if st := writeFlash(t, path, 0, length, img); st.Erases != 0 || st.BytesWritten != 0 {
		t.Fatalf("re-writing the same image: %+v", st)
	}
}

// In-VM throughput of our writer against flash_erase + nandwrite on the same 16 MiB images
// (fresh content every iteration, so both erase and program everything). Run by
// scripts/bench-mtd; not part of the tests.
func BenchmarkKernelMTDWrite(b *testing.B) {
	path, info := kernelNAND(b)
	bs := int64(info.EraseSize)
	imgs := [][]byte{testpayload.Bytes(1, 16<<20), testpayload.Bytes(2, 16<<20)}
	b.SetBytes(16 << 20)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		writeFlashNoVerify(b, path, 8*bs, 160*bs, imgs[i%2])
	}
}

func BenchmarkKernelNandwrite(b *testing.B) {
	path, info := kernelNAND(b)
	bs := int64(info.EraseSize)
	dir := b.TempDir()
	var files []string
	for i, seed := range []uint64{3, 4} {
		f := filepath.Join(dir, strconv.Itoa(i))
		if err := os.WriteFile(f, testpayload.Bytes(seed, 16<<20), 0o644); err != nil {
			b.Fatal(err)
		}
		files = append(files, f)
	}
	b.SetBytes(16 << 20)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		sh(b, "flash_erase", path, strconv.FormatInt(8*bs, 10), "160")
		sh(b, "nandwrite", "-p", "-s", strconv.FormatInt(8*bs, 10), path, files[i%2])
	}
}

func writeFlashNoVerify(b *testing.B, path string, off, length int64, img []byte) {
	d, err := mtd.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	w, err := NewFlashWriter(d, "nand", off, length, int64(len(img)), nil)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := w.Write(img); err != nil {
		b.Fatal(err)
	}
	if err := w.Finish(); err != nil {
		b.Fatal(err)
	}
	w.Close()
}

// TestKernelGPT runs in the VM of TestInVMGPT: a virtio disk (ADUFLASH_VM_DISK) with a GPT and
// no udev. The banks resolve by PARTLABEL and PARTUUID from the GPT, the block writer writes
// bank B's partition (checked by the host), and bank A, the running one, is refused.
func TestKernelGPT(t *testing.T) {
	vmtest.Need(t, "ADUFLASH_VM_DISK", "runs inside the VM (TestInVMGPT)")
	if _, err := os.Stat("/dev/disk/by-partlabel"); err == nil {
		t.Fatal("/dev/disk/by-partlabel exists: the guest should have no udev")
	}
	cfg, err := ParseConfig([]byte(gptSlotsTOML))
	if err != nil {
		t.Fatal(err)
	}
	cmdline := filepath.Join(t.TempDir(), "cmdline")
	if err := os.WriteFile(cmdline, []byte("root=PARTLABEL=rootfs_a adu.slot=A\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	l := NewLayout(cfg, Env{Cmdline: cmdline})
	for slot, want := range map[string]string{"rootfs-a": "/dev/vda1", "rootfs-b": "/dev/vda2"} {
		s, err := l.Slot(slot)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := l.Resolve(s); err != nil || got != want {
			t.Fatalf("Resolve(%s) = %q, %v; want %s", slot, got, err, want)
		}
	}
	a, _ := l.Slot("rootfs-a")
	if _, err := l.OpenWriter(a, 4096, nil); !errors.Is(err, ErrActiveSlot) {
		t.Fatalf("writing the running bank A: %v, want ErrActiveSlot", err)
	}
	b, _ := l.Slot("rootfs-b")
	img := testpayload.Bytes(11, gptPayloadSize)
	w, err := l.OpenWriter(b, int64(len(img)), nil)
	if err != nil {
		t.Fatal(err)
	}
	if w.Capacity() != 4<<20 {
		t.Fatalf("bank B's capacity %d, want the partition's 4 MiB", w.Capacity())
	}
	if _, err := w.Write(img); err != nil {
		t.Fatal(err)
	}
	if err := w.Finish(); err != nil {
		t.Fatal(err)
	}
	if err := w.Verify(bytes.NewReader(img)); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}

// gptPayloadSize is what TestKernelGPT writes into bank B (testpayload seed 11).
const gptPayloadSize = 3<<20 + 1234
