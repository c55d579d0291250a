package slots

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"unicode"

	"github.com/aduflash/aduflash/internal/bytesize"
	"github.com/aduflash/aduflash/internal/errkind"
	"github.com/aduflash/aduflash/internal/tomlsection"
)

// Errors of the configuration and the slot model. Callers test them with errors.Is.
var (
	// ErrConfig: the [slots] section is malformed, has unknown keys or is inconsistent.
	ErrConfig = errkind.New(errkind.Input, "slots: invalid configuration")
	// ErrUnknownSlot: no slot has that name.
	ErrUnknownSlot = errkind.New(errkind.Usage, "slots: unknown slot")
	// ErrActiveSlot: the target is (or overlaps) a slot of the active bank.
	ErrActiveSlot = errkind.New(errkind.Input, "slots: refusing to write the active bank")
	// ErrActiveUnknown: which bank is active could not be determined.
	ErrActiveUnknown = errkind.New(errkind.Environment, "slots: cannot tell which bank is active")
	// ErrTooLarge: the payload does not fit in the slot.
	ErrTooLarge = errkind.New(errkind.Input, "slots: payload too large for the slot")
	// ErrReserveExhausted: too many blocks went bad during the write.
	ErrReserveExhausted = errkind.New(errkind.Environment, "slots: bad-block reserve exhausted")
	// ErrMismatch: the slot does not hold the expected bytes (read-back verification).
	ErrMismatch = errkind.New(errkind.Environment, "slots: read-back mismatch")
	// ErrCursor: a resume cursor does not belong to this slot or write.
	ErrCursor = errkind.New(errkind.Input, "slots: invalid resume cursor")
)

// Storage types of a slot (the type key).
const (
	TypeFile     = "file"      // a regular file (path)
	TypeBlock    = "block"     // a block device or partition (path, partlabel or partuuid)
	TypeEMMCBoot = "emmc-boot" // an eMMC boot partition, /dev/mmcblkXbootY (force_ro handled)
	TypeMTD      = "mtd"       // a raw MTD device, NOR or NAND as the device reports (mtd = name or number, or path)
	TypeNOR      = "nor"       // a raw MTD device that must be NOR
	TypeNAND     = "nand"      // a raw MTD device that must be NAND (bad-block reserve counted at build time)
	TypeUBI      = "ubi"       // a UBI volume (ubi_volume = name)
)

// What a deployment does with the spare bank's slot of a class that the update does not
// write (the spare key of a [slots.class.NAME] table).
const (
	// SpareCopy (the default): the slot is filled with the running bank's slot of the class,
	// so that the bank booted next is whole.
	SpareCopy = "copy"
	// SpareKeep: the slot is left alone and keeps what it holds (a class the updates never
	// touch, such as a bootloader the bank does not boot from).
	SpareKeep = "keep"
	// SpareShared: one slot, without a bank, serves every bank (a data partition): it has no
	// spare, nothing is copied, and no update writes it.
	SpareShared = "shared"
)

// Sources of the active bank (the active key).
const (
	ActiveCmdline    = "cmdline"
	ActiveBootloader = "bootloader"
)

// Defaults.
const (
	DefaultCmdlineKey    = "adu.slot"
	DefaultCmdlineFile   = "/proc/cmdline"
	DefaultReserveBlocks = 0
	DefaultSyncInterval  = 4 << 20
)

// Size is a byte count that the config may write as an integer or as "64MiB", "0x20000".
type Size = bytesize.Size

// ParseSize parses "4096", "0x1000", "128KiB", "64MiB", "1GiB" (also K, M, G).
func ParseSize(s string) (int64, error) { return bytesize.Parse(s) }

// Config is the [slots] section of the device configuration.
type Config struct {
	// Active says where the active bank comes from: "cmdline" (default) or "bootloader".
	Active string `toml:"active"`
	// CmdlineKey is the kernel command line key naming the booted bank (default "adu.slot").
	// Without it on the command line, root= is matched against the slots.
	CmdlineKey string `toml:"cmdline_key"`
	// CmdlineFile is the file the kernel command line is read from (default "/proc/cmdline"):
	// another file stands in for it where the running kernel is not the device's (a
	// workstation, a container, a simulated device), and writing the new bank's key into it
	// plays a reboot. Env.Cmdline overrides it.
	CmdlineFile string `toml:"cmdline_file"`
	// Banks lists the bank names (default: the banks the slots use, sorted).
	Banks []string `toml:"banks"`
	// ReserveBlocks is the default NAND bad-block reserve of every raw NAND slot.
	ReserveBlocks int `toml:"reserve_blocks"`
	// SyncInterval is how many bytes a writer writes between syncs (and resume cursors).
	SyncInterval Size `toml:"sync_interval"`
	// Slots are the [[slots.slot]] entries.
	Slots []SlotConfig `toml:"slot"`
	// Classes are the [slots.class.NAME] tables, by class name.
	Classes map[string]ClassConfig `toml:"class"`
	// MCUs are the [[slots.mcu]] entries: MCUs attached to the gateway (mcu.go).
	MCUs []MCUConfig `toml:"mcu"`
}

