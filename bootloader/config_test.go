package bootloader_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"

	"github.com/aduflash/aduflash/bootloader"
	"github.com/aduflash/aduflash/bootloader/grubenv"
	"github.com/aduflash/aduflash/bootloader/mcuboottrailer"
	"github.com/aduflash/aduflash/bootloader/ubootenv"
	"github.com/aduflash/aduflash/mtd"
)

func parse(t *testing.T, src string) bootloader.Config {
	t.Helper()
	c, err := bootloader.ParseConfig([]byte(src))
	if err != nil {
		t.Fatalf("%s\n%v", src, err)
	}
	return c
}

func sizePtr(n int64) *bootloader.Size { s := bootloader.Size(n); return &s }

func TestConfigDefaults(t *testing.T) {
	for _, tc := range []struct {
		src  string
		want bootloader.Config
	}{
		{`[bootloader]
type = "u-boot"`, bootloader.Config{Type: "u-boot", Banks: []string{"A", "B"}, Preset: "aduflash", EnvConfig: "/etc/fw_env.config"}},
		{`[bootloader]
type = "u-boot"
preset = "mender"`, bootloader.Config{Type: "u-boot", Banks: []string{"A", "B"}, Preset: "mender", EnvConfig: "/etc/fw_env.config",
			MenderParts: map[string]int{"A": 2, "B": 3}}},
		{`[bootloader]
type = "u-boot"
preset = "mender"
banks = ["a", "b"]
mender_parts = { a = 5, b = 7 }
env_config = "/etc/env.yaml"
namespace = "uboot"
attempts = 2
lock_file = ""`, bootloader.Config{Type: "u-boot", Banks: []string{"a", "b"}, Preset: "mender", EnvConfig: "/etc/env.yaml",
			Namespace: "uboot", Attempts: 2, MenderParts: map[string]int{"a": 5, "b": 7}, LockFile: new(string)}},
		{`[bootloader]
type = "u-boot"
preset = "rauc"
banks = ["A", "B", "C"]`, bootloader.Config{Type: "u-boot", Banks: []string{"A", "B", "C"}, Preset: "rauc", EnvConfig: "/etc/fw_env.config"}},
		{`[bootloader]
type = "grub"`, bootloader.Config{Type: "grub", Banks: []string{"A", "B"}, GRUBEnv: "/boot/grub/grubenv"}},
		{`[bootloader]
type = "grub"
grubenv = "/boot/efi/grubenv"
banks = ["x", "y"]`, bootloader.Config{Type: "grub", Banks: []string{"x", "y"}, GRUBEnv: "/boot/efi/grubenv"}},
		{`[bootloader]
type = "mcuboot"
primary = "image-0"
secondary = "image-1"`, bootloader.Config{Type: "mcuboot", Banks: []string{"primary", "secondary"}, Primary: "image-0", Secondary: "image-1",
			SecondaryOffset: sizePtr(0), Mode: "test"}},
		{`[bootloader]
type = "mcuboot"
banks = ["A", "B"]
primary = "mcu"
secondary = "mcu"
offset = "4KiB"
size = "256KiB"
write_size = 4
max_align = 16
mode = "permanent"`, bootloader.Config{Type: "mcuboot", Banks: []string{"A", "B"}, Primary: "mcu", Secondary: "mcu", Offset: 4096,
			SecondaryOffset: sizePtr(4096 + 256<<10), Size: 256 << 10, WriteSize: 4, MaxAlign: 16, Mode: "permanent"}},
		{`[bootloader]
type = "mcuboot"
primary = "3"
secondary = "/dev/mtd4"
offset = 0x1000
secondary_offset = 0x2000`, bootloader.Config{Type: "mcuboot", Banks: []string{"primary", "secondary"}, Primary: "3", Secondary: "/dev/mtd4",
			Offset: 0x1000, SecondaryOffset: sizePtr(0x2000), Mode: "test"}},
	} {
		got := parse(t, tc.src)
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s\ngot  %+v\nwant %+v", tc.src, got, tc.want)
		}
	}
}

