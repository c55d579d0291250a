package slots

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/aduflash/aduflash/mtd"
)

// BootState is what the active-bank rule needs from the bootloader (bootloader.Banks adapts a
// bootloader backend to it).
type BootState interface {
	// BootBanks returns the bank the bootloader boots by default and the bank on trial ("" when
	// none is).
	BootBanks() (primary, pending string, err error)
}

// Env is where a Layout finds the system: the device and sysfs roots, the kernel command
// line, the bootloader, and optional hooks that open storage (simulators, tests). The zero
// Env means /dev, /sys, the config's cmdline_file (/proc/cmdline) and real devices.
type Env struct {
	Dev        string    // default "/dev"; a slot path under /dev/ is looked up under Dev
	Sysfs      string    // default "/sys"
	Cmdline    string    // default: Config.CmdlineFile
	Bootloader BootState // needed when the config says active = "bootloader"

	// Optional hooks replacing how storage is opened (nil: real devices).
	OpenFlash  func(s *Slot) (Flash, error)
	OpenBlock  func(s *Slot) (dev BlockDevice, size int64, err error)
	OpenVolume func(s *Slot) (Volume, error)
}

func (e Env) dev() string   { return cmp(e.Dev, "/dev") }
func (e Env) sysfs() string { return cmp(e.Sysfs, "/sys") }
func (e Env) mtdPaths() mtd.Paths {
	return mtd.Paths{Sysfs: e.Sysfs, Dev: e.Dev}
}

func cmp(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

// Layout is a configured slot layout on one system.
type Layout struct {
	Config *Config
	Env    Env
}

// NewLayout returns the layout of c (nil: no configured slots) on env.
func NewLayout(c *Config, env Env) *Layout {
	if c == nil {
		c = &Config{}
		_ = c.normalize()
	}
	return &Layout{Config: c, Env: env}
}

// Slot is a slot of the layout, or an ad-hoc target (Bank == "") named by a path.
type Slot struct {
	SlotConfig
	adhoc bool
}

// AdHoc reports a target that is not a configured slot.
func (s *Slot) AdHoc() bool { return s.adhoc }

func (s *Slot) String() string {
	if s.adhoc {
		return s.Path
	}
	return s.Name
}

// Slots returns every configured slot.
func (l *Layout) Slots() []*Slot {
	out := make([]*Slot, len(l.Config.Slots))
	for i := range l.Config.Slots {
		out[i] = &Slot{SlotConfig: l.Config.Slots[i]}
	}
	return out
}

// Slot returns the configured slot called name ("rootfs-b") or "<bank>/<class>" ("B/rootfs").
func (l *Layout) Slot(name string) (*Slot, error) {
	sc, err := l.Config.Slot(name)
	if err != nil {
		return nil, err
	}
	return &Slot{SlotConfig: *sc}, nil
}

var emmcBootRe = regexp.MustCompile(`^mmcblk[0-9]+boot[0-9]+$`)

// Target returns the configured slot called arg, or else an ad-hoc slot for the path arg:
// an MTD character device (/dev/mtdN), an eMMC boot partition, another block device, or a
// regular file (created when missing).
func (l *Layout) Target(arg string) (*Slot, error) {
	if s, err := l.Slot(arg); err == nil {
		return s, nil
	}
	if !strings.ContainsAny(arg, `/\.`) {
		if _, err := os.Lstat(arg); err != nil {
			return nil, fmt.Errorf("%w: %q is neither a configured slot (%s) nor an existing file", ErrUnknownSlot, arg, strings.Join(l.Config.names(), ", "))
		}
	}
	s := &Slot{SlotConfig: SlotConfig{Name: arg, Path: arg, Type: TypeFile}, adhoc: true}
	fi, err := os.Stat(arg)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return s, nil
	case err != nil:
		return nil, err
	case fi.IsDir():
		return nil, fmt.Errorf("%s: is a directory", arg)
	case fi.Mode()&fs.ModeDevice != 0 && fi.Mode()&fs.ModeCharDevice != 0:
		s.Type = TypeMTD
	case fi.Mode()&fs.ModeDevice != 0:
		s.Type = TypeBlock
		if real, err := filepath.EvalSymlinks(arg); err == nil && emmcBootRe.MatchString(filepath.Base(real)) {
			s.Type = TypeEMMCBoot
		}
	}
	return s, nil
}

// devPath maps a /dev/... path of the config onto the Env's device root.
func (l *Layout) devPath(p string) string {
	if rest, ok := strings.CutPrefix(p, "/dev/"); ok && l.Env.Dev != "" {
		return filepath.Join(l.Env.Dev, rest)
	}
	return p
}