// ClassConfig is a [slots.class.NAME] table: how the banks treat one slot class.
type ClassConfig struct {
	// Spare says what a deployment that does not write the class does with the spare bank's
	// slot of it: SpareCopy (default), SpareKeep or SpareShared.
	Spare string `toml:"spare"`
}

// Spare returns what a deployment that does not write class does with the spare bank's slot
// of it: SpareCopy, SpareKeep or SpareShared.
func (c *Config) Spare(class string) string {
	return cmp(c.Classes[class].Spare, SpareCopy)
}

// BankedClasses returns the slot classes that every bank has (not the shared ones), in the order
// of their first slot.
func (c *Config) BankedClasses() []string {
	var out []string
	for _, s := range c.Slots {
		if s.Bank != "" && !slices.Contains(out, s.Class) {
			out = append(out, s.Class)
		}
	}
	return out
}

// SlotConfig is one [[slots.slot]] entry.
type SlotConfig struct {
	// Name addresses the slot (default "<class>-<bank in lower case>", e.g. "rootfs-b");
	// "<bank>/<class>" ("B/rootfs") always works too.
	Name  string `toml:"name"`
	Class string `toml:"class"`
	Bank  string `toml:"bank"`
	Type  string `toml:"type"`
	// Storage: one of these, as the type allows.
	Path      string `toml:"path"`       // file, block, emmc-boot, mtd (/dev/mtdN)
	PartLabel string `toml:"partlabel"`  // block: GPT partition name
	PartUUID  string `toml:"partuuid"`   // block: GPT partition UUID
	MTD       string `toml:"mtd"`        // mtd/nor/nand: MTD name, or its number
	UBIVolume string `toml:"ubi_volume"` // ubi: volume name
	// Offset of the slot inside the storage (file, block, raw MTD; erase-block aligned on MTD).
	Offset Size `toml:"offset"`
	// Size of the slot: the limit at run time (default: the storage's size from Offset on),
	// and the slot size `aduimport check-fit` uses at build time.
	Size Size `toml:"size"`
	// EraseSize is the erase block size, for check-fit (at run time the device's counts).
	EraseSize Size `toml:"erase_size"`
	// ReserveBlocks overrides the section's reserve_blocks for this NAND slot (-1: none).
	ReserveBlocks *int `toml:"reserve_blocks"`
	// MCUboot trailer settings for check-fit of MCUboot images written to this slot.
	MCUbootAlign         int  `toml:"mcuboot_align"`
	MCUbootMaxAlign      int  `toml:"mcuboot_max_align"`
	MCUbootMaxSectors    int  `toml:"mcuboot_max_sectors"`
	MCUbootOverwriteOnly bool `toml:"mcuboot_overwrite_only"`
}

// Reserve returns the bad-block reserve of the slot in blocks (0 unless the slot is raw
// NAND or could be).
func (sc SlotConfig) Reserve(c *Config) int {
	if sc.ReserveBlocks != nil {
		return max(*sc.ReserveBlocks, 0)
	}
	return max(c.ReserveBlocks, 0)
}

// IsMTD reports a raw MTD slot (mtd, nor or nand).
func (sc SlotConfig) IsMTD() bool {
	return sc.Type == TypeMTD || sc.Type == TypeNOR || sc.Type == TypeNAND
}

// LoadConfig reads the [slots] section of the TOML file path; other sections are ignored.
func LoadConfig(path string) (*Config, error) {
	return tomlsection.LoadFile(path, ParseConfig)
}

// ParseConfig parses the [slots] section of a TOML document, applies defaults and validates
// it. Other sections belong to other packages and are ignored; unknown keys inside [slots]
// are errors naming the key.
func ParseConfig(data []byte) (*Config, error) {
	c := &Config{}
	_, found, err := tomlsection.Decode(data, "slots", c)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrConfig, err)
	}
	if !found {
		return nil, fmt.Errorf("%w: no [slots] section", ErrConfig)
	}
	if err := c.normalize(); err != nil {
		return nil, err
	}
	return c, nil
}

func cfgErr(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrConfig, fmt.Sprintf(format, a...))
}