func TestConfigErrorsNameTheKey(t *testing.T) {
	for _, tc := range []struct{ src, want string }{
		{``, "no [bootloader] section"},
		{`type = "u-boot"`, "no [bootloader] section"},
		{`[bootloader]`, "bootloader.type: missing"},
		{`[bootloader]
type = "lilo"`, `bootloader.type: "lilo" is not one of u-boot, grub, mcuboot`},
		{`[bootloader]
type = "u-boot"
preset = "foo"`, `bootloader.preset: "foo" is not one of aduflash, mender, rauc`},
		{`[bootloader]
type = "u-boot"
attempts = 300`, `bootloader.attempts: 300 is not in 1..255`},
		{`[bootloader]
type = "u-boot"
attempts = -1`, `bootloader.attempts`},
		{`[bootloader]
type = "u-boot"
banks = ["A"]`, `bootloader.banks: need at least two banks`},
		{`[bootloader]
type = "u-boot"
banks = ["A", "A"]`, `bootloader.banks: bank name "A"`},
		{`[bootloader]
type = "grub"
banks = ["A", "B C"]`, `bootloader.banks: bank name "B C"`},
		{`[bootloader]
type = "u-boot"
mender_parts = { A = 2, B = 3 }`, `bootloader.mender_parts: only for preset "mender"`},
		{`[bootloader]
type = "u-boot"
preset = "mender"
mender_parts = { A = 2, C = 3 }`, `bootloader.mender_parts: "C" is not one of the banks`},
		{`[bootloader]
type = "u-boot"
preset = "mender"
mender_parts = { A = 2 }`, `bootloader.mender_parts: needs a partition number`},
		{`[bootloader]
type = "u-boot"
preset = "mender"
mender_parts = { A = 2, B = 2 }`, `bootloader.mender_parts: banks ["A" "B"] share partition 2`},
		{`[bootloader]
type = "u-boot"
preset = "mender"
mender_parts = { A = 0, B = 2 }`, `bootloader.mender_parts: partition number 0`},
		{`[bootloader]
type = "u-boot"
preset = "mender"
banks = ["A", "B", "C"]`, `bootloader.banks: the mender preset has exactly two banks`},
		{`[bootloader]
type = "u-boot"
grubenv = "/x"`, `bootloader.grubenv: only for type "grub", not "u-boot"`},
		{`[bootloader]
type = "grub"
env_config = "/x"`, `bootloader.env_config: only for type "u-boot"`},
		{`[bootloader]
type = "grub"
primary = "mcu"`, `bootloader.primary: only for type "mcuboot"`},
		{`[bootloader]
type = "mcuboot"
primary = "a"
secondary = "b"
lock_file = "/x"`, `bootloader.lock_file: only for type "u-boot"`},
		{`[bootloader]
type = "mcuboot"
secondary = "b"`, `bootloader.primary: missing`},
		{`[bootloader]
type = "mcuboot"
primary = "a"`, `bootloader.secondary: missing`},
		{`[bootloader]
type = "mcuboot"
primary = "a"
secondary = "a"`, `bootloader.size: required when primary and secondary are the same device`},
		{`[bootloader]
type = "mcuboot"
primary = "a"
secondary = "a"
size = 0x2000
secondary_offset = 0x1000`, `bootloader.secondary_offset: the slots at 0x0 and 0x1000 of "a" (size 0x2000) overlap`},
		{`[bootloader]
type = "mcuboot"
primary = "a"
secondary = "b"
banks = ["A", "B", "C"]`, `bootloader.banks: MCUboot has exactly two banks`},
		{`[bootloader]
type = "mcuboot"
primary = "a"
secondary = "b"
write_size = 3`, `bootloader.write_size: 3 is not one of 1, 2, 4, 8, 16, 32`},
		{`[bootloader]
type = "mcuboot"
primary = "a"
secondary = "b"
max_align = 4`, `bootloader.max_align: 4 is not one of 8, 16, 32`},
		{`[bootloader]
type = "mcuboot"
primary = "a"
secondary = "b"
write_size = 32
max_align = 16`, `bootloader.max_align: 16 is smaller than write_size 32`},
		{`[bootloader]
type = "mcuboot"
primary = "a"
secondary = "b"
mode = "maybe"`, `bootloader.mode: "maybe" is not one of test, permanent`},
		{`[bootloader]
type = "mcuboot"
primary = "a"
secondary = "b"
size = "lots"`, `bad size "lots"`},
		{`[bootloader]
type = "u-boot"
colour = "red"`, `unknown key(s) in the bootloader section: bootloader.colour`},
		{`[bootloader]
type = "u-boot"
[bootloader.extra]
x = 1`, `unknown key(s) in the bootloader section: bootloader.extra`},
		{`[bootloader]
type = 3`, `bootloader.type`},
	} {
		_, err := bootloader.ParseConfig([]byte(tc.src))
		if !errors.Is(err, bootloader.ErrConfig) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s\ngot  %v\nwant %q", tc.src, err, tc.want)
		}
	}
}

