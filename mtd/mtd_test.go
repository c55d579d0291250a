package mtd

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestHelpers(t *testing.T) {
	if !IsErased(nil) || !IsErased([]byte{0xFF, 0xFF}) || IsErased([]byte{0xFF, 0xFE}) {
		t.Fatal("IsErased")
	}
	if AlignDown(5000, 4096) != 4096 || AlignUp(5000, 4096) != 8192 || AlignUp(4096, 4096) != 4096 || !IsAligned(8192, 4096) || IsAligned(1, 2) {
		t.Fatal("align")
	}
	got := slices.Collect(BlockRange(5000, 8192, 4096))
	if !slices.Equal(got, []int64{4096, 8192, 12288}) {
		t.Fatal(got)
	}
	if len(slices.Collect(BlockRange(0, 0, 4096))) != 0 || len(slices.Collect(BlockRange(0, 10, 0))) != 0 {
		t.Fatal("empty ranges")
	}
	for range BlockRange(0, 1<<20, 4096) {
		break // early stop must not panic
	}
	i := Info{Size: 8 * 4096, EraseSize: 4096, WriteSize: 512}
	if i.Blocks() != 8 || i.BlockOf(4097) != 1 || i.BlockOffset(3) != 3*4096 {
		t.Fatal("info helpers")
	}
	for _, c := range []struct {
		off  int64
		n    int
		want error
	}{{0, 512, nil}, {512, 1024, nil}, {1, 512, ErrUnaligned}, {0, 100, ErrUnaligned}, {8 * 4096, 512, ErrOutOfRange}, {-512, 512, ErrOutOfRange}} {
		if err := i.CheckWrite(c.off, c.n); !errors.Is(err, c.want) || (c.want == nil) != (err == nil) {
			t.Errorf("CheckWrite(%d,%d) = %v", c.off, c.n, err)
		}
	}
	if i.CheckErase(4096, 8192) != nil || !errors.Is(i.CheckErase(512, 4096), ErrUnaligned) || !errors.Is(i.CheckErase(0, 9*4096), ErrOutOfRange) {
		t.Fatal("CheckErase")
	}
	if CheckRange(1<<62, 1<<62, 1<<62) == nil {
		t.Fatal("overflowing range accepted")
	}
}

func TestType(t *testing.T) {
	for _, ty := range []Type{TypeAbsent, TypeRAM, TypeROM, TypeNOR, TypeNAND, TypeDataFlash, TypeUBIVolume, TypeMLCNAND} {
		got, err := ParseType(ty.String())
		if err != nil || got != ty {
			t.Errorf("%v: %v %v", ty, got, err)
		}
	}
	if _, err := ParseType("bogus"); !errors.Is(err, ErrUnsupported) {
		t.Fatal(err)
	}
	if Type(5).String() != "unknown(5)" || Type(200).String() != "unknown(200)" {
		t.Fatal(Type(5).String())
	}
	if !TypeMLCNAND.IsNAND() || TypeNOR.HasBadBlocks() || !TypeNAND.HasBadBlocks() {
		t.Fatal("predicates")
	}
}

