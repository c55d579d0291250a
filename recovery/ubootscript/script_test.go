package ubootscript

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aduflash/aduflash/bootloader"
	"github.com/aduflash/aduflash/internal/golden"
	"github.com/aduflash/aduflash/internal/gptdisk"
	"github.com/aduflash/aduflash/internal/gptdisk/gpttest"
	"github.com/aduflash/aduflash/recovery/console"
	"github.com/aduflash/aduflash/slots"
	"github.com/aduflash/aduflash/slots/slotstest"
)

// boardTOML is a board with a slot of every storage U-Boot writes: GPT partitions by name and
// by PARTUUID, a raw offset of the disk, an eMMC boot partition, NAND partitions, UBI volumes
// and SPI NOR.
const boardTOML = `
[slots]
banks = ["A", "B"]
reserve_blocks = 2

` + slotstest.RootfsA + `
[[slots.slot]]
class = "rootfs"
bank = "B"
type = "block"
partuuid = "6E8C21A2-0C1A-4D3E-9F00-0000000000B2"

[[slots.slot]]
class = "boot"
bank = "A"
type = "block"
path = "/dev/mmcblk0"
offset = "1MiB"
size = "512KiB"

[[slots.slot]]
class = "boot"
bank = "B"
type = "emmc-boot"
path = "/dev/mmcblk0boot1"
size = "512KiB"

[[slots.slot]]
class = "kernel"
bank = "A"
type = "nand"
mtd = "kernel_a"
erase_size = "128KiB"

[[slots.slot]]
class = "kernel"
bank = "B"
type = "nand"
mtd = "kernel_b"
erase_size = "128KiB"

[[slots.slot]]
class = "app"
bank = "A"
type = "ubi"
ubi_volume = "app_a"
size = "8MiB"

[[slots.slot]]
class = "app"
bank = "B"
type = "ubi"
ubi_volume = "app_b"
size = "8MiB"

[[slots.slot]]
name = "mcu-a"
class = "firmware"
bank = "A"
type = "nor"
mtd = "mcu"
size = "256KiB"
erase_size = "4KiB"

[[slots.slot]]
name = "mcu-b"
class = "firmware"
bank = "B"
type = "nor"
mtd = "mcu"
offset = "256KiB"
size = "256KiB"
erase_size = "4KiB"

[uboot]
load_addr = 0x40400000
load_size = "64MiB"
mmc_dev = 1
mtdids = "nand0=gpmi-nand,nor0=spi0.0"
mtdparts = "mtdparts=gpmi-nand:4m(boot),1m(kernel_a),1m(kernel_b),-(ubi);spi0.0:64k(spl),512k(mcu)"
ubi_part = "ubi"
sf_probe = "0:0"

[bootloader]
type = "u-boot"
preset = "aduflash"
`

// testGPT is the disk's table: rootfs_a at block 0x1000, rootfs_b at 0x3000, 0x2000 blocks each.
func testGPT(t testing.TB) *gptdisk.Table {
	t.Helper()
	d := gpttest.Disk(t, 0x6000*gptdisk.BlockSize, gpttest.Banks(0x1000, 0x3000, 0x2000))
	tab, err := gptdisk.Read(bytes.NewReader(d))
	if err != nil {
		t.Fatal(err)
	}
	return tab
}

