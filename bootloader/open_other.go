//go:build !linux

package bootloader

import (
	"fmt"

	"github.com/aduflash/aduflash/bootloader/mcuboottrailer"
	"github.com/aduflash/aduflash/bootloader/ubootenv"
	"github.com/aduflash/aduflash/mtd"
)

// openEnvStorage opens files and block devices; raw MTD and UBI need Linux.
func openEnvStorage(d ubootenv.Device, s openSettings) (ubootenv.Storage, func() error, error) {
	_ = s
	if d.Kind != ubootenv.KindFile {
		return nil, nil, fmt.Errorf("%w: %w: %s device %s needs Linux (MTD and UBI ioctls)", ErrUnsupported, ubootenv.ErrUnsupported, d.Kind, d.Path)
	}
	return &ubootenv.FileStorage{Path: d.Path, Offset: d.Offset}, nil, nil
}

// openMTDFlash needs Linux; use WithFlashOpener elsewhere.
func (s openSettings) openMTDFlash(name string) (mcuboottrailer.Flash, mtd.Info, func() error, error) {
	return nil, mtd.Info{}, nil, fmt.Errorf("%w: %w: MTD device %q needs Linux", ErrUnsupported, mtd.ErrUnsupported, name)
}

// findEnvVolume needs Linux's UBI.
func findEnvVolume(d ubootenv.Device, _ openSettings) (*mtd.Volume, error) {
	return nil, fmt.Errorf("%w: %w: UBI volume %s needs Linux", ErrUnsupported, ubootenv.ErrUnsupported, d.Path)
}
