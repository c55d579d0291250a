package ubootenv

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestParseConfigLegacy(t *testing.T) {
	src := `# comment
/dev/mtd0     0x40000   0x4000  0x20000  4   # NAND, up to 4 blocks

/dev/mtd0     -0x80000  4000    20000    4  1
`
	cfg, err := ParseConfig("fw_env.config", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	want := []Device{
		{Path: "/dev/mtd0", Kind: KindMTD, Offset: 0x40000, EnvSize: 0x4000, SectorSize: 0x20000, NumSectors: 4, Line: 2},
		{Path: "/dev/mtd0", Kind: KindMTD, Offset: -0x80000, EnvSize: 0x4000, SectorSize: 0x20000, NumSectors: 4, DisableLock: true, Line: 4},
	}
	if !reflect.DeepEqual(cfg.Devices, want) || !cfg.Redundant() || cfg.EnvSize() != 0x4000 {
		t.Fatalf("%+v", cfg.Devices)
	}
	for _, tc := range []struct {
		line, kind, path, vol string
		off                   int64
	}{
		{"/boot/uboot.env 0 0x4000", "file", "/boot/uboot.env", "", 0},
		{"/dev/mmcblk0boot1 -0x4000 0x4000", "file", "/dev/mmcblk0boot1", "", -0x4000},
		{"/dev/ubi0_1 0 0x4000", "ubi", "/dev/ubi0_1", "", 0},
		{"/dev/ubi0:env 0 0x4000", "ubi", "/dev/ubi0", "env", 0},
		{"/dev/mtd3:uboot-env 0x0 0x4000", "ubi", "/dev/mtd3", "uboot-env", 0},
		{"/dev/mmcblk0 010 0x4000", "file", "/dev/mmcblk0", "", 8}, // C octal, as sscanf %lli
		{"/dev/mmcblk0 100 0x4000", "file", "/dev/mmcblk0", "", 100},
	} {
		cfg, err := ParseConfig("c", []byte(tc.line))
		if err != nil {
			t.Fatalf("%s: %v", tc.line, err)
		}
		d := cfg.Devices[0]
		if d.Kind.String() != tc.kind || d.Path != tc.path || d.Volume != tc.vol || d.Offset != tc.off {
			t.Errorf("%s: %+v", tc.line, d)
		}
	}
}

func TestParseConfigLegacyErrors(t *testing.T) {
	for _, tc := range []struct{ src, want string }{
		{"", "no device"},
		{"# only\n\n", "no device"},
		{"\n/dev/mtd0 0", "c:2: need at least"},
		{"/dev/mtd0 zz 0x4000", "c:1: offset"},
		{"/dev/mtd0 0 0xzz", "c:1: env size"},
		{"/dev/mtd0 0 0x4000 0x1g", "c:1: sector size"},
		{"/dev/mtd0 0 0x4000 0x1000 q", "c:1: number of sectors"},
		{"/dev/mtd0 0 0x4000 0x1000 1 x", "c:1: disable_lock"},
		{"/dev/mtd0 0 0x4000 1 1 1 1", "c:1: 7 fields"},
		{"/dev/mtdblock2 0 0x4000", "c:1: /dev/mtdblock2 is an MTD block device"},
		{"a 0 0x4000\nb 0 0x4000\nc 0 0x4000", "c:3: a third device"},
		{"a 0 0x4000\nb 0 0x2000", "c:2: env size 0x2000 differs"},
		{"a 0 0x4000\n/dev/mtd1 0 0x4000", "c:2: device type mtd differs"},
		{"a 0 0x4000\na 0 0x4000", "c:2: copy 2 is at the same place"},
		{"a 0 0", "c:1: env size 0x0 out of range"},
		{"/dev/ubi0_0 0x100 0x4000", "c:1: UBI volume"},
	} {
		_, err := ParseConfig("c", []byte(tc.src))
		if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v (want %q)", tc.src, err, tc.want)
		}
	}
}

const yamlSrc = `# libubootenv extended config
uboot:
  size: 0x4000
  lockfile: /run/uboot.lock
  devices:
    - path: /dev/mtd0
      offset: 0xA0000
      sectorsize: 0x10000
      disablelock: yes
    - path: /dev/mtd0
      offset: 0xB0000
      sectorsize: 0x10000
  writelist:
    - bootcount:dw
    - upgrade_available:dw
appfoo:
  size: 0x1000
  devices:
    - path: /var/appfoo.env
      offset: 0
`

