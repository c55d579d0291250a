package bootloader

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/aduflash/aduflash/bootloader/grubenv"
	"github.com/aduflash/aduflash/bootloader/mcuboottrailer"
	"github.com/aduflash/aduflash/bootloader/ubootenv"
	"github.com/aduflash/aduflash/internal/bytesize"
	"github.com/aduflash/aduflash/internal/errkind"
	"github.com/aduflash/aduflash/internal/tomlsection"
	"github.com/aduflash/aduflash/mtd"
)

// Errors of the [bootloader] section and of Open. Callers test them with errors.Is.
var (
	// ErrConfig: the [bootloader] section is missing, malformed, has unknown keys or is
	// inconsistent. The message names the key (bootloader.<key>).
	ErrConfig = errkind.New(errkind.Input, "bootloader: invalid configuration")
	// ErrUnsupported: the configured storage cannot be opened on this system (raw MTD and
	// UBI need Linux). The error also wraps ubootenv.ErrUnsupported or mtd.ErrUnsupported.
	ErrUnsupported = errkind.New(errkind.Environment, "bootloader: storage unsupported on this system")
)

// Backend types (the type key).
const (
	TypeUBoot   = "u-boot"
	TypeGRUB    = "grub"
	TypeMCUboot = "mcuboot"
)

// Defaults of the [bootloader] section.
const (
	DefaultEnvConfig = "/etc/fw_env.config"
	DefaultGRUBEnv   = "/boot/grub/grubenv"
)

// Size is a byte count that the config may write as an integer or as "256KiB", "0x40000",
// like the [slots] section's sizes.
type Size = bytesize.Size

// Config is the [bootloader] section of the device configuration. ParseConfig and
// LoadConfig return it with defaults filled in; Open applies the same defaults and checks
// to a Config built in code.
type Config struct {
	// Type is the backend: "u-boot", "grub" or "mcuboot". Required.
	Type string `toml:"type"`
	// Banks are the bank names, in order. u-boot and grub: default ["A", "B"]. mcuboot:
	// exactly two, the names of the primary and the secondary slot; default
	// ["primary", "secondary"].
	Banks []string `toml:"banks"`

	// Preset (u-boot) is the variable set: "aduflash" (default), "mender" or "rauc".
	Preset string `toml:"preset"`
	// EnvConfig (u-boot) is the fw_env.config file, legacy or YAML (default
	// /etc/fw_env.config).
	EnvConfig string `toml:"env_config"`
	// Namespace (u-boot) selects a namespace of a YAML fw_env.config ("" = the first).
	Namespace string `toml:"namespace"`
	// Attempts (u-boot) is how many boots a pending bank gets (0 = NewUBoot's default, 3).
	Attempts int `toml:"attempts"`
	// MenderParts (u-boot, preset mender) maps the banks to mender_boot_part numbers
	// (default A=2, B=3, i.e. the first bank 2 and the second 3).
	MenderParts map[string]int `toml:"mender_parts"`
	// LockFile (u-boot) overrides the lock file of fw_env.config (and libubootenv's default
	// /var/lock/fw_printenv.lock); "" disables locking. Absent: not overridden.
	LockFile *string `toml:"lock_file"`

	// GRUBEnv (grub) is the GRUB environment block file (default /boot/grub/grubenv).
	GRUBEnv string `toml:"grubenv"`

	// Primary and Secondary (mcuboot) are the devices holding MCUboot's two image slots: an
	// MTD name (as in /proc/mtd), an MTD number, or a path (/dev/mtdN; with WithFlashOpener,
	// whatever the opener understands, e.g. a file in tests). They may be the same device.
	Primary   string `toml:"primary"`
	Secondary string `toml:"secondary"`
	// Offset (mcuboot) is where the primary slot starts in its device (default 0).
	Offset Size `toml:"offset"`
	// SecondaryOffset (mcuboot) is where the secondary slot starts in its device. Default:
	// Offset when the two devices differ, Offset + Size when they are the same device.
	SecondaryOffset *Size `toml:"secondary_offset"`
	// Size (mcuboot) is the size of each slot. Default: the primary device's size from Offset
	// on; required when both slots are on the same device.
	Size Size `toml:"size"`
	// WriteSize (mcuboot) is MCUboot's flash write alignment (flash_area_align: 1, 2, 4, 8,
	// 16 or 32); 0 = the device's write size.
	WriteSize int `toml:"write_size"`
	// MaxAlign (mcuboot) is BOOT_MAX_ALIGN (8, 16 or 32); 0 = max(8, write size).
	MaxAlign int `toml:"max_align"`
	// Mode (mcuboot) is the upgrade MarkPending requests: "test" (default) or "permanent".
	Mode string `toml:"mode"`
}

