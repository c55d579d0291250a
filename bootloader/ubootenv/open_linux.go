package ubootenv

import (
	"fmt"
	"os"
)

// openStorage opens files and block devices; an eMMC boot partition gets its force_ro
// file when sysfs has a writable one (like libubootenv).
func openStorage(d Device, sysfsRoot string) (Storage, error) {
	if d.Kind != KindFile {
		return nil, fmt.Errorf("%w: %s device %s: open it with package mtd and pass NewMTDStorage/UBIStorage to New", ErrUnsupported, d.Kind, d.Path)
	}
	st := &FileStorage{Path: d.Path, Offset: d.Offset}
	if p := ForceROPath(sysfsRoot, d.Path); p != "" {
		if _, err := os.Stat(p); err == nil {
			st.ForceRO = p
		}
	}
	return st, nil
}