// Resolve returns the path of the slot's storage: the file or device node, the MTD
// character device, or the UBI volume's character device.
func (l *Layout) Resolve(s *Slot) (string, error) {
	switch {
	case s.adhoc:
		return s.Path, nil
	case s.PartLabel != "":
		return l.byLinkOrGPT("by-partlabel", s.PartLabel, "")
	case s.PartUUID != "":
		return l.byLinkOrGPT("by-partuuid", "", strings.ToLower(s.PartUUID))
	case s.Type == TypeUBI:
		v, err := l.Env.mtdPaths().FindVolume(s.UBIVolume)
		if err != nil {
			return "", fmt.Errorf("slot %s: %w", s.Name, err)
		}
		return v.Path, nil
	case s.IsMTD() && s.MTD != "":
		p := l.Env.mtdPaths()
		if n, err := strconv.Atoi(s.MTD); err == nil {
			return p.DevicePath(n), nil
		}
		n, err := p.FindMTD(s.MTD)
		if err != nil {
			return "", fmt.Errorf("slot %s: %w", s.Name, err)
		}
		return p.DevicePath(n), nil
	}
	return l.devPath(s.Path), nil
}

// byLinkOrGPT resolves a partition by name or GUID through udev's /dev/disk/<dir> link, or,
// on a system without those links (busybox mdev), from the disks' GPTs (byGPT).
func (l *Layout) byLinkOrGPT(dir, label, uuid string) (string, error) {
	if _, err := os.Stat(filepath.Join(l.Env.dev(), "disk", dir)); errors.Is(err, fs.ErrNotExist) {
		return l.byGPT(label, uuid)
	}
	return l.byLink(dir, label+uuid)
}

func (l *Layout) byLink(dir, name string) (string, error) {
	link := filepath.Join(l.Env.dev(), "disk", dir, name)
	p, err := filepath.EvalSymlinks(link)
	if err != nil {
		return "", fmt.Errorf("%w: %s: %v", ErrUnknownSlot, link, err)
	}
	return p, nil
}

// identity is what tells two storages apart: the resolved path, the device number of a
// device node, and the sysfs directory of a block device (to see partitions in disks).
type identity struct {
	path  string
	rdev  uint64
	isDev bool
	sys   string
}

func (l *Layout) identityOf(path string) identity {
	id := identity{path: filepath.Clean(path)}
	if real, err := filepath.EvalSymlinks(path); err == nil {
		id.path = real
	}
	if abs, err := filepath.Abs(id.path); err == nil {
		id.path = abs
	}
	if rdev, block, ok := deviceNumber(id.path); ok {
		id.rdev, id.isDev = rdev, true
		if block {
			id.sys = blockSysfsDir(l.Env.sysfs(), rdev)
		}
	}
	return id
}

// overlaps reports whether a and b are the same storage, or one is a disk that holds the other.
func (a identity) overlaps(b identity) bool {
	if a.path == b.path || a.isDev && b.isDev && a.rdev == b.rdev {
		return true
	}
	if a.sys != "" && b.sys != "" {
		return strings.HasPrefix(a.sys+"/", b.sys+"/") || strings.HasPrefix(b.sys+"/", a.sys+"/")
	}
	return false
}

// ActiveBank returns the bank that booted, as the config says to find it. A layout without
// slots has no active bank ("" and no error).
func (l *Layout) ActiveBank() (string, error) {
	if len(l.Config.Slots) == 0 {
		return "", nil
	}
	if l.Config.Active == ActiveBootloader {
		if l.Env.Bootloader == nil {
			return "", fmt.Errorf("%w: active = \"bootloader\" but no bootloader backend is configured", ErrActiveUnknown)
		}
		primary, pending, err := l.Env.Bootloader.BootBanks()
		if err != nil {
			return "", fmt.Errorf("%w: bootloader state: %v", ErrActiveUnknown, err)
		}
		if pending != "" {
			return "", fmt.Errorf("%w: bank %s is pending (trial boot); the bootloader state cannot tell whether it booted: use active = \"cmdline\"", ErrActiveUnknown, pending)
		}
		return l.bank(primary, "bootloader primary")
	}
	cmdline := cmp(l.Env.Cmdline, cmp(l.Config.CmdlineFile, DefaultCmdlineFile))
	b, err := os.ReadFile(cmdline)
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrActiveUnknown, err)
	}
	var root string
	for _, f := range strings.Fields(string(b)) {
		k, v, _ := strings.Cut(f, "=")
		v = strings.Trim(v, `"`)
		switch k {
		case l.Config.CmdlineKey:
			return l.bank(v, l.Config.CmdlineKey+"= on the kernel command line")
		case "root":
			root = v
		}
	}
	if root == "" {
		return "", fmt.Errorf("%w: %s has neither %s= nor root=", ErrActiveUnknown, cmdline, l.Config.CmdlineKey)
	}
	bank, err := l.bankOfRoot(root)
	if err != nil {
		return "", err
	}
	if bank == "" {
		return "", fmt.Errorf("%w: root=%s is a shared slot, which every bank uses: add %s= to the kernel command line", ErrActiveUnknown, root, l.Config.CmdlineKey)
	}
	return bank, nil
}