func testBoard(t testing.TB, doc string) Board {
	t.Helper()
	sc, err := slots.ParseConfig([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	uc, err := ParseConfig([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	bc, err := bootloader.ParseConfig([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	return Board{Slots: sc, UBoot: uc, Env: &bc, GPT: testGPT(t), GPTName: "disk.img"}
}

// img is an image of n bytes of a fixed pattern, served as name.
func img(t testing.TB, name string, n int) Image {
	t.Helper()
	im, err := ImageOf(name, bytes.NewReader(bytes.Repeat([]byte("aduflash"), n/8+1)[:n]))
	if err != nil {
		t.Fatal(err)
	}
	return im
}

// TestGolden: one script per storage kind, bank A made primary (bank B for the B slots).
func TestGolden(t *testing.T) {
	for _, tc := range []struct {
		name   string
		bank   string
		check  Check
		writes []Write
	}{
		{"gpt-partlabel", "A", "", []Write{{"rootfs-a", img(t, "rootfs.img", 3<<20+100)}}},
		{"gpt-partuuid", "B", "", []Write{{"B/rootfs", img(t, "rootfs.img", 2<<20)}}},
		{"mmc-raw", "A", CheckCRC32, []Write{{"boot-a", img(t, "boot.img", 300<<10)}}},
		{"emmc-boot", "B", "", []Write{{"boot-b", img(t, "boot.img", 512<<10)}}},
		{"nand", "A", "", []Write{{"kernel-a", img(t, "Image", 768<<10)}}},
		{"ubi", "B", "", []Write{{"app-b", img(t, "app.ubifs", 5<<20)}}},
		{"spi-nor", "B", CheckCRC32, []Write{{"mcu-b", img(t, "mcu.bin", 100<<10)}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Generate(testBoard(t, boardTOML), tc.writes, Options{Bank: tc.bank, Check: tc.check})
			if err != nil {
				t.Fatal(err)
			}
			golden.Check(t, filepath.Join("testdata", "golden", tc.name+".txt"), s.Text())
		})
	}
}

// TestSteps: the steps a console driver runs, their markers, and which ones write.
func TestSteps(t *testing.T) {
	b := testBoard(t, boardTOML)
	s, err := Generate(b, []Write{{"rootfs-a", img(t, "rootfs.img", 4096)}, {"kernel-a", img(t, "Image", 4096)}}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, st := range s.Steps {
		names = append(names, st.Name)
		if st.Kind != KindReset && st.Done != console.DonePrefix+st.Name {
			t.Errorf("step %s: Done %q", st.Name, st.Done)
		}
		if st.Writes != (st.Kind == KindWrite || st.Kind == KindEnv) {
			t.Errorf("step %s: Writes = %v", st.Name, st.Writes)
		}
		if (st.Image != nil) != (st.Slot != "" && st.Kind != KindLocate) {
			t.Errorf("step %s: Image %v for slot %q", st.Name, st.Image, st.Slot)
		}
	}
	want := "prepare|locate rootfs-a|load rootfs-a|check rootfs-a|write rootfs-a|verify rootfs-a|load kernel-a|check kernel-a|write kernel-a|verify kernel-a|env|reset"
	if got := strings.Join(names, "|"); got != want {
		t.Fatalf("steps %s, want %s", got, want)
	}
	if s.Bank != "A" {
		t.Fatalf("bank %q, want the first bank", s.Bank)
	}
	// Every step that writes comes after the check of what it writes.
	checked := map[string]bool{}
	for _, st := range s.Steps {
		switch st.Kind {
		case KindCheck:
			checked[st.Slot] = true
		case KindWrite:
			if !checked[st.Slot] {
				t.Fatalf("%s before its check", st.Name)
			}
		}
	}
}

func TestKeepEnv(t *testing.T) {
	b := testBoard(t, boardTOML)
	b.Env = nil
	s, err := Generate(b, []Write{{"boot-a", img(t, "boot.img", 4096)}}, Options{KeepEnv: true})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(s.Text(), "saveenv") || s.Bank != "" {
		t.Fatalf("KeepEnv script saves the env:\n%s", s.Text())
	}
	if _, err := Generate(b, nil, Options{}); !errors.Is(err, ErrConfig) {
		t.Fatalf("a fresh env without [bootloader]: %v, want ErrConfig", err)
	}
}

func TestRefusals(t *testing.T) {
	b := testBoard(t, boardTOML)
	for _, tc := range []struct {
		name  string
		board func(b *Board)
		w     Write
		o     Options
		want  error
		msg   string
	}{
		{"too large for the partition", nil, Write{"rootfs-a", img(t, "rootfs.img", 0x2000*512+1)}, Options{}, ErrTooLarge, "takes 4194304"},
		{"too large for the RAM", func(b *Board) { b.UBoot.LoadSize = 1 << 20 }, Write{"rootfs-a", img(t, "rootfs.img", 1<<20+1)}, Options{}, ErrTooLarge, "load_size"},
		{"NAND reserve counted", nil, Write{"kernel-a", img(t, "Image", 1<<20-2*128<<10+1)}, Options{}, ErrTooLarge, "takes 786432"},
		{"no GPT given", func(b *Board) { b.GPT = nil }, Write{"rootfs-a", img(t, "rootfs.img", 512)}, Options{}, ErrNeedGPT, `partition "rootfs_a"`},
		{"name U-Boot would read", nil, Write{"rootfs-a", img(t, "root fs;reset", 512)}, Options{}, ErrCommand, "image name"},
		{"unknown slot", nil, Write{"rootfs-c", img(t, "x", 512)}, Options{}, slots.ErrUnknownSlot, "rootfs-c"},
		{"unknown bank", nil, Write{"rootfs-a", img(t, "x", 512)}, Options{Bank: "C"}, slots.ErrUnknownSlot, `"C"`},
		{"unknown check", nil, Write{"rootfs-a", img(t, "x", 512)}, Options{Check: "md5"}, ErrCommand, "md5"},
		{"empty image", nil, Write{"rootfs-a", Image{Name: "x"}}, Options{}, ErrTooLarge, "empty"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := b
			u := *b.UBoot
			b.UBoot = &u
			if tc.board != nil {
				tc.board(&b)
			}
			_, err := Generate(b, []Write{tc.w}, tc.o)
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("Generate = %v, want %v naming %q", err, tc.want, tc.msg)
			}
		})
	}
}

// TestUnreachable: slots U-Boot cannot write as configured are refused, with the reason.
func TestUnreachable(t *testing.T) {
	for _, tc := range []struct {
		name, slot, uboot, msg string
	}{
		{"file", `type = "file"
path = "/data/slot.img"`, "", "is a file"},
		{"sda", `type = "block"
path = "/dev/sda2"`, "", "U-Boot knows no name"},
		{"nand inside a partition", `type = "nand"
mtd = "kernel"
offset = "1MiB"`, `mtdids = "nand0=n"
mtdparts = "n:4m(kernel)"`, "inside a partition"},
		{"nor without mtdparts", `type = "nor"
mtd = "mcu"`, "", "not in uboot.mtdparts"},
		{"ubi without ubi_part", `type = "ubi"
ubi_volume = "v"`, "", "ubi_part"},
		{"nand as nor", `type = "nand"
mtd = "spl"`, `mtdids = "nor0=spi0.0"
mtdparts = "spi0.0:64k(spl)"`, "nor0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			doc := "[slots]\n[[slots.slot]]\nclass = \"x\"\nbank = \"A\"\n" + tc.slot +
				"\n[[slots.slot]]\nclass = \"x\"\nbank = \"B\"\ntype = \"block\"\npath = \"/dev/mmcblk0\"\n" +
				"[uboot]\nload_addr = 0x40000000\nload_size = \"1MiB\"\n" + tc.uboot + "\n[bootloader]\ntype = \"u-boot\"\n"
			_, err := Generate(testBoard(t, doc), []Write{{"x-a", img(t, "x.img", 4096)}}, Options{})
			if !errors.Is(err, ErrUnreachable) || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("Generate = %v, want ErrUnreachable naming %q", err, tc.msg)
			}
		})
	}
}

// TestLineLimit: a command longer than U-Boot's console takes is refused, not cut.
func TestLineLimit(t *testing.T) {
	b := testBoard(t, boardTOML)
	long := strings.Repeat("x", 200)
	_, err := Generate(b, []Write{{"rootfs-a", img(t, long, 4096)}}, Options{})
	if !errors.Is(err, ErrCommand) || !strings.Contains(err.Error(), fmt.Sprintf("U-Boot takes %d", console.MaxCommand)) {
		t.Fatalf("Generate with a 200-byte image name = %v, want ErrCommand", err)
	}
}

func TestConfig(t *testing.T) {
	for _, tc := range []struct{ doc, msg string }{
		{"[uboot]\nload_size = 1\n", "load_addr: missing"},
		{"[uboot]\nload_addr = 1\n", "load_size: missing"},
		{"[uboot]\nload_addr = 1\nload_size = 1\nmtdids = \"nand0=x\"\n", "go together"},
		{"[uboot]\nload_addr = 1\nload_size = 1\nmtdids = \"nand0=x\"\nmtdparts = \"y:1m(a)\"\n", `device "y" is not in mtdids`},
		{"[uboot]\nload_addr = 1\nload_size = 1\nubi_part = \"a b\"\n", "shell would read"},
		{"[uboot]\nload_addr = 1\nload_size = 1\nbogus = 1\n", "bogus"},
		{"[slots]\n", "no [uboot] section"},
	} {
		if _, err := ParseConfig([]byte(tc.doc)); !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("ParseConfig(%q) = %v, want ErrConfig naming %q", tc.doc, err, tc.msg)
		}
	}
}

// TestExampleConfig: the [uboot] section of examples/aduagent.toml reaches every slot of the
// example: the rootfs by the GPT, the kernel on NAND, the MCU's firmware on SPI NOR.
func TestExampleConfig(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "..", "examples", "aduagent.toml"))
	if err != nil {
		t.Fatal(err)
	}
	b := testBoard(t, string(doc))
	s, err := Generate(b, []Write{{"rootfs-b", img(t, "rootfs.img", 1<<20)}, {"kernel-b", img(t, "Image", 1<<20)}, {"mcu-b", img(t, "mcu.bin", 64<<10)}}, Options{Bank: "B"})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"mmc write 0x40400000 0x3000 0x800", "nand erase.part kernel_b", "sf update 0x40400000 0x40000 0x10000", "setenv adu_slot B"} {
		if !strings.Contains(s.Text(), want) {
			t.Errorf("the example's script lacks %q", want)
		}
	}
}

