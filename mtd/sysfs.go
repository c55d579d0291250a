package mtd

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// Paths says where sysfs and the device nodes are. The zero value means /sys and /dev;
// tests point both at a fake tree. The package-level Open, OpenByName, OpenByNumber,
// InfoFromSysfs and FindVolume use the zero value.
type Paths struct {
	Sysfs string // default "/sys"
	Dev   string // default "/dev"
}

// SysfsRoot returns where sysfs is mounted: Sysfs, or /sys.
func (p Paths) SysfsRoot() string {
	if p.Sysfs == "" {
		return "/sys"
	}
	return p.Sysfs
}

func (p Paths) dev() string {
	if p.Dev == "" {
		return "/dev"
	}
	return p.Dev
}

// DevPath maps a /dev/... path (a config's device path) under Dev; other paths, and every
// path when Dev is empty, stay as they are.
func (p Paths) DevPath(path string) string {
	if p.Dev == "" || !strings.HasPrefix(path, "/dev/") {
		return path
	}
	return p.Dev + strings.TrimPrefix(path, "/dev")
}

var (
	mtdDirRe = regexp.MustCompile(`^mtd([0-9]+)$`)
	ubiVolRe = regexp.MustCompile(`^ubi([0-9]+)_([0-9]+)$`)
)

func readSysfsString(dir, name string) (string, error) {
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		return "", fmt.Errorf("mtd: sysfs: %w", err)
	}
	return strings.TrimRight(string(b), "\n"), nil
}

func readSysfsInt(dir, name string) (int64, error) {
	s, err := readSysfsString(dir, name)
	if err != nil {
		return 0, err
	}
	v, err := strconv.ParseInt(strings.TrimSpace(s), 0, 64) // base 0: "flags" is hex ("0x800")
	if err != nil {
		return 0, fmt.Errorf("mtd: sysfs %s/%s: %w", dir, name, err)
	}
	if v < 0 {
		return 0, fmt.Errorf("mtd: sysfs %s/%s: negative value %d: %w", dir, name, v, ErrOutOfRange)
	}
	return v, nil
}

// mtdWriteable is MTD_WRITEABLE from mtd-abi.h, the bit in /sys/class/mtd/mtdN/flags. It
// is a sysfs text value, so it is parsed portably; the Linux code checks it equals
// unix.MTD_WRITEABLE in a test.
const mtdWriteable = 0x400

// InfoFromSysfs reads the geometry of mtdN from /sys/class/mtd/mtdN (name, type, size,
// erasesize, writesize, oobsize, subpagesize, flags). Writable reflects MTD_WRITEABLE in
// flags only. A missing subpagesize or oobsize reads as WriteSize and 0.
func (p Paths) InfoFromSysfs(n int) (Info, error) {
	if n < 0 {
		return Info{}, fmt.Errorf("mtd: mtd%d: %w", n, ErrNotFound)
	}
	dir := filepath.Join(p.SysfsRoot(), "class", "mtd", "mtd"+strconv.Itoa(n))
	if _, err := os.Stat(dir); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return Info{}, fmt.Errorf("mtd: mtd%d in %s: %w", n, p.SysfsRoot(), ErrNotFound)
		}
		return Info{}, fmt.Errorf("mtd: %w", err)
	}
	var info Info
	var err error
	if info.Name, err = readSysfsString(dir, "name"); err != nil {
		return Info{}, err
	}
	ts, err := readSysfsString(dir, "type")
	if err != nil {
		return Info{}, err
	}
	if info.Type, err = ParseType(strings.TrimSpace(ts)); err != nil {
		return Info{}, err
	}
	if info.Size, err = readSysfsInt(dir, "size"); err != nil {
		return Info{}, err
	}
	ints := []struct {
		name     string
		dst      *int
		optional bool
	}{{"erasesize", &info.EraseSize, false}, {"writesize", &info.WriteSize, false},
		{"oobsize", &info.OOBSize, true}, {"subpagesize", &info.SubpageSize, true}}
	for _, f := range ints {
		v, err := readSysfsInt(dir, f.name)
		if err != nil {
			if f.optional && errors.Is(err, fs.ErrNotExist) {
				continue
			}
			return Info{}, err
		}
		if v > 1<<31-1 {
			return Info{}, fmt.Errorf("mtd: sysfs %s/%s: %d: %w", dir, f.name, v, ErrOutOfRange)
		}
		*f.dst = int(v)
	}
	if info.SubpageSize == 0 {
		info.SubpageSize = info.WriteSize
	}
	if flags, err := readSysfsInt(dir, "flags"); err == nil {
		info.Writable = flags&mtdWriteable != 0
	} else if !errors.Is(err, fs.ErrNotExist) {
		return Info{}, err
	}
	return info, nil
}

