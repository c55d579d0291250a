package bootloader

import (
	"github.com/aduflash/aduflash/bootloader/ubootenv"
	"github.com/aduflash/aduflash/mtd"
)

// OpenEnvStorage opens the storage of one U-Boot environment copy as fw_env.config describes
// it: files and block devices (with the force_ro handling of eMMC boot partitions), raw MTD
// through package mtd (geometry from the device) and UBI volumes through sysfs; MTD and UBI
// need Linux. The close function is nil when there is nothing to close. Open uses it for the
// u-boot backend, and `aduflash env` for its own reads and writes.
func OpenEnvStorage(d ubootenv.Device, opts ...OpenOption) (ubootenv.Storage, func() error, error) {
	return openEnvStorage(d, settingsOf(opts))
}

// FindEnvVolume finds the UBI volume of a fw_env.config entry (/dev/ubiX_Y, /dev/ubiX:NAME,
// or /dev/mtdN:NAME with MTD N already attached to UBI). It needs Linux.
func FindEnvVolume(d ubootenv.Device, opts ...OpenOption) (*mtd.Volume, error) {
	return findEnvVolume(d, settingsOf(opts))
}

func settingsOf(opts []OpenOption) openSettings {
	var s openSettings
	for _, o := range opts {
		o(&s)
	}
	return s
}