func TestConfigOtherSectionsIgnored(t *testing.T) {
	c := parse(t, `
top = "level"
[slots]
whatever = 1
[[slots.slot]]
colour = "red"
[bootloader]
type = "grub"
[agent]
hub = { anything = true }
`)
	if c.Type != "grub" {
		t.Fatalf("%+v", c)
	}
}

func TestConfigExampleFile(t *testing.T) {
	c, err := bootloader.LoadConfig(filepath.Join("..", "examples", "aduagent.toml"))
	if err != nil {
		t.Fatal(err)
	}
	want := bootloader.Config{Type: "u-boot", Banks: []string{"A", "B"}, Preset: "aduflash", EnvConfig: "/etc/fw_env.config", Attempts: 3}
	if !reflect.DeepEqual(c, want) {
		t.Fatalf("got  %+v\nwant %+v", c, want)
	}
	// Every commented-out alternative of the example parses too.
	data, err := os.ReadFile(filepath.Join("..", "examples", "aduagent.toml"))
	if err != nil {
		t.Fatal(err)
	}
	sec := string(data)[strings.Index(string(data), "[bootloader]\n"):]
	sec = sec[:strings.Index(sec, "\n[agent]")]
	blocks := strings.Split(sec, "\n\n") // the active one, 4 alternatives, the [agent] comment
	if len(blocks) != 6 {
		t.Fatalf("%d blocks in the example's [bootloader] section", len(blocks))
	}
	for _, b := range blocks[1:5] {
		var lines []string
		for _, l := range strings.Split(b, "\n") {
			if v, ok := strings.CutPrefix(l, "# "); ok && strings.Contains(v, " = ") {
				lines = append(lines, v)
			}
		}
		src := "[bootloader]\n" + strings.Join(lines, "\n")
		parse(t, src)
	}
	if _, err := bootloader.LoadConfig(filepath.Join(t.TempDir(), "missing.toml")); !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
}

const cfgEnvSize = 0x4000

// initEnv writes a valid env (U-Boot's own variables) into the files of a fw_env.config.
func initEnv(t *testing.T, files ...string) {
	t.Helper()
	var st []ubootenv.Storage
	for _, f := range files {
		if err := os.WriteFile(f, make([]byte, cfgEnvSize), 0o644); err != nil {
			t.Fatal(err)
		}
		st = append(st, &ubootenv.FileStorage{Path: f})
	}
	e, err := ubootenv.New(ubootenv.Options{Format: ubootenv.Format{Size: cfgEnvSize}, HasDefaults: true}, st...)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Set(ubootenv.Change{Name: "bootcmd", Value: "run adu_boot"}); err != nil {
		t.Fatal(err)
	}
}