func write(t *testing.T, root string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// fakeSysfs builds the sysfs of a nandsim (mtd0 "NAND simulator partition 0"), an mtdram
// (mtd1 "u-boot-env"), a NOR partition without subpagesize (mtd2 "rootfs"), a UBI device
// with two volumes on two UBI devices.
func fakeSysfs(t *testing.T) Paths {
	root := t.TempDir()
	write(t, root, map[string]string{
		"sys/class/mtd/mtd0/name":             "NAND simulator partition 0\n",
		"sys/class/mtd/mtd0/type":             "nand\n",
		"sys/class/mtd/mtd0/size":             "134217728\n",
		"sys/class/mtd/mtd0/erasesize":        "131072\n",
		"sys/class/mtd/mtd0/writesize":        "2048\n",
		"sys/class/mtd/mtd0/oobsize":          "64\n",
		"sys/class/mtd/mtd0/subpagesize":      "512\n",
		"sys/class/mtd/mtd0/flags":            "0x800\n",
		"sys/class/mtd/mtd1/name":             "u-boot-env\n",
		"sys/class/mtd/mtd1/type":             "ram\n",
		"sys/class/mtd/mtd1/size":             "1048576\n",
		"sys/class/mtd/mtd1/erasesize":        "65536\n",
		"sys/class/mtd/mtd1/writesize":        "1\n",
		"sys/class/mtd/mtd1/oobsize":          "0\n",
		"sys/class/mtd/mtd1/subpagesize":      "1\n",
		"sys/class/mtd/mtd1/flags":            "0xc00\n",
		"sys/class/mtd/mtd10/name":            "rootfs\n",
		"sys/class/mtd/mtd10/type":            "nor\n",
		"sys/class/mtd/mtd10/size":            "8589934592\n", // > 4 GiB
		"sys/class/mtd/mtd10/erasesize":       "65536\n",
		"sys/class/mtd/mtd10/writesize":       "1\n",
		"sys/class/mtd/mtd2/name":             "u-boot-env\n", // duplicate name: lowest number wins
		"sys/class/mtd/mtd2/type":             "bogus\n",
		"sys/class/mtd/mtd0ro/name":           "NAND simulator partition 0\n", // not an mtdN dir
		"sys/class/mtd/mtdblock0/name":        "x\n",
		"sys/class/ubi/ubi0/name":             "not a volume\n",
		"sys/class/ubi/ubi0_0/name":           "rootfs_a\n",
		"sys/class/ubi/ubi0_0/type":           "dynamic\n",
		"sys/class/ubi/ubi0_0/data_bytes":     "16902144\n",
		"sys/class/ubi/ubi0_0/reserved_ebs":   "131\n",
		"sys/class/ubi/ubi0_0/usable_eb_size": "129024\n",
		"sys/class/ubi/ubi0_1/name":           "kernel_a\n",
		"sys/class/ubi/ubi0_1/type":           "static\n",
		"sys/class/ubi/ubi0_1/data_bytes":     "65536\n",
		"sys/class/ubi/ubi0_1/reserved_ebs":   "10\n",
		"sys/class/ubi/ubi0_1/usable_eb_size": "129024\n",
		"sys/class/ubi/ubi1_0/name":           "kernel_a\n",
		"sys/class/ubi/ubi1_0/type":           "static\n",
		"sys/class/ubi/ubi1_3/name":           "broken\n",
		"sys/class/ubi/ubi1_3/type":           "weird\n",
		"dev/mtd0":                            "not a device",
		"dev/ubi0_1":                          "0123456789",
	})
	return Paths{Sysfs: filepath.Join(root, "sys"), Dev: filepath.Join(root, "dev")}
}

func TestInfoFromSysfs(t *testing.T) {
	p := fakeSysfs(t)
	i, err := p.InfoFromSysfs(0)
	if err != nil {
		t.Fatal(err)
	}
	want := Info{Name: "NAND simulator partition 0", Type: TypeNAND, Size: 128 << 20, EraseSize: 128 << 10, WriteSize: 2048, OOBSize: 64, SubpageSize: 512, Writable: false}
	if i != want {
		t.Fatalf("got %+v\nwant %+v", i, want)
	}
	if i, err = p.InfoFromSysfs(1); err != nil || i.Type != TypeRAM || !i.Writable || i.WriteSize != 1 {
		t.Fatal(i, err)
	}
	if i, err = p.InfoFromSysfs(10); err != nil || i.Size != 8<<30 || i.SubpageSize != 1 || i.OOBSize != 0 || i.Writable {
		t.Fatal(i, err)
	}
	if _, err := p.InfoFromSysfs(2); !errors.Is(err, ErrUnsupported) {
		t.Fatal(err)
	}
	if _, err := p.InfoFromSysfs(3); !errors.Is(err, ErrNotFound) {
		t.Fatal(err)
	}
	if _, err := p.InfoFromSysfs(-1); !errors.Is(err, ErrNotFound) {
		t.Fatal(err)
	}
	if p.DevicePath(3) != filepath.Join(p.Dev, "mtd3") {
		t.Fatal(p.DevicePath(3))
	}
}

func TestFindMTDAndOpen(t *testing.T) {
	p := fakeSysfs(t)
	for name, want := range map[string]int{"NAND simulator partition 0": 0, "u-boot-env": 1, "rootfs": 10} {
		if n, err := p.FindMTD(name); err != nil || n != want {
			t.Errorf("%q: %d %v", name, n, err)
		}
	}
	if _, err := p.FindMTD("x"); !errors.Is(err, ErrNotFound) {
		t.Fatal(err)
	}
	if _, err := p.OpenByName("nope"); !errors.Is(err, ErrNotFound) {
		t.Fatal(err)
	}
	if _, err := (Paths{Sysfs: t.TempDir()}).FindMTD("x"); !errors.Is(err, ErrNotFound) {
		t.Fatal(err)
	}
	// name found, but Dev/mtd0 is a regular file: not an MTD device (or unsupported OS)
	if d, err := p.OpenByName("NAND simulator partition 0"); err == nil || errors.Is(err, ErrNotFound) {
		t.Fatal(d, err)
	}
	if _, err := p.OpenByNumber(-1); !errors.Is(err, ErrNotFound) {
		t.Fatal(err)
	}
}

func TestRefuseMTDBlock(t *testing.T) {
	for _, path := range []string{"/dev/mtdblock0", "/dev/mtdblock12", filepath.Join(t.TempDir(), "mtdblock3")} {
		if _, err := Open(path); !errors.Is(err, ErrBlockEmulation) {
			t.Errorf("%s: %v", path, err)
		}
	}
	// a symlink (udev alias) to an mtdblock node is refused too (on Linux, which resolves it)
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "mtdblock4"), nil, 0o644)
	os.Symlink(filepath.Join(dir, "mtdblock4"), filepath.Join(dir, "env"))
	if _, err := Open(filepath.Join(dir, "env")); err == nil {
		t.Fatal("symlink to mtdblock opened")
	}
	if n, err := mtdNumber("/dev/mtd7ro"); n != 7 || err != nil {
		t.Fatal(n, err)
	}
	if n, err := mtdNumber("/dev/disk/by-name/foo"); n != -1 || err != nil {
		t.Fatal(n, err)
	}
}

