package bootloader

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/aduflash/aduflash/bootloader/mcuboottrailer"
	"github.com/aduflash/aduflash/bootloader/ubootenv"
	"github.com/aduflash/aduflash/mtd"
)

var (
	reEnvUBIDev  = regexp.MustCompile(`^/dev/ubi([0-9]+)$`)
	reEnvUBIVol  = regexp.MustCompile(`^/dev/ubi([0-9]+)_([0-9]+)$`)
	reEnvMTDChar = regexp.MustCompile(`^/dev/mtd([0-9]+)$`)
)

// openEnvStorage opens the storage of one env copy: files and block devices directly (with
// the force_ro handling of eMMC boot partitions), raw MTD through package mtd (geometry from
// the device), UBI volumes through sysfs. The close function is nil when there is nothing
// to close.
func openEnvStorage(d ubootenv.Device, s openSettings) (ubootenv.Storage, func() error, error) {
	switch d.Kind {
	case ubootenv.KindMTD:
		dev, err := s.paths.Open(s.paths.DevPath(d.Path))
		if err != nil {
			return nil, nil, fmt.Errorf("%w: %w", ubootenv.ErrStorage, err)
		}
		info := dev.Info()
		geo := ubootenv.MTDGeometry{NAND: info.Type.IsNAND(), Size: info.Size, EraseSize: info.EraseSize, WriteSize: info.WriteSize}
		st, err := ubootenv.NewMTDStorage(d.Path, dev, geo, d.Offset, d.SectorSize, int(d.NumSectors), d.DisableLock)
		if err != nil {
			dev.Close()
			return nil, nil, err
		}
		return st, dev.Close, nil
	case ubootenv.KindUBI:
		v, err := findEnvVolume(d, s)
		if err != nil {
			return nil, nil, err
		}
		return &ubootenv.UBIStorage{Vol: v, Name: v.Path}, nil, nil
	}
	st := &ubootenv.FileStorage{Path: d.Path, Offset: d.Offset}
	if p := ubootenv.ForceROPath(s.paths.SysfsRoot(), d.Path); p != "" {
		if _, err := os.Stat(p); err == nil {
			st.ForceRO = p
		}
	}
	return st, nil, nil
}

// findEnvVolume finds the UBI volume of /dev/ubiX_Y, /dev/ubiX:NAME or /dev/mtdN:NAME (the
// last one needs MTD N attached to UBI already: it is not attached here).
func findEnvVolume(d ubootenv.Device, s openSettings) (*mtd.Volume, error) {
	p := s.paths
	ubiClass := filepath.Join(s.paths.SysfsRoot(), "class", "ubi")
	wrap := func(err error) error { return fmt.Errorf("%w: %w", ubootenv.ErrStorage, err) }
	if m := reEnvUBIVol.FindStringSubmatch(d.Path); m != nil && d.Volume == "" {
		base := "ubi" + m[1] + "_" + m[2]
		name, err := os.ReadFile(filepath.Join(ubiClass, base, "name"))
		if err != nil {
			return nil, wrap(fmt.Errorf("UBI volume %s: %w", d.Path, err))
		}
		v, err := p.FindVolume(strings.TrimSpace(string(name)))
		if err != nil {
			return nil, wrap(err)
		}
		if filepath.Base(v.Path) != base {
			return nil, wrap(fmt.Errorf("UBI volume %s: its name %q is also used by %s, which a look-up by name would find first", d.Path, v.Name, v.Path))
		}
		return v, nil
	}
	v, err := p.FindVolume(d.Volume)
	if err != nil {
		return nil, wrap(err)
	}
	if m := reEnvUBIDev.FindStringSubmatch(d.Path); m != nil {
		if strconv.Itoa(v.UBI) != m[1] {
			return nil, wrap(fmt.Errorf("UBI volume %q: found on ubi%d, not on %s", d.Volume, v.UBI, d.Path))
		}
		return v, nil
	}
	if m := reEnvMTDChar.FindStringSubmatch(d.Path); m != nil {
		num, err := os.ReadFile(filepath.Join(ubiClass, "ubi"+strconv.Itoa(v.UBI), "mtd_num"))
		if err != nil || strings.TrimSpace(string(num)) != m[1] {
			return nil, wrap(fmt.Errorf("UBI volume %q: %s is not attached to UBI as the device holding it (attach it first: ubiattach -m %s)", d.Volume, d.Path, m[1]))
		}
		return v, nil
	}
	return nil, fmt.Errorf("%w: UBI device %s:%s", ubootenv.ErrUnsupported, d.Path, d.Volume)
}

// openMTDFlash opens an MCUboot slot's MTD device: a number (mtdN), a path (/dev/mtdN,
// under the dev root) or an MTD name.
func (s openSettings) openMTDFlash(name string) (mcuboottrailer.Flash, mtd.Info, func() error, error) {
	p := s.paths
	var dev *mtd.Device
	var err error
	if n, convErr := strconv.Atoi(name); convErr == nil {
		dev, err = p.OpenByNumber(n)
	} else if strings.Contains(name, "/") {
		dev, err = p.Open(s.paths.DevPath(name))
	} else {
		dev, err = p.OpenByName(name)
	}
	if err != nil {
		return nil, mtd.Info{}, nil, err
	}
	info := dev.Info()
	if !info.Writable {
		dev.Close()
		return nil, mtd.Info{}, nil, fmt.Errorf("%s: %w", dev.Path(), mtd.ErrReadOnly)
	}
	return dev, info, dev.Close, nil
}
