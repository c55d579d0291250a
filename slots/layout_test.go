package slots

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aduflash/aduflash/mtd/mtdsim"
	"github.com/aduflash/aduflash/slots/slotstest"
)

// fakeSystem builds a fake /dev (partitions as regular files, by-partlabel and by-partuuid
// links), a fake sysfs and a kernel command line.
type fakeSystem struct {
	root, dev, sys, cmdline string
}

func newFakeSystem(t *testing.T, cmdline string) *fakeSystem {
	t.Helper()
	root := t.TempDir()
	fs := &fakeSystem{root: root, dev: filepath.Join(root, "dev"), sys: filepath.Join(root, "sys"), cmdline: filepath.Join(root, "cmdline")}
	for _, d := range []string{"disk/by-partlabel", "disk/by-partuuid"} {
		must(t, os.MkdirAll(filepath.Join(fs.dev, d), 0o755))
	}
	for _, p := range []string{"mmcblk0p2", "mmcblk0p3", "mmcblk0boot0", "mmcblk0boot1"} {
		must(t, os.WriteFile(filepath.Join(fs.dev, p), make([]byte, 1<<20), 0o644))
	}
	must(t, os.Symlink("../../mmcblk0p2", filepath.Join(fs.dev, "disk/by-partlabel/rootfs_a")))
	must(t, os.Symlink("../../mmcblk0p3", filepath.Join(fs.dev, "disk/by-partlabel/rootfs_b")))
	must(t, os.Symlink("../../mmcblk0p2", filepath.Join(fs.dev, "disk/by-partuuid/0b8d4f2a-02")))
	must(t, os.Symlink("../../mmcblk0p3", filepath.Join(fs.dev, "disk/by-partuuid/0b8d4f2a-03")))
	for _, b := range []string{"mmcblk0boot0", "mmcblk0boot1"} {
		must(t, os.MkdirAll(filepath.Join(fs.sys, "block", b), 0o755))
		must(t, os.WriteFile(filepath.Join(fs.sys, "block", b, "force_ro"), []byte("1\n"), 0o644))
	}
	must(t, os.WriteFile(fs.cmdline, []byte(cmdline+"\n"), 0o644))
	return fs
}