// TestConsoleSteps: what recovery/console runs: every step but the reset, each done when its
// last command printed Done; the steps that check what the board received are marked so,
// and the steps of an image name it. Every line fits the console with its status marker.
func TestConsoleSteps(t *testing.T) {
	b := testBoard(t, boardTOML)
	s, err := Generate(b, []Write{{"rootfs-a", img(t, "rootfs.img", 4096)}}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	steps := s.ConsoleSteps()
	var got []string
	for i, cs := range steps {
		st := s.Steps[i]
		mark := ""
		if cs.Checks {
			mark = "?"
		}
		got = append(got, cs.Name+mark)
		if cs.Name != st.Name || len(cs.Commands) != len(st.Commands) {
			t.Fatalf("step %d: %+v from %+v", i, cs, st)
		}
		for j, c := range cs.Commands {
			if c.Line != st.Commands[j] || len(c.Line) > console.MaxCommand {
				t.Errorf("step %s: command %q", cs.Name, c.Line)
			}
			if want := j == len(cs.Commands)-1; want != (len(c.Expect) == 1 && c.Expect[0] == st.Done) {
				t.Errorf("step %s: command %d expects %q", cs.Name, j, c.Expect)
			}
		}
		if (st.Image != nil) != (cs.Image == "rootfs.img" && cs.Size == 4096) {
			t.Errorf("step %s: image %q of %d bytes", cs.Name, cs.Image, cs.Size)
		}
	}
	if want := "prepare|locate rootfs-a?|load rootfs-a?|check rootfs-a?|write rootfs-a|verify rootfs-a|env"; strings.Join(got, "|") != want {
		t.Fatalf("console steps %s, want %s", strings.Join(got, "|"), want)
	}
}

// TestBoardEnv: [uboot.env] variables go into the fresh environment after U-Boot's default
// ones and before the preset's; one the preset sets, and names or values U-Boot's shell would
// read otherwise, are refused.
func TestBoardEnv(t *testing.T) {
	doc := strings.Replace(boardTOML, "[bootloader]", "[uboot.env]\nbootcmd = \"echo booting bank ${adu_slot}; run adu_load\"\nadu_load = \"load mmc 1:2 ${kernel_addr_r} Image\"\n\n[bootloader]", 1)
	s, err := Generate(testBoard(t, doc), []Write{{"boot-a", img(t, "boot.img", 4096)}}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	text := s.Text()
	order := []string{"env default -a", "setenv adu_load 'load mmc 1:2 ${kernel_addr_r} Image'",
		"setenv bootcmd 'echo booting bank ${adu_slot}; run adu_load'", "setenv adu_slot A", "saveenv"}
	at := 0
	for _, want := range order {
		i := strings.Index(text[at:], want)
		if i < 0 {
			t.Fatalf("the env step lacks %q after the previous lines:\n%s", want, text)
		}
		at += i
	}
	b := testBoard(t, doc)
	b.UBoot.Env = map[string]string{"adu_slot": "B"}
	if _, err := Generate(b, nil, Options{}); !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "uboot.env.adu_slot") {
		t.Fatalf("a preset variable in uboot.env: %v, want ErrConfig", err)
	}
	for _, bad := range []string{"\"a b\" = \"x\"", "x = \"it's\""} {
		if _, err := ParseConfig([]byte("[uboot]\nload_addr = 1\nload_size = 1\n[uboot.env]\n" + bad + "\n")); !errors.Is(err, ErrConfig) {
			t.Errorf("uboot.env %s: %v, want ErrConfig", bad, err)
		}
	}
}