// LoadConfig reads the [bootloader] section of the TOML file path; other sections are
// ignored.
func LoadConfig(path string) (Config, error) {
	return tomlsection.LoadFile(path, ParseConfig)
}

// ParseConfig parses the [bootloader] section of a TOML document, applies defaults and
// validates it. Other sections belong to other packages and are ignored; unknown keys inside
// [bootloader] are errors naming the key.
func ParseConfig(data []byte) (Config, error) {
	var c Config
	_, found, err := tomlsection.Decode(data, "bootloader", &c)
	if err != nil {
		return Config{}, fmt.Errorf("%w: %v", ErrConfig, err)
	}
	if !found {
		return Config{}, fmt.Errorf("%w: no [bootloader] section", ErrConfig)
	}
	return c.normalized()
}

func cfgErr(key, format string, a ...any) error {
	return fmt.Errorf("%w: bootloader.%s: %s", ErrConfig, key, fmt.Sprintf(format, a...))
}

// normalized returns c with the defaults of its type filled in, or an error naming the
// offending key.
func (c Config) normalized() (Config, error) {
	c.Banks = slices.Clone(c.Banks)
	if err := c.checkOwnedKeys(); err != nil {
		return c, err
	}
	if err := c.checkBankNames(); err != nil {
		return c, err
	}
	switch c.Type {
	case TypeUBoot:
		return c, c.normalizeUBoot()
	case TypeGRUB:
		return c, c.normalizeGRUB()
	case TypeMCUboot:
		return c, c.normalizeMCUboot()
	case "":
		return c, cfgErr("type", "missing (one of u-boot, grub, mcuboot)")
	}
	return c, cfgErr("type", "%q is not one of u-boot, grub, mcuboot", c.Type)
}

// checkOwnedKeys refuses a key of another backend type (grubenv with type u-boot).
func (c *Config) checkOwnedKeys() error {
	if !knownType(c.Type) {
		return nil // the type check names what is wrong
	}
	for _, o := range []struct {
		key, owner string
		set        bool
	}{
		{"preset", TypeUBoot, c.Preset != ""},
		{"env_config", TypeUBoot, c.EnvConfig != ""},
		{"namespace", TypeUBoot, c.Namespace != ""},
		{"attempts", TypeUBoot, c.Attempts != 0},
		{"mender_parts", TypeUBoot, c.MenderParts != nil},
		{"lock_file", TypeUBoot, c.LockFile != nil},
		{"grubenv", TypeGRUB, c.GRUBEnv != ""},
		{"primary", TypeMCUboot, c.Primary != ""},
		{"secondary", TypeMCUboot, c.Secondary != ""},
		{"offset", TypeMCUboot, c.Offset != 0},
		{"secondary_offset", TypeMCUboot, c.SecondaryOffset != nil},
		{"size", TypeMCUboot, c.Size != 0},
		{"write_size", TypeMCUboot, c.WriteSize != 0},
		{"max_align", TypeMCUboot, c.MaxAlign != 0},
		{"mode", TypeMCUboot, c.Mode != ""},
	} {
		if o.set && c.Type != o.owner {
			return cfgErr(o.key, "only for type %q, not %q", o.owner, c.Type)
		}
	}
	return nil
}

// checkBankNames: each bank name once, usable in an env variable and a slot path.
func (c *Config) checkBankNames() error {
	seen := map[string]bool{}
	for _, b := range c.Banks {
		if b == "" || strings.ContainsAny(b, " \t\n=/") || seen[b] {
			return cfgErr("banks", "bank name %q is empty, repeated or contains a space, '=' or '/'", b)
		}
		seen[b] = true
	}
	return nil
}

// defaultBanks fills in banks when the section leaves them out.
func (c *Config) defaultBanks(banks ...string) {
	if len(c.Banks) == 0 {
		c.Banks = banks
	}
}