// InfoFromSysfs is Paths{}.InfoFromSysfs.
func InfoFromSysfs(n int) (Info, error) { return Paths{}.InfoFromSysfs(n) }

// FindMTD returns the number N of the MTD device whose sysfs name is name. With several
// matches the lowest number wins. Read-only aliases (mtdNro) are not listed by sysfs.
func (p Paths) FindMTD(name string) (int, error) {
	dir := filepath.Join(p.SysfsRoot(), "class", "mtd")
	ents, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return 0, fmt.Errorf("mtd: no MTD devices (%s missing): %q: %w", dir, name, ErrNotFound)
		}
		return 0, fmt.Errorf("mtd: %w", err)
	}
	var nums []int
	for _, e := range ents {
		m := mtdDirRe.FindStringSubmatch(e.Name())
		if m == nil {
			continue
		}
		n, err := strconv.Atoi(m[1])
		if err != nil {
			continue
		}
		nums = append(nums, n)
	}
	sort.Ints(nums)
	for _, n := range nums {
		got, err := readSysfsString(filepath.Join(dir, "mtd"+strconv.Itoa(n)), "name")
		if err == nil && got == name {
			return n, nil
		}
	}
	return 0, fmt.Errorf("mtd: no MTD device named %q: %w", name, ErrNotFound)
}

// DevicePath returns the character device path of mtdN (Dev/mtdN).
func (p Paths) DevicePath(n int) string { return filepath.Join(p.dev(), "mtd"+strconv.Itoa(n)) }

// OpenByNumber opens Dev/mtdN with the sysfs tree of p.
func (p Paths) OpenByNumber(n int) (*Device, error) {
	if n < 0 {
		return nil, fmt.Errorf("mtd: mtd%d: %w", n, ErrNotFound)
	}
	return p.Open(p.DevicePath(n))
}

// OpenByName opens the MTD device whose sysfs name is name (see FindMTD).
func (p Paths) OpenByName(name string) (*Device, error) {
	n, err := p.FindMTD(name)
	if err != nil {
		return nil, err
	}
	return p.OpenByNumber(n)
}

// Open is Paths{}.Open.
func Open(path string) (*Device, error) { return Paths{}.Open(path) }

// OpenByName is Paths{}.OpenByName.
func OpenByName(name string) (*Device, error) { return Paths{}.OpenByName(name) }

// OpenByNumber is Paths{}.OpenByNumber.
func OpenByNumber(n int) (*Device, error) { return Paths{}.OpenByNumber(n) }

// mtdNumber returns N for a path whose base name is mtdN, and refuses mtdblockN.
func mtdNumber(path string) (int, error) {
	base := filepath.Base(path)
	if strings.HasPrefix(base, "mtdblock") {
		return -1, fmt.Errorf("mtd: %s: %w", path, ErrBlockEmulation)
	}
	base = strings.TrimSuffix(base, "ro")
	if m := mtdDirRe.FindStringSubmatch(base); m != nil {
		n, err := strconv.Atoi(m[1])
		if err == nil {
			return n, nil
		}
	}
	return -1, nil // unknown name (e.g. a udev symlink target resolved later): no sysfs data
}

// VolumeType is static or dynamic.
type VolumeType uint8