// normalize fills in the defaults of the section and its slots and checks them: every slot
// well formed, every class in every bank. It is also how NewLayout makes an empty config.
func (c *Config) normalize() error {
	if err := c.normalizeSection(); err != nil {
		return err
	}
	names := map[string]int{}           // slot name → index
	classBanks := map[string][]string{} // class → banks with a slot of it
	for i := range c.Slots {
		s := &c.Slots[i]
		where := fmt.Sprintf("slots.slot[%d]", i)
		if err := c.normalizeSlot(where, s, classBanks[s.Class]); err != nil {
			return err
		}
		if j, dup := names[s.Name]; dup {
			return cfgErr("%s: name %q already used by slots.slot[%d]", where, s.Name, j)
		}
		names[s.Name] = i
		classBanks[s.Class] = append(classBanks[s.Class], s.Bank)
	}
	if len(c.Banks) == 0 {
		for _, s := range c.Slots {
			if s.Bank != "" {
				c.Banks = append(c.Banks, s.Bank)
			}
		}
		slices.Sort(c.Banks)
		c.Banks = slices.Compact(c.Banks)
	}
	if err := c.checkClassTables(classBanks); err != nil {
		return err
	}
	if err := c.normalizeMCUs(); err != nil {
		return err
	}
	return c.checkEveryClassInEveryBank(classBanks)
}

// checkClassTables: every [slots.class.NAME] table names a class that has slots, with a
// known spare value.
func (c *Config) checkClassTables(classBanks map[string][]string) error {
	for _, class := range slices.Sorted(maps.Keys(c.Classes)) {
		if _, ok := classBanks[class]; !ok {
			return cfgErr("slots.class.%s: no slot has class %q", class, class)
		}
		switch sp := c.Classes[class].Spare; sp {
		case "", SpareCopy, SpareKeep, SpareShared:
		default:
			return cfgErr("slots.class.%s.spare = %q: want %q, %q or %q", class, sp, SpareCopy, SpareKeep, SpareShared)
		}
	}
	return nil
}

// normalizeSection fills in the section's defaults and checks its own keys.
func (c *Config) normalizeSection() error {
	c.Active = cmp(c.Active, ActiveCmdline)
	c.CmdlineKey = cmp(c.CmdlineKey, DefaultCmdlineKey)
	c.CmdlineFile = cmp(c.CmdlineFile, DefaultCmdlineFile)
	if c.SyncInterval == 0 {
		c.SyncInterval = DefaultSyncInterval
	}
	if c.Active != ActiveCmdline && c.Active != ActiveBootloader {
		return cfgErr("slots.active = %q: want %q or %q", c.Active, ActiveCmdline, ActiveBootloader)
	}
	if c.ReserveBlocks < 0 {
		return cfgErr("slots.reserve_blocks = %d: must be ≥ 0", c.ReserveBlocks)
	}
	for _, b := range c.Banks {
		if !validBankName(b) {
			return cfgErr("slots.banks: bad bank name %q", b)
		}
	}
	return nil
}

func validBankName(b string) bool { return b != "" && !strings.ContainsAny(b, "/ \t") }

// normalizeSlot fills in the slot's default name and checks it: class and bank names, one
// slot of its class per bank (classBanks lists the banks that have one so far), the storage
// keys its type takes.
func (c *Config) normalizeSlot(where string, s *SlotConfig, classBanks []string) error {
	if err := checkClassName(s.Class); err != nil {
		return cfgErr("%s: %v", where, err)
	}
	if err := c.checkBank(where, s, classBanks); err != nil {
		return err
	}
	if s.Bank == "" {
		s.Name = cmp(s.Name, s.Class)
	}
	s.Name = cmp(s.Name, s.Class+"-"+strings.ToLower(s.Bank))
	if strings.Contains(s.Name, "/") {
		return cfgErr("%s: name %q may not contain /", where, s.Name)
	}
	if s.ReserveBlocks != nil && *s.ReserveBlocks < 0 {
		return cfgErr("%s: reserve_blocks = %d: must be ≥ 0", where, *s.ReserveBlocks)
	}
	if err := s.checkStorage(); err != nil {
		return fmt.Errorf("%w: %s: %w", ErrConfig, where, err)
	}
	if s.EraseSize < 0 || s.EraseSize > 0 && s.Offset%s.EraseSize != 0 && s.IsMTD() {
		return cfgErr("%s: offset %d is not a multiple of erase_size %d", where, s.Offset, s.EraseSize)
	}
	return nil
}

// checkClassName: a class names slots ("B/rootfs") and anti-rollback floors in the
// bootloader environment ("rootfs:7"): no '/', no space, no control character.
func checkClassName(class string) error {
	if class == "" || strings.ContainsFunc(class, func(r rune) bool { return r == '/' || unicode.IsSpace(r) || unicode.IsControl(r) }) {
		return fmt.Errorf("class %q: want a name such as rootfs", class)
	}
	return nil
}