func (c *Config) normalizeUBoot() error {
	c.defaultBanks("A", "B")
	c.Preset = cmp.Or(c.Preset, string(PresetAduflash))
	c.EnvConfig = cmp.Or(c.EnvConfig, DefaultEnvConfig)
	if len(c.Banks) < 2 {
		return cfgErr("banks", "need at least two banks, have %q", c.Banks)
	}
	switch Preset(c.Preset) {
	case PresetAduflash, PresetMender, PresetRAUC:
	default:
		return cfgErr("preset", "%q is not one of aduflash, mender, rauc", c.Preset)
	}
	if c.Attempts < 0 || c.Attempts > 255 {
		return cfgErr("attempts", "%d is not in 1..255", c.Attempts)
	}
	return c.normalizeMenderParts()
}

// normalizeMenderParts: mender_parts only with the mender preset, which has two banks, each
// with its own partition number (default A=2, B=3).
func (c *Config) normalizeMenderParts() error {
	if Preset(c.Preset) != PresetMender {
		if c.MenderParts != nil {
			return cfgErr("mender_parts", "only for preset \"mender\", not %q", c.Preset)
		}
		return nil
	}
	if len(c.Banks) != 2 {
		return cfgErr("banks", "the mender preset has exactly two banks, not %d", len(c.Banks))
	}
	for k, v := range c.MenderParts {
		if !slices.Contains(c.Banks, k) {
			return cfgErr("mender_parts", "%q is not one of the banks %q", k, c.Banks)
		}
		if v <= 0 {
			return cfgErr("mender_parts", "partition number %d of bank %q is not positive", v, k)
		}
	}
	if c.MenderParts == nil {
		c.MenderParts = map[string]int{c.Banks[0]: 2, c.Banks[1]: 3}
	}
	p0, ok0 := c.MenderParts[c.Banks[0]]
	p1, ok1 := c.MenderParts[c.Banks[1]]
	if !ok0 || !ok1 {
		return cfgErr("mender_parts", "needs a partition number for each of the banks %q", c.Banks)
	}
	if p0 == p1 {
		return cfgErr("mender_parts", "banks %q share partition %d", c.Banks, p0)
	}
	return nil
}

func (c *Config) normalizeGRUB() error {
	c.defaultBanks("A", "B")
	c.GRUBEnv = cmp.Or(c.GRUBEnv, DefaultGRUBEnv)
	if len(c.Banks) < 2 {
		return cfgErr("banks", "need at least two banks, have %q", c.Banks)
	}
	return nil
}

func (c *Config) normalizeMCUboot() error {
	c.defaultBanks("primary", "secondary")
	c.Mode = cmp.Or(c.Mode, string(UpgradeTest))
	if len(c.Banks) != 2 {
		return cfgErr("banks", "MCUboot has exactly two banks (primary slot, secondary slot), not %d", len(c.Banks))
	}
	if c.Primary == "" {
		return cfgErr("primary", "missing (an MTD name or number, or a device path)")
	}
	if c.Secondary == "" {
		return cfgErr("secondary", "missing (an MTD name or number, or a device path)")
	}
	if err := c.normalizeMCUbootSlots(); err != nil {
		return err
	}
	switch c.WriteSize {
	case 0, 1, 2, 4, 8, 16, 32:
	default:
		return cfgErr("write_size", "%d is not one of 1, 2, 4, 8, 16, 32", c.WriteSize)
	}
	switch c.MaxAlign {
	case 0, 8, 16, 32:
	default:
		return cfgErr("max_align", "%d is not one of 8, 16, 32", c.MaxAlign)
	}
	if c.MaxAlign != 0 && c.WriteSize > c.MaxAlign {
		return cfgErr("max_align", "%d is smaller than write_size %d", c.MaxAlign, c.WriteSize)
	}
	switch UpgradeMode(c.Mode) {
	case UpgradeTest, UpgradePermanent:
		return nil
	}
	return cfgErr("mode", "%q is not one of test, permanent", c.Mode)
}

