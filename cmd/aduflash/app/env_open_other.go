//go:build !linux

package app

import (
	"fmt"

	"github.com/aduflash/aduflash/bootloader/ubootenv"
	"github.com/aduflash/aduflash/mtd"
)

// openEnvStorage opens files and block devices; raw MTD and UBI need Linux.
func openEnvStorage(d ubootenv.Device, roots envRoots) (ubootenv.Storage, func(), error) {
	if d.Kind != ubootenv.KindFile {
		return nil, nil, fmt.Errorf("%w: %s device %s needs Linux (MTD and UBI ioctls)", ubootenv.ErrUnsupported, d.Kind, d.Path)
	}
	return fileStorage(d, roots), func() {}, nil
}

// findEnvVolume needs Linux's UBI.
func findEnvVolume(d ubootenv.Device, roots envRoots) (*mtd.Volume, error) {
	_ = roots
	return nil, fmt.Errorf("%w: UBI volume %s needs Linux", ubootenv.ErrUnsupported, d.Path)
}