func TestFindVolume(t *testing.T) {
	p := fakeSysfs(t)
	v, err := p.FindVolume("rootfs_a")
	if err != nil {
		t.Fatal(err)
	}
	if v.UBI != 0 || v.ID != 0 || v.Type != VolumeDynamic || v.ReservedSize() != 131*129024 || v.Size() != 131*129024 || v.Path != filepath.Join(p.Dev, "ubi0_0") {
		t.Fatalf("%+v", v)
	}
	k, err := p.FindVolume("kernel_a") // on ubi0 and ubi1: ubi0 wins
	if err != nil {
		t.Fatal(err)
	}
	if k.UBI != 0 || k.ID != 1 || k.Type != VolumeStatic || k.Size() != 65536 || k.ReservedSize() != 10*129024 || k.Type.String() != "static" {
		t.Fatalf("%+v", k)
	}
	if _, err := p.FindVolume("broken"); !errors.Is(err, ErrUnsupported) {
		t.Fatal(err)
	}
	if _, err := p.FindVolume("none"); !errors.Is(err, ErrNotFound) {
		t.Fatal(err)
	}
	if _, err := (Paths{Sysfs: t.TempDir()}).FindVolume("x"); !errors.Is(err, ErrNotFound) {
		t.Fatal(err)
	}
	// ReadAt through the device node (a plain file here), bounded by Size
	k.DataBytes = 8
	b := make([]byte, 5)
	if n, err := k.ReadAt(b, 5); n != 3 || err != io.EOF || string(b[:3]) != "567" {
		t.Fatal(n, err, string(b))
	}
	if n, err := k.ReadAt(b, 0); n != 5 || err != nil || string(b) != "01234" {
		t.Fatal(n, err)
	}
	if _, err := k.ReadAt(b, 8); err != io.EOF {
		t.Fatal(err)
	}
	if _, err := k.ReadAt(b, -1); !errors.Is(err, ErrOutOfRange) {
		t.Fatal(err)
	}
	if _, err := v.Update(v.ReservedSize() + 1); !errors.Is(err, ErrOutOfRange) && !errors.Is(err, ErrUnsupported) {
		t.Fatal(err)
	}
}

type bufCloser struct {
	bytes.Buffer
	closed int
}

func (b *bufCloser) Close() error { b.closed++; return nil }

func TestVolumeWriter(t *testing.T) {
	var buf bufCloser
	w := &volWriter{w: &buf, name: "v", size: 10}
	if n, err := w.Write([]byte("0123")); n != 4 || err != nil {
		t.Fatal(n, err)
	}
	if n, err := w.Write([]byte("456789AB")); n != 6 || !errors.Is(err, ErrUpdateSize) {
		t.Fatal(n, err)
	}
	if err := w.Close(); err != nil || buf.String() != "0123456789" || buf.closed != 1 {
		t.Fatal(err, buf.String())
	}
	if _, err := w.Write([]byte("x")); !errors.Is(err, ErrClosed) {
		t.Fatal(err)
	}
	if !errors.Is(w.Close(), ErrClosed) {
		t.Fatal("double close")
	}
	short := &volWriter{w: &bufCloser{}, name: "v", size: 10}
	short.Write([]byte("abc"))
	if err := short.Close(); !errors.Is(err, ErrUpdateSize) {
		t.Fatal(err)
	}
	empty := &volWriter{w: &bufCloser{}, name: "v", size: 0}
	if err := empty.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestBlockError(t *testing.T) {
	err := error(&BlockError{Op: "erase", Off: 0x20000, Err: ErrIO})
	var be *BlockError
	if !errors.Is(err, ErrIO) || !errors.As(err, &be) || be.Off != 0x20000 || err.Error() != "mtd: erase at offset 0x20000: mtd: flash operation failed" {
		t.Fatal(err)
	}
}