// UBI volume types.
const (
	VolumeDynamic VolumeType = iota
	VolumeStatic
)

func (t VolumeType) String() string {
	if t == VolumeStatic {
		return "static"
	}
	return "dynamic"
}

// Volume is a UBI volume found through sysfs.
type Volume struct {
	Name         string
	UBI          int        // UBI device number X of ubiX_Y
	ID           int        // volume id Y
	Type         VolumeType // static or dynamic
	DataBytes    int64      // sysfs data_bytes when found (static: bytes written; dynamic: reserved size)
	ReservedEBs  int        // logical erase blocks reserved
	UsableEBSize int        // usable bytes per logical erase block
	Path         string     // character device, Dev/ubiX_Y
}

// ReservedSize is the capacity: ReservedEBs * UsableEBSize. An update may not exceed it.
func (v *Volume) ReservedSize() int64 { return int64(v.ReservedEBs) * int64(v.UsableEBSize) }

// Size is the readable length of the volume. For a static volume that is the length of
// the last update (data_bytes, as found); for a dynamic volume it is the whole reserved
// size, whatever was written: a reader needs the image length from its own metadata.
func (v *Volume) Size() int64 {
	if v.Type == VolumeStatic {
		return v.DataBytes
	}
	return v.ReservedSize()
}

// FindVolume finds the UBI volume called name under Sysfs/class/ubi/ubiX_Y and fills in
// its geometry. With several matches (several UBI devices) the lowest X, then Y wins.
func (p Paths) FindVolume(name string) (*Volume, error) {
	dir := filepath.Join(p.SysfsRoot(), "class", "ubi")
	ents, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("mtd: no UBI devices (%s missing): volume %q: %w", dir, name, ErrNotFound)
		}
		return nil, fmt.Errorf("mtd: %w", err)
	}
	type xy struct{ x, y int }
	var vols []xy
	for _, e := range ents {
		m := ubiVolRe.FindStringSubmatch(e.Name())
		if m == nil {
			continue
		}
		x, err1 := strconv.Atoi(m[1])
		y, err2 := strconv.Atoi(m[2])
		if err1 == nil && err2 == nil {
			vols = append(vols, xy{x, y})
		}
	}
	sort.Slice(vols, func(i, j int) bool {
		return vols[i].x < vols[j].x || vols[i].x == vols[j].x && vols[i].y < vols[j].y
	})
	for _, xy := range vols {
		base := fmt.Sprintf("ubi%d_%d", xy.x, xy.y)
		vdir := filepath.Join(dir, base)
		got, err := readSysfsString(vdir, "name")
		if err != nil || got != name {
			continue
		}
		v := &Volume{Name: name, UBI: xy.x, ID: xy.y, Path: filepath.Join(p.dev(), base)}
		ts, err := readSysfsString(vdir, "type")
		if err != nil {
			return nil, err
		}
		switch strings.TrimSpace(ts) {
		case "static":
			v.Type = VolumeStatic
		case "dynamic":
			v.Type = VolumeDynamic
		default:
			return nil, fmt.Errorf("mtd: UBI volume %s: unknown type %q: %w", base, ts, ErrUnsupported)
		}
		if v.DataBytes, err = readSysfsInt(vdir, "data_bytes"); err != nil {
			return nil, err
		}
		r, err := readSysfsInt(vdir, "reserved_ebs")
		if err != nil {
			return nil, err
		}
		u, err := readSysfsInt(vdir, "usable_eb_size")
		if err != nil {
			return nil, err
		}
		if r > 1<<31-1 || u > 1<<31-1 {
			return nil, fmt.Errorf("mtd: UBI volume %s: implausible geometry: %w", base, ErrOutOfRange)
		}
		v.ReservedEBs, v.UsableEBSize = int(r), int(u)
		return v, nil
	}
	return nil, fmt.Errorf("mtd: no UBI volume named %q: %w", name, ErrNotFound)
}

// FindVolume is Paths{}.FindVolume.
func FindVolume(name string) (*Volume, error) { return Paths{}.FindVolume(name) }