func (l *Layout) bank(v, from string) (string, error) {
	for _, b := range l.Config.Banks {
		if strings.EqualFold(b, v) {
			return b, nil
		}
	}
	return "", fmt.Errorf("%w: %s names bank %q, not one of %v", ErrActiveUnknown, from, v, l.Config.Banks)
}

var (
	ubiRootRe      = regexp.MustCompile(`^ubi[0-9]*:(.+)$`)
	mtdblockRootRe = regexp.MustCompile(`^/dev/mtdblock([0-9]+)$`)
)

// bankOfRoot finds the slot the root= value names.
func (l *Layout) bankOfRoot(root string) (string, error) {
	fail := func() (string, error) {
		return "", fmt.Errorf("%w: root=%s matches no configured slot", ErrActiveUnknown, root)
	}
	if m := ubiRootRe.FindStringSubmatch(root); m != nil {
		for _, s := range l.Config.Slots {
			if s.Type == TypeUBI && s.UBIVolume == m[1] {
				return s.Bank, nil
			}
		}
		return fail()
	}
	if m := mtdblockRootRe.FindStringSubmatch(root); m != nil {
		want := "mtd" + m[1]
		for _, s := range l.Slots() {
			if p, err := l.Resolve(s); err == nil && s.IsMTD() && filepath.Base(p) == want {
				return s.Bank, nil
			}
		}
		return fail()
	}
	var path string
	switch {
	case strings.HasPrefix(strings.ToUpper(root), "PARTUUID="):
		u := strings.ToLower(root[len("PARTUUID="):])
		u, _, _ = strings.Cut(u, "/") // PARTUUID=…/PARTNROFF=n is not supported beyond the uuid
		for _, s := range l.Config.Slots {
			if strings.EqualFold(s.PartUUID, u) {
				return s.Bank, nil
			}
		}
		path = filepath.Join(l.Env.dev(), "disk", "by-partuuid", u)
	case strings.HasPrefix(strings.ToUpper(root), "PARTLABEL="):
		lb := root[len("PARTLABEL="):]
		for _, s := range l.Config.Slots {
			if s.PartLabel == lb {
				return s.Bank, nil
			}
		}
		path = filepath.Join(l.Env.dev(), "disk", "by-partlabel", lb)
	case strings.HasPrefix(root, "/"):
		path = l.devPath(root)
	default:
		return fail()
	}
	if _, err := os.Stat(path); err != nil {
		return fail()
	}
	rid := l.identityOf(path)
	for _, s := range l.Slots() {
		p, err := l.Resolve(s)
		if err != nil {
			continue
		}
		sid := l.identityOf(p)
		if sid.path == rid.path || sid.isDev && rid.isDev && sid.rdev == rid.rdev {
			return s.Bank, nil
		}
	}
	return fail()
}

// CheckWritable returns nil when s may be written: it is not in the active bank nor shared by
// every bank, and its storage is not (and is not a disk holding) the storage of an
// active-bank or shared slot. It fails
// with ErrActiveSlot, or ErrActiveUnknown when the layout has slots but the active bank
// cannot be told. Prepare checks the same and more in one go.
func (l *Layout) CheckWritable(s *Slot) error {
	p, err := l.Resolve(s)
	return l.checkWritable(s, p, err)
}

// checkWritable is CheckWritable of s resolved to p (or not: resolveErr).
func (l *Layout) checkWritable(s *Slot, p string, resolveErr error) error {
	active, err := l.ActiveBank()
	if err != nil {
		return err
	}
	if active == "" {
		return nil
	}
	if !s.adhoc && s.Bank == active {
		return fmt.Errorf("%w: slot %s is in bank %s, which is running", ErrActiveSlot, s.Name, active)
	}
	if !s.adhoc && s.Bank == "" {
		return fmt.Errorf("%w: slot %s is shared by every bank, the running one (%s) too", ErrActiveSlot, s.Name, active)
	}
	if resolveErr != nil || p == "" {
		if s.adhoc {
			return resolveErr
		}
		return nil // unresolvable: cannot be an active device; opening it will fail anyway
	}
	tid := l.identityOf(p)
	for _, a := range l.Slots() {
		if a.Bank != active && a.Bank != "" {
			continue // a slot of another bank; a shared one is in use by the running bank
		}
		ap, err := l.Resolve(a)
		if err != nil {
			continue
		}
		if tid.overlaps(l.identityOf(ap)) {
			return fmt.Errorf("%w: %s is the storage of active slot %s (%s)", ErrActiveSlot, p, a.Name, ap)
		}
	}
	return nil
}