func TestOpenUBoot(t *testing.T) {
	for _, form := range []string{"legacy", "yaml"} {
		t.Run(form, func(t *testing.T) {
			dir := t.TempDir()
			env1, env2 := filepath.Join(dir, "env1"), filepath.Join(dir, "env2")
			initEnv(t, env1, env2)
			lock := filepath.Join(dir, "lock", "fw_env.lock")
			cfgPath := filepath.Join(dir, "fw_env.config")
			var src, ns string
			if form == "legacy" {
				src = fmt.Sprintf("%s 0 %#x\n%s 0 %#x\n", env1, cfgEnvSize, env2, cfgEnvSize)
			} else {
				ns = "uboot"
				src = fmt.Sprintf("other:\n  size: 0x1000\n  devices:\n    - path: /nonexistent\nuboot:\n  size: %#x\n  lockfile: %s\n  devices:\n    - path: %s\n    - path: %s\n",
					cfgEnvSize, lock, env1, env2)
			}
			if err := os.WriteFile(cfgPath, []byte(src), 0o644); err != nil {
				t.Fatal(err)
			}
			cfg := parse(t, fmt.Sprintf("[bootloader]\ntype = \"u-boot\"\nenv_config = %q\nnamespace = %q\nattempts = 2\n", cfgPath, ns))
			if form == "legacy" {
				cfg.Namespace = ""
				cfg.LockFile = &lock
			}
			b, closeFn, err := bootloader.Open(cfg, bootloader.WithSysfsRoot(filepath.Join(dir, "sys")), bootloader.WithDevRoot(filepath.Join(dir, "dev")))
			if err != nil {
				t.Fatal(err)
			}
			defer func() {
				if err := closeFn(); err != nil {
					t.Error(err)
				}
			}()
			if _, ok := b.(*bootloader.UBoot); !ok {
				t.Fatalf("%T", b)
			}
			st, err := b.State()
			if err != nil || st.Primary != "A" || st.Pending != "" {
				t.Fatalf("%+v %v", st, err)
			}
			if err := b.MarkPending("B"); err != nil {
				t.Fatal(err)
			}
			st, err = b.State()
			want := bootloader.State{Primary: "B", Pending: "B", AttemptsLeft: 2, Fallback: "A"}
			if err != nil || !reflect.DeepEqual(st, want) {
				t.Fatalf("%+v %v", st, err)
			}
			if _, err := os.Stat(lock); err != nil {
				t.Errorf("lock file: %v", err)
			}
			// The env as ubootenv reads it on its own.
			ec, err := ubootenv.LoadConfig(cfgPath, ns)
			if err != nil {
				t.Fatal(err)
			}
			e, err := ubootenv.Open(ec, ubootenv.WithLockPath(""))
			if err != nil {
				t.Fatal(err)
			}
			for k, v := range map[string]string{"adu_slot": "B", "adu_prev_slot": "A", "upgrade_available": "1", "bootlimit": "2", "bootcount": "0", "bootcmd": "run adu_boot"} {
				if got, ok := e.Get(k); !ok || got != v {
					t.Errorf("%s = %q (set %v), want %q", k, got, ok, v)
				}
			}
			if info := e.Info(); !info.Redundant || info.UsingDefaults {
				t.Errorf("%+v", info)
			}
		})
	}
}