func TestParseConfigYAML(t *testing.T) {
	cfgs, err := ParseConfigYAML("env.yaml", []byte(yamlSrc))
	if err != nil {
		t.Fatal(err)
	}
	if len(cfgs) != 2 || cfgs[0].Namespace != "uboot" || cfgs[1].Namespace != "appfoo" {
		t.Fatalf("%+v", cfgs)
	}
	c := cfgs[0]
	want := []Device{
		{Path: "/dev/mtd0", Kind: KindMTD, Offset: 0xA0000, EnvSize: 0x4000, SectorSize: 0x10000, DisableLock: true, Line: 6},
		{Path: "/dev/mtd0", Kind: KindMTD, Offset: 0xB0000, EnvSize: 0x4000, SectorSize: 0x10000, Line: 10},
	}
	if !reflect.DeepEqual(c.Devices, want) || c.LockFile != "/run/uboot.lock" ||
		!reflect.DeepEqual(c.WriteList, []WriteVar{{"bootcount", "dw"}, {"upgrade_available", "dw"}}) {
		t.Fatalf("%+v", c)
	}
	if cfgs[1].Redundant() || cfgs[1].EnvSize() != 0x1000 {
		t.Fatalf("%+v", cfgs[1])
	}
	dir := t.TempDir()
	p := filepath.Join(dir, "fw_env.config")
	os.WriteFile(p, []byte(yamlSrc), 0o644)
	if !IsYAML(p, []byte(yamlSrc)) || IsYAML(p, []byte("/dev/ubi0:env 0 0x4000")) {
		t.Fatal("IsYAML")
	}
	got, err := LoadConfig(p, "appfoo")
	if err != nil || got.Namespace != "appfoo" {
		t.Fatal(got, err)
	}
	if _, err := LoadConfig(p, "nope"); !errors.Is(err, ErrConfig) {
		t.Fatal(err)
	}
	os.WriteFile(p, []byte("/dev/mtd1 0 0x4000\n"), 0o644)
	if got, err := LoadConfig(p, ""); err != nil || got.Devices[0].Path != "/dev/mtd1" {
		t.Fatal(got, err)
	}
}

func TestParseConfigYAMLErrors(t *testing.T) {
	for _, tc := range []struct{ src, want string }{
		{"- a\n", "y:1: top level"},
		{"u:\n  size: 0x4000\n", "y:2: namespace u has no devices"},
		{"u:\n  size: 0x4000\n  colour: red\n", `y:3: unknown key "colour"`},
		{"u:\n  size: big\n", `y:2: size: "big"`},
		{"u:\n  size: 0x4000\n  devices:\n    - path: /dev/mtd0\n      speed: 3\n", `y:5: unknown device key "speed"`},
		{"u:\n  size: 0x4000\n  devices:\n    - path: /dev/mtdblock0\n", "y:4: /dev/mtdblock0"},
		{"u:\n  size: 0x4000\n  devices:\n    - path: /a\n      disablelock: maybe\n", `y:5: disablelock`},
		{"u:\n  size: 0x4000\n  devices:\n    - path: /a\n  writelist:\n    - bootcount\n", `y:6: writelist entry "bootcount"`},
		{"u:\n  size: 0x4000\n  devices:\n    - path: /a\n  writelist:\n    - a:dw\n    - a:dw\n", `y:7: writelist entry "a" repeated`},
		{"u:\n  devices:\n    - path: /a\n", "y:3: env size 0x0"},
		{"u:\n  size: 0x4000\n  devices:\n    - path: /a\n    - path: /b\n    - path: /c\n", "y:6: a third device"},
		{"u: [\n", "y: yaml"},
	} {
		_, err := ParseConfigYAML("y", []byte(tc.src))
		if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v (want %q)", tc.src, err, tc.want)
		}
	}
}

func TestOpenFromConfig(t *testing.T) {
	dir := t.TempDir()
	disk := filepath.Join(dir, "disk.img")
	os.WriteFile(disk, make([]byte, 0x8000), 0o644)
	cfg, err := ParseConfig("c", []byte(disk+" 0x0 0x1000\n"+disk+" -0x1000 0x1000\n"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Open(cfg, WithLockPath(filepath.Join(dir, "l"))); !errors.Is(err, ErrNoValidCopy) {
		t.Fatal(err)
	}
	e, err := Open(cfg, WithLockPath(filepath.Join(dir, "l")), WithDefaults(nil), WithPadFF(), WithBigEndian())
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Set(Change{"k", "v"}); err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(disk)
	if raw[0x1000-1] != 0xFF {
		t.Fatal("not padded with 0xFF")
	}
	if _, err := Decode(raw[:0x1000], Format{Size: 0x1000, Redundant: true, BigEndian: true}); err != nil {
		t.Fatal(err)
	}
	mcfg, _ := ParseConfig("c", []byte("/dev/mtd0 0 0x1000\n"))
	if _, err := Open(mcfg, WithLockPath("")); !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "c:1: copy 1") {
		t.Fatal(err)
	}
}