// normalizeMCUbootSlots places the secondary slot (default: at Offset on its own device,
// right after the primary slot on a shared one) and refuses slots of one device that overlap.
func (c *Config) normalizeMCUbootSlots() error {
	same := c.Primary == c.Secondary
	off := c.Offset
	if c.SecondaryOffset != nil {
		off = *c.SecondaryOffset
	} else if same {
		off += c.Size
	}
	c.SecondaryOffset = &off // a copy: the caller's Config is not changed
	if !same {
		return nil
	}
	if c.Size == 0 {
		return cfgErr("size", "required when primary and secondary are the same device")
	}
	if lo, hi := min(c.Offset, off), max(c.Offset, off); hi-lo < c.Size {
		return cfgErr("secondary_offset", "the slots at %#x and %#x of %q (size %#x) overlap", int64(c.Offset), int64(off), c.Primary, int64(c.Size))
	}
	return nil
}

func knownType(t string) bool { return t == TypeUBoot || t == TypeGRUB || t == TypeMCUboot }

func toBanks(banks []string) []Bank {
	out := make([]Bank, len(banks))
	for i, b := range banks {
		out[i] = Bank(b)
	}
	return out
}

// FlashOpener opens the device of an MCUboot slot as named by the primary or secondary key,
// returning the flash, its geometry (Size, EraseSize, WriteSize, Type) and its close
// function.
type FlashOpener func(dev string) (mcuboottrailer.Flash, mtd.Info, func() error, error)

// OpenOption adjusts Open.
type OpenOption func(*openSettings)

type openSettings struct {
	paths mtd.Paths
	flash FlashOpener
}

// WithSysfsRoot sets where sysfs is mounted (default "/sys"): MTD and UBI look-ups, eMMC
// boot partitions' force_ro.
func WithSysfsRoot(root string) OpenOption { return func(s *openSettings) { s.paths.Sysfs = root } }

// WithDevRoot sets the /dev directory (default "/dev"): /dev/... paths of fw_env.config's
// MTD devices and of the mcuboot keys are looked up under it, as are MTD and UBI devices
// found by name or number.
func WithDevRoot(root string) OpenOption { return func(s *openSettings) { s.paths.Dev = root } }

// WithFlashOpener replaces how the mcuboot backend opens its primary and secondary devices
// (default: MTD through package mtd, Linux only). Tests pass a file-backed opener.
func WithFlashOpener(f FlashOpener) OpenOption { return func(s *openSettings) { s.flash = f } }

// closers collects the close functions of what Open opened.
type closers []func() error

func (c closers) close() error {
	var errs []error
	for i := len(c) - 1; i >= 0; i-- {
		errs = append(errs, c[i]())
	}
	return errors.Join(errs...)
}

// Open builds the backend cfg describes and returns it with the function that releases what
// it opened (MTD devices); the function is never nil and must be called once the backend is
// no longer used.
//
//   - u-boot: fw_env.config (legacy or YAML) is loaded with ubootenv.LoadConfig; its copies
//     are opened as files or block devices everywhere, and as raw MTD or UBI volumes on Linux
//     (package mtd); the env is read with ubootenv.New (an env with no valid copy, at Open
//     or at a later transition, is ubootenv.ErrNoValidCopy: the backend never writes a
//     default env of its own).
//   - grub: a grubenv.Store on the grubenv file (a missing file is an empty environment).
//   - mcuboot: the two slots on MTD devices (Linux), or on what WithFlashOpener opens.
func Open(cfg Config, options ...OpenOption) (Backend, func() error, error) {
	var s openSettings
	for _, o := range options {
		o(&s)
	}
	c, err := cfg.normalized()
	if err != nil {
		return nil, nil, err
	}
	var cl closers
	var b Backend
	switch c.Type {
	case TypeUBoot:
		b, err = openUBoot(c, s, &cl)
	case TypeGRUB:
		b, err = NewGRUB(grubenv.Store{Path: c.GRUBEnv}, GRUBConfig{Banks: toBanks(c.Banks)})
	case TypeMCUboot:
		b, err = openMCUboot(c, s, &cl)
	}
	if err != nil {
		cl.close()
		return nil, nil, err
	}
	return b, cl.close, nil
}