// checkBank: a slot of a shared class is the class's only slot and has no bank; any other
// slot has a configured bank that has no slot of its class yet (classBanks).
func (c *Config) checkBank(where string, s *SlotConfig, classBanks []string) error {
	if c.Spare(s.Class) == SpareShared {
		switch {
		case s.Bank != "":
			return cfgErr("%s: class %s is shared (slots.class.%s.spare = %q): its one slot has no bank", where, s.Class, s.Class, SpareShared)
		case len(classBanks) > 0:
			return cfgErr("%s: class %s is shared (slots.class.%s.spare = %q): it has one slot, not two", where, s.Class, s.Class, SpareShared)
		}
		return nil
	}
	if !validBankName(s.Bank) {
		return cfgErr("%s: bank %q: want a bank name such as A (or, for one slot that every bank uses, slots.class.%s.spare = %q)", where, s.Bank, s.Class, SpareShared)
	}
	if len(c.Banks) > 0 && !slices.Contains(c.Banks, s.Bank) {
		return cfgErr("%s: bank %q is not in banks %v", where, s.Bank, c.Banks)
	}
	if slices.Contains(classBanks, s.Bank) {
		return cfgErr("%s: bank %s already has a %s slot", where, s.Bank, s.Class)
	}
	return nil
}

// checkStorage: the storage keys the slot's type takes, and only those.
func (s *SlotConfig) checkStorage() error {
	set := func(vs ...string) int {
		n := 0
		for _, v := range vs {
			if v != "" {
				n++
			}
		}
		return n
	}
	switch s.Type {
	case TypeFile, TypeEMMCBoot:
		if s.Path == "" || set(s.PartLabel, s.PartUUID, s.MTD, s.UBIVolume) > 0 {
			return fmt.Errorf("type %q takes path (only)", s.Type)
		}
	case TypeBlock:
		if set(s.Path, s.PartLabel, s.PartUUID) != 1 || set(s.MTD, s.UBIVolume) > 0 {
			return fmt.Errorf("type %q takes exactly one of path, partlabel, partuuid", s.Type)
		}
	case TypeMTD, TypeNOR, TypeNAND:
		if set(s.Path, s.MTD) != 1 || set(s.PartLabel, s.PartUUID, s.UBIVolume) > 0 {
			return fmt.Errorf("type %q takes exactly one of mtd (name or number) and path", s.Type)
		}
	case TypeUBI:
		if s.UBIVolume == "" || set(s.Path, s.PartLabel, s.PartUUID, s.MTD) > 0 {
			return fmt.Errorf("type %q takes ubi_volume (only)", s.Type)
		}
		if s.Offset != 0 {
			return fmt.Errorf("type %q has no offset", s.Type)
		}
	case "":
		return errors.New("missing type (one of file, block, emmc-boot, mtd, nor, nand, ubi)")
	default:
		return fmt.Errorf("unknown type %q (one of file, block, emmc-boot, mtd, nor, nand, ubi)", s.Type)
	}
	return nil
}

// checkEveryClassInEveryBank: banks switch together, so each needs a slot of every class.
func (c *Config) checkEveryClassInEveryBank(classBanks map[string][]string) error {
	for _, class := range slices.Sorted(maps.Keys(classBanks)) {
		if c.Spare(class) == SpareShared {
			continue
		}
		for _, b := range c.Banks {
			if !slices.Contains(classBanks[class], b) {
				return cfgErr("class %q has no slot in bank %s: every bank needs every class (banks switch together)", class, b)
			}
		}
	}
	return nil
}

// Slot returns the entry named name, or "<bank>/<class>".
func (c *Config) Slot(name string) (*SlotConfig, error) {
	bank, class, two := strings.Cut(name, "/")
	for i := range c.Slots {
		s := &c.Slots[i]
		if s.Name == name || two && s.Bank != "" && strings.EqualFold(s.Bank, bank) && s.Class == class {
			return s, nil
		}
	}
	return nil, fmt.Errorf("%w: %q (configured: %s)", ErrUnknownSlot, name, strings.Join(c.names(), ", "))
}

// ForClass returns the slots of a class, one per bank, in bank order; of a shared class, its
// one slot.
func (c *Config) ForClass(class string) []*SlotConfig {
	var out []*SlotConfig
	for _, b := range append(slices.Clone(c.Banks), "") {
		for i := range c.Slots {
			if c.Slots[i].Class == class && c.Slots[i].Bank == b {
				out = append(out, &c.Slots[i])
			}
		}
	}
	return out
}

func (c *Config) names() []string {
	var out []string
	for _, s := range c.Slots {
		out = append(out, s.Name)
	}
	return out
}