// writeVerified writes raw through w, finishes, verifies what was written and closes.
func writeVerified(t *testing.T, w Writer, raw []byte) {
	t.Helper()
	_, err := w.Write(raw)
	must(t, err)
	must(t, w.Finish())
	must(t, w.Verify(bytes.NewReader(raw)))
	must(t, w.Close())
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

const layoutDoc = `
[slots]
` + slotstest.RootfsA + `[[slots.slot]]
class = "rootfs"
bank = "B"
type = "block"
partuuid = "0B8D4F2A-03"
[[slots.slot]]
class = "boot"
bank = "A"
type = "emmc-boot"
path = "/dev/mmcblk0boot0"
[[slots.slot]]
class = "boot"
bank = "B"
type = "emmc-boot"
path = "/dev/mmcblk0boot1"
[[slots.slot]]
class = "fw"
bank = "A"
type = "nand"
mtd = "fw_a"
[[slots.slot]]
class = "fw"
bank = "B"
type = "nand"
mtd = "fw_b"
`

func (fs *fakeSystem) layout(t *testing.T, doc string) *Layout {
	t.Helper()
	c, err := ParseConfig([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	return NewLayout(c, Env{Dev: fs.dev, Sysfs: fs.sys, Cmdline: fs.cmdline})
}

// fixedState is a bootloader that reports a primary and a pending bank.
type fixedState struct{ Primary, Pending string }

func (f fixedState) BootBanks() (primary, pending string, err error) {
	return f.Primary, f.Pending, nil
}

func TestActiveBank(t *testing.T) {
	for cmdline, want := range map[string]string{
		"console=ttyS0 adu.slot=B rootwait":       "B",
		"adu.slot=a":                              "A",
		"root=PARTUUID=0b8d4f2a-02 rootwait":      "A",
		"root=PARTUUID=0B8D4F2A-03":               "B",
		"root=PARTLABEL=rootfs_b":                 "B",
		"root=/dev/mmcblk0p2 ro":                  "A",
		"root=/dev/disk/by-partlabel/rootfs_b ro": "B",
		"quiet root=/dev/mmcblk0p3 adu.slot=A ro": "A", // the key wins over root=
		"root=/dev/mmcblk0p9":                     "",
		"quiet":                                   "",
		"adu.slot=C":                              "",
	} {
		fs := newFakeSystem(t, cmdline)
		got, err := fs.layout(t, layoutDoc).ActiveBank()
		if want == "" {
			if !errors.Is(err, ErrActiveUnknown) {
				t.Errorf("%q: got %q, %v; want ErrActiveUnknown", cmdline, got, err)
			}
			continue
		}
		if err != nil || got != want {
			t.Errorf("%q: got %q, %v; want %s", cmdline, got, err, want)
		}
	}
	fs := newFakeSystem(t, "")
	l := fs.layout(t, strings.Replace(layoutDoc, "[slots]", "[slots]\nactive = \"bootloader\"", 1))
	l.Env.Bootloader = fixedState{Primary: "B"}
	if got, err := l.ActiveBank(); err != nil || got != "B" {
		t.Errorf("bootloader: %q %v", got, err)
	}
	l.Env.Bootloader = fixedState{Primary: "B", Pending: "B"}
	if _, err := l.ActiveBank(); !errors.Is(err, ErrActiveUnknown) {
		t.Errorf("pending: %v", err)
	}
}

// cmdline_file names the kernel command line (a workstation, a container); Env.Cmdline
// overrides it.
func TestCmdlineFile(t *testing.T) {
	fs := newFakeSystem(t, "adu.slot=A")
	other := filepath.Join(fs.root, "other-cmdline")
	must(t, os.WriteFile(other, []byte("console=ttyS0 adu.slot=B\n"), 0o644))
	c, err := ParseConfig([]byte(strings.Replace(layoutDoc, "[slots]", "[slots]\ncmdline_file = \""+filepath.ToSlash(other)+"\"", 1)))
	must(t, err)
	l := NewLayout(c, Env{Dev: fs.dev, Sysfs: fs.sys})
	if got, err := l.ActiveBank(); err != nil || got != "B" {
		t.Errorf("cmdline_file: %q %v, want B", got, err)
	}
	l.Env.Cmdline = fs.cmdline
	if got, err := l.ActiveBank(); err != nil || got != "A" {
		t.Errorf("Env.Cmdline over cmdline_file: %q %v, want A", got, err)
	}
	must(t, os.Remove(other))
	l.Env.Cmdline = ""
	if _, err := l.ActiveBank(); !errors.Is(err, ErrActiveUnknown) || !strings.Contains(err.Error(), "other-cmdline") {
		t.Errorf("missing cmdline_file: %v, want ErrActiveUnknown naming it", err)
	}
}

func TestActiveSlotRefused(t *testing.T) {
	fs := newFakeSystem(t, "root=PARTUUID=0b8d4f2a-02")
	l := fs.layout(t, layoutDoc)
	l.Env.OpenFlash = func(s *Slot) (Flash, error) { return mtdsim.NewNAND(1<<20, 64<<10, 2<<10) }
	for _, name := range []string{"rootfs-a", "A/boot", "fw-a"} {
		s, err := l.Slot(name)
		must(t, err)
		if _, err := l.OpenWriter(s, 10, nil); !errors.Is(err, ErrActiveSlot) {
			t.Errorf("%s: err %v, want ErrActiveSlot", name, err)
		}
	}
	// The same device under other names: the node, a symlink to it, the by-partlabel link.
	must(t, os.Symlink(filepath.Join(fs.dev, "mmcblk0p2"), filepath.Join(fs.root, "sneaky")))
	for _, p := range []string{filepath.Join(fs.dev, "mmcblk0p2"), filepath.Join(fs.root, "sneaky"), filepath.Join(fs.dev, "disk/by-partlabel/rootfs_a")} {
		s, err := l.Target(p)
		must(t, err)
		if _, err := l.OpenWriter(s, 10, nil); !errors.Is(err, ErrActiveSlot) {
			t.Errorf("%s: err %v, want ErrActiveSlot", p, err)
		}
		if _, err := os.Stat(p); err != nil {
			t.Fatal(err)
		}
	}
	// The spare bank and an unrelated file are fine.
	for _, name := range []string{"rootfs-b", "B/fw", filepath.Join(fs.root, "new.img")} {
		s, err := l.Target(name)
		must(t, err)
		w, err := l.OpenWriter(s, 10, nil)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		w.Close()
	}
	// Without a way to tell the active bank, nothing is written.
	must(t, os.WriteFile(fs.cmdline, []byte("quiet"), 0o644))
	s, _ := l.Slot("rootfs-b")
	if _, err := l.OpenWriter(s, 10, nil); !errors.Is(err, ErrActiveUnknown) {
		t.Errorf("unknown active bank: %v", err)
	}
}

func TestPartLabelAndForceRO(t *testing.T) {
	fs := newFakeSystem(t, "adu.slot=A")
	l := fs.layout(t, layoutDoc)
	s, err := l.Slot("rootfs-b")
	must(t, err)
	if p, err := l.Resolve(s); err != nil || p != filepath.Join(fs.dev, "mmcblk0p3") {
		t.Fatalf("resolve by partuuid: %q %v", p, err)
	}
	raw := payload(300<<10, 9)
	w, err := l.OpenWriter(s, int64(len(raw)), nil)
	must(t, err)
	writeVerified(t, w, raw)
	got, _ := os.ReadFile(filepath.Join(fs.dev, "mmcblk0p3"))
	if !bytes.Equal(got[:len(raw)], raw) {
		t.Fatal("partition content differs")
	}

	// PARTLABEL resolution on its own.
	a, _ := l.Slot("rootfs-a")
	if p, err := l.Resolve(a); err != nil || p != filepath.Join(fs.dev, "mmcblk0p2") {
		t.Fatalf("resolve by partlabel: %q %v", p, err)
	}

	// eMMC boot partition: force_ro is 0 during the write and 1 again after Close.
	ro := filepath.Join(fs.sys, "block/mmcblk0boot1/force_ro")
	b, _ := l.Slot("boot-b")
	w, err = l.OpenWriter(b, int64(len(raw)), nil)
	must(t, err)
	if v, _ := os.ReadFile(ro); strings.TrimSpace(string(v)) != "0" {
		t.Fatalf("force_ro during the write: %q", v)
	}
	_, err = w.Write(raw)
	must(t, err)
	must(t, w.Finish())
	must(t, w.Close())
	if v, _ := os.ReadFile(ro); strings.TrimSpace(string(v)) != "1" {
		t.Fatalf("force_ro after the write: %q", v)
	}
	got, _ = os.ReadFile(filepath.Join(fs.dev, "mmcblk0boot1"))
	if !bytes.Equal(got[:len(raw)], raw) {
		t.Fatal("boot partition content differs")
	}
	// A missing force_ro is an error, not a silent write.
	must(t, os.Remove(ro))
	if _, err := l.OpenWriter(b, 10, nil); err == nil {
		t.Fatal("no error without force_ro")
	}
}

// reservedNANDLayout is layoutDoc with bank A running and slot fw-b 512 KiB of a NAND with
// one bad block in it and 2 blocks reserved: 5 blocks of 64 KiB to write.
func reservedNANDLayout(t *testing.T) *Layout {
	fs := newFakeSystem(t, "adu.slot=A")
	doc := strings.Replace(layoutDoc, `mtd = "fw_b"`, "mtd = \"fw_b\"\nreserve_blocks = 2\nsize = \"512KiB\"", 1)
	l := fs.layout(t, doc)
	dev, _ := mtdsim.NewNAND(1<<20, 64<<10, 2<<10, mtdsim.WithFactoryBad(1))
	l.Env.OpenFlash = func(s *Slot) (Flash, error) { return dev, nil }
	return l
}

func TestLayoutFlashAndSize(t *testing.T) {
	l := reservedNANDLayout(t)
	s, _ := l.Slot("fw-b")
	// 8 blocks in 512 KiB, 1 bad, 2 reserved: 5 blocks.
	if _, err := l.OpenWriter(s, 5*64<<10+1, nil); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("err %v", err)
	}
	w, err := l.OpenWriter(s, 5*64<<10, nil)
	must(t, err)
	if w.Capacity() != 5*64<<10 || w.Stats().ReserveBlocks != 2 {
		t.Fatalf("capacity %d stats %+v", w.Capacity(), w.Stats())
	}
	w.Close()
	// A NOR device where the config says nand is refused.
	norDev, _ := mtdsim.NewNOR(1<<20, 64<<10)
	l.Env.OpenFlash = func(s *Slot) (Flash, error) { return norDev, nil }
	if _, err := l.OpenWriter(s, 10, nil); !errors.Is(err, ErrConfig) {
		t.Fatalf("nor for nand: %v", err)
	}
}

// Prepare resolves a slot once for a write: it refuses the running bank, tells the capacity
// (NAND: after bad blocks and the reserve) and hands out a target that opens the writer.
func TestPrepare(t *testing.T) {
	l := reservedNANDLayout(t)
	a, _ := l.Slot("fw-a")
	if _, err := l.Prepare(a); !errors.Is(err, ErrActiveSlot) {
		t.Fatalf("running bank: %v", err)
	}
	b, _ := l.Slot("fw-b")
	tg, err := l.Prepare(b)
	must(t, err)
	if tg.Capacity() != 5*64<<10 || tg.Slot() != b {
		t.Fatalf("capacity %d, slot %v", tg.Capacity(), tg.Slot())
	}
	raw := payload(5*64<<10, 3)
	w, err := tg.OpenWriter(int64(len(raw)), nil)
	must(t, err)
	writeVerified(t, w, raw)
}

// A shared slot is in use by the running bank whichever bank runs: it is never written,
// nor is storage that overlaps it, and root= naming it tells no bank.
func TestSharedSlotRefused(t *testing.T) {
	fs := newFakeSystem(t, "adu.slot=A")
	doc := layoutDoc + "[slots.class.data]\nspare = \"shared\"\n[[slots.slot]]\nclass = \"data\"\ntype = \"block\"\npath = \"/dev/mmcblk0boot0\"\n"
	doc = strings.Replace(doc, `path = "/dev/mmcblk0boot0"`, `path = "/dev/mmcblk0p9"`, 1) // boot-a moves out of the way
	l := fs.layout(t, doc)
	data, _ := l.Slot("data")
	if _, err := l.Prepare(data); !errors.Is(err, ErrActiveSlot) || !strings.Contains(err.Error(), "shared by every bank") {
		t.Fatalf("the shared slot: %v", err)
	}
	other, err := l.Target(filepath.Join(fs.dev, "mmcblk0boot0"))
	must(t, err)
	if _, err := l.Prepare(other); !errors.Is(err, ErrActiveSlot) || !strings.Contains(err.Error(), "active slot data") {
		t.Fatalf("the shared slot's storage by its path: %v", err)
	}
	r, err := l.OpenReader(data)
	must(t, err)
	must(t, r.Close())
	must(t, os.WriteFile(fs.cmdline, []byte("root=/dev/mmcblk0boot0\n"), 0o644))
	if _, err := l.ActiveBank(); !errors.Is(err, ErrActiveUnknown) || !strings.Contains(err.Error(), "shared slot") {
		t.Fatalf("root= naming the shared slot: %v", err)
	}
}