// When both copies of the env turn invalid after Open, no transition starts over from an
// empty env: each fails with ubootenv.ErrNoValidCopy and writes nothing.
func TestUBootRefusesEnvWithNoValidCopy(t *testing.T) {
	dir := t.TempDir()
	env1, env2 := filepath.Join(dir, "env1"), filepath.Join(dir, "env2")
	initEnv(t, env1, env2)
	cfgPath := filepath.Join(dir, "fw_env.config")
	os.WriteFile(cfgPath, fmt.Appendf(nil, "%s 0 %#x\n%s 0 %#x\n", env1, cfgEnvSize, env2, cfgEnvSize), 0o644)
	noLock := ""
	b, closeFn, err := bootloader.Open(bootloader.Config{Type: "u-boot", EnvConfig: cfgPath, LockFile: &noLock})
	if err != nil {
		t.Fatal(err)
	}
	defer closeFn()
	if err := b.MarkPending("B"); err != nil {
		t.Fatal(err)
	}
	var torn [][]byte
	for _, f := range []string{env1, env2} {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		data[100] ^= 0xff
		if err := os.WriteFile(f, data, 0o644); err != nil {
			t.Fatal(err)
		}
		torn = append(torn, data)
	}
	for name, op := range map[string]func() error{
		"Confirm B": func() error { return b.Confirm("B") }, "MarkBad B": func() error { return b.MarkBad("B") },
		"MarkPending A": func() error { return b.MarkPending("A") },
	} {
		if err := op(); !errors.Is(err, ubootenv.ErrNoValidCopy) {
			t.Errorf("%s: %v", name, err)
		}
	}
	for i, f := range []string{env1, env2} {
		if now, _ := os.ReadFile(f); !bytes.Equal(now, torn[i]) {
			t.Errorf("copy %d was written", i+1)
		}
	}
}

func TestOpenUBootErrors(t *testing.T) {
	dir := t.TempDir()
	// No fw_env.config.
	_, _, err := bootloader.Open(bootloader.Config{Type: "u-boot", EnvConfig: filepath.Join(dir, "none")})
	if !errors.Is(err, ubootenv.ErrConfig) {
		t.Fatal(err)
	}
	// A config that is invalid as a Config.
	if _, _, err := bootloader.Open(bootloader.Config{Type: "u-boot", Preset: "foo"}); !errors.Is(err, bootloader.ErrConfig) || !strings.Contains(err.Error(), "bootloader.preset") {
		t.Fatal(err)
	}
	// An env with no valid copy is not replaced by a default env.
	env := filepath.Join(dir, "env")
	if err := os.WriteFile(env, make([]byte, cfgEnvSize), 0o644); err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "fw_env.config")
	os.WriteFile(cfgPath, fmt.Appendf(nil, "%s 0 %#x\n", env, cfgEnvSize), 0o644)
	noLock := ""
	if _, _, err := bootloader.Open(bootloader.Config{Type: "u-boot", EnvConfig: cfgPath, LockFile: &noLock}); !errors.Is(err, ubootenv.ErrNoValidCopy) {
		t.Fatal(err)
	}
}

// An MTD-backed fw_env.config needs Linux; on Linux it is opened through package mtd (and
// here fails, as the fake /dev has no MTD device).
func TestOpenUBootMTD(t *testing.T) {
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "fw_env.config")
	os.WriteFile(cfgPath, []byte("/dev/mtd3 0 0x4000 0x10000\n"), 0o644)
	noLock := ""
	_, _, err := bootloader.Open(bootloader.Config{Type: "u-boot", EnvConfig: cfgPath, LockFile: &noLock},
		bootloader.WithSysfsRoot(filepath.Join(dir, "sys")), bootloader.WithDevRoot(filepath.Join(dir, "dev")))
	if runtime.GOOS != "linux" {
		if !errors.Is(err, bootloader.ErrUnsupported) || !errors.Is(err, ubootenv.ErrUnsupported) {
			t.Fatal(err)
		}
		return
	}
	if err == nil || errors.Is(err, bootloader.ErrUnsupported) || !errors.Is(err, ubootenv.ErrStorage) || !strings.Contains(err.Error(), filepath.Join(dir, "dev", "mtd3")) {
		t.Fatal(err)
	}
}