func openUBoot(c Config, s openSettings, cl *closers) (Backend, error) {
	ec, err := ubootenv.LoadConfig(c.EnvConfig, c.Namespace)
	if err != nil {
		return nil, err
	}
	if len(ec.Devices) != 1 && len(ec.Devices) != 2 {
		return nil, fmt.Errorf("%w: %s: %d devices, need 1 or 2", ubootenv.ErrConfig, ec.File, len(ec.Devices))
	}
	opts := ubootenv.Options{LockPath: ec.LockFile}
	opts.Format.Size = int(ec.EnvSize())
	if opts.LockPath == "" {
		opts.LockPath = ubootenv.DefaultLockPath
	}
	if c.LockFile != nil {
		opts.LockPath = *c.LockFile
	}
	for _, w := range ec.WriteList {
		opts.WriteList = append(opts.WriteList, w.Name)
	}
	var storages []ubootenv.Storage
	for i, d := range ec.Devices {
		st, closeFn, err := openEnvStorage(d, s)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: copy %d: %w", ec.File, d.Line, i+1, err)
		}
		if closeFn != nil {
			*cl = append(*cl, closeFn)
		}
		storages = append(storages, st)
	}
	env, err := ubootenv.New(opts, storages...)
	if err != nil {
		return nil, err
	}
	return NewUBoot(env, c.ubootConfig())
}

// ubootConfig is the UBootConfig of a normalized u-boot section.
func (c Config) ubootConfig() UBootConfig {
	var parts map[Bank]int
	if c.MenderParts != nil {
		parts = map[Bank]int{}
		for k, v := range c.MenderParts {
			parts[Bank(k)] = v
		}
	}
	return UBootConfig{Preset: Preset(c.Preset), Banks: toBanks(c.Banks), Attempts: c.Attempts, MenderParts: parts}
}

// FreshVars returns the variables that the u-boot section's preset sets in a fresh
// environment (U-Boot's default one) so that bank primary boots, nothing is on trial and no
// bank is bad: what a recovery script writes (recovery/ubootscript). Other backend types are
// ErrConfig.
func (c Config) FreshVars(primary Bank) (map[string]string, error) {
	c, err := c.normalized()
	if err != nil {
		return nil, err
	}
	if c.Type != TypeUBoot {
		return nil, cfgErr("type", "a fresh U-Boot environment needs type %q, not %q", TypeUBoot, c.Type)
	}
	return FreshVars(c.ubootConfig(), primary)
}

func openMCUboot(c Config, s openSettings, cl *closers) (Backend, error) {
	open := s.flash
	if open == nil {
		open = s.openMTDFlash
	}
	type dev struct {
		f    mcuboottrailer.Flash
		info mtd.Info
	}
	devs := map[string]dev{}
	slot := func(key, name string, off Size) (mcuboottrailer.Slot, error) {
		d, ok := devs[name]
		if !ok {
			f, info, closeFn, err := open(name)
			if err != nil {
				return mcuboottrailer.Slot{}, fmt.Errorf("bootloader.%s %q: %w", key, name, err)
			}
			if closeFn != nil {
				*cl = append(*cl, closeFn)
			}
			if info.Type.IsNAND() {
				return mcuboottrailer.Slot{}, fmt.Errorf("%w: bootloader.%s %q: MCUboot slots must be on NOR-like flash, not %s", ErrConfig, key, name, info.Type)
			}
			d = dev{f, info}
			devs[name] = d
		}
		size := int64(c.Size)
		if size == 0 {
			size = d.info.Size - int64(off)
		}
		if int64(off) < 0 || size <= 0 || int64(off)+size > d.info.Size {
			return mcuboottrailer.Slot{}, fmt.Errorf("%w: bootloader.%s %q: slot at %#x of size %#x does not fit the device (size %#x)", ErrConfig, key, name, int64(off), size, d.info.Size)
		}
		ws := c.WriteSize
		if ws == 0 {
			ws = d.info.WriteSize
		}
		return mcuboottrailer.Slot{Flash: d.f, Offset: int64(off), Size: size, EraseSize: d.info.EraseSize, WriteSize: ws, MaxAlign: c.MaxAlign}, nil
	}
	pri, err := slot("primary", c.Primary, c.Offset)
	if err != nil {
		return nil, err
	}
	sec, err := slot("secondary", c.Secondary, *c.SecondaryOffset)
	if err != nil {
		return nil, err
	}
	return NewMCUboot(MCUbootConfig{Primary: pri, Secondary: sec, PrimaryName: Bank(c.Banks[0]), SecondaryName: Bank(c.Banks[1]), Mode: UpgradeMode(c.Mode)})
}
