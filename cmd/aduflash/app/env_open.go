package app

import (
	"github.com/aduflash/aduflash/bootloader"
	"github.com/aduflash/aduflash/bootloader/ubootenv"
	"github.com/aduflash/aduflash/mtd"
)

func (r envRoots) options() []bootloader.OpenOption {
	return []bootloader.OpenOption{bootloader.WithSysfsRoot(r.sysfs), bootloader.WithDevRoot(r.dev)}
}

// openEnvStorage opens one env copy's storage the way the agent's bootloader backend does.
func openEnvStorage(d ubootenv.Device, roots envRoots) (ubootenv.Storage, func(), error) {
	st, cl, err := bootloader.OpenEnvStorage(d, roots.options()...)
	if err != nil {
		return nil, nil, err
	}
	return st, func() {
		if cl != nil {
			cl()
		}
	}, nil
}

// findEnvVolume finds the UBI volume of a config entry (Linux).
func findEnvVolume(d ubootenv.Device, roots envRoots) (*mtd.Volume, error) {
	return bootloader.FindEnvVolume(d, roots.options()...)
}