func TestOpenGRUB(t *testing.T) {
	path := filepath.Join(t.TempDir(), "grubenv")
	b, closeFn, err := bootloader.Open(parse(t, fmt.Sprintf("[bootloader]\ntype = \"grub\"\ngrubenv = %q\n", path)))
	if err != nil {
		t.Fatal(err)
	}
	defer closeFn()
	if _, ok := b.(*bootloader.GRUB); !ok {
		t.Fatalf("%T", b)
	}
	if err := b.MarkPending("B"); err != nil {
		t.Fatal(err)
	}
	st, err := b.State()
	if err != nil || st.Primary != "B" || st.Pending != "B" || st.Fallback != "A" {
		t.Fatalf("%+v %v", st, err)
	}
	vars, err := grubenv.Store{Path: path}.Vars()
	if err != nil || vars["ORDER"] != "B A" || vars["adu_pending"] != "B" {
		t.Fatalf("%v %v", vars, err)
	}
}

// fileFlash is a NOR flash in a file: erase writes 0xFF.
type fileFlash struct{ f *os.File }

func (ff fileFlash) ReadAt(p []byte, off int64) (int, error)  { return ff.f.ReadAt(p, off) }
func (ff fileFlash) WriteAt(p []byte, off int64) (int, error) { return ff.f.WriteAt(p, off) }
func (ff fileFlash) Erase(off, length int64) error {
	_, err := ff.f.WriteAt([]byte(strings.Repeat("\xff", int(length))), off)
	return err
}

func fileFlashOpener(t *testing.T, opened *[]string) bootloader.FlashOpener {
	return func(dev string) (mcuboottrailer.Flash, mtd.Info, func() error, error) {
		*opened = append(*opened, dev)
		f, err := os.OpenFile(dev, os.O_RDWR, 0)
		if err != nil {
			return nil, mtd.Info{}, nil, err
		}
		fi, err := f.Stat()
		if err != nil {
			f.Close()
			return nil, mtd.Info{}, nil, err
		}
		return fileFlash{f}, mtd.Info{Type: mtd.TypeNOR, Size: fi.Size(), EraseSize: 4096, WriteSize: 1}, f.Close, nil
	}
}

func TestOpenMCUbootFiles(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "mcu.bin")
	if err := os.WriteFile(path, []byte(strings.Repeat("\xff", 2*mcuSlotSize)), 0o644); err != nil {
		t.Fatal(err)
	}
	var opened []string
	cfg := parse(t, fmt.Sprintf("[bootloader]\ntype = \"mcuboot\"\nbanks = [\"A\", \"B\"]\nprimary = %q\nsecondary = %q\nsize = %d\nwrite_size = 4\n", path, path, mcuSlotSize))
	b, closeFn, err := bootloader.Open(cfg, bootloader.WithFlashOpener(fileFlashOpener(t, &opened)))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := b.(*bootloader.MCUboot); !ok {
		t.Fatalf("%T", b)
	}
	st, err := b.State()
	if err != nil || !reflect.DeepEqual(st, bootloader.State{Primary: "A"}) {
		t.Fatalf("%+v %v", st, err)
	}
	if err := b.MarkPending("A"); !errors.Is(err, bootloader.ErrPrimaryBank) {
		t.Fatal(err)
	}
	if err := closeFn(); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(opened, []string{path}) {
		t.Fatalf("opened %q (one device shared by both slots)", opened)
	}

	// A slot that does not fit its device.
	cfg.Size = 2 * mcuSlotSize
	cfg.SecondaryOffset = nil
	if _, _, err := bootloader.Open(cfg, bootloader.WithFlashOpener(fileFlashOpener(t, &opened))); !errors.Is(err, bootloader.ErrConfig) || !strings.Contains(err.Error(), "bootloader.secondary") {
		t.Fatal(err)
	}
	// Without an opener the devices are MTD: Linux only.
	_, _, err = bootloader.Open(bootloader.Config{Type: "mcuboot", Primary: "image-0", Secondary: "image-1"},
		bootloader.WithSysfsRoot(filepath.Join(dir, "sys")), bootloader.WithDevRoot(filepath.Join(dir, "dev")))
	switch {
	case runtime.GOOS != "linux" && !errors.Is(err, bootloader.ErrUnsupported):
		t.Fatal(err)
	case runtime.GOOS == "linux" && !errors.Is(err, mtd.ErrNotFound):
		t.Fatal(err)
	}
}
