package app

import (
	"os"

	"github.com/urfave/cli/v2"

	"github.com/aduflash/aduflash/bootloader"
	"github.com/aduflash/aduflash/bootloader/ubootenv"
	"github.com/aduflash/aduflash/mtd"
)

// flagRoots are the roots of device look-ups that --sysfs-root and --dev-root name ("" = the
// real ones).
func flagRoots(c *cli.Context) mtd.Paths {
	return mtd.Paths{Sysfs: c.String("sysfs-root"), Dev: c.String("dev-root")}
}

// rootOptions has bootloader look devices up under roots.
func rootOptions(roots mtd.Paths) []bootloader.OpenOption {
	return []bootloader.OpenOption{bootloader.WithSysfsRoot(roots.Sysfs), bootloader.WithDevRoot(roots.Dev)}
}

// openEnvStorage opens one env copy's storage the way the agent's bootloader backend does.
func openEnvStorage(d ubootenv.Device, roots mtd.Paths) (ubootenv.Storage, func(), error) {
	st, cl, err := bootloader.OpenEnvStorage(d, rootOptions(roots)...)
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
func findEnvVolume(d ubootenv.Device, roots mtd.Paths) (*mtd.Volume, error) {
	return bootloader.FindEnvVolume(d, rootOptions(roots)...)
}

// fileStorage is the storage of a file or block device, with the force_ro handling of eMMC
// boot partitions that ubootenv.Open applies.
func fileStorage(d ubootenv.Device, roots mtd.Paths) *ubootenv.FileStorage {
	st := &ubootenv.FileStorage{Path: d.Path, Offset: d.Offset}
	if p := ubootenv.ForceROPath(roots.SysfsRoot(), d.Path); p != "" {
		if _, err := os.Stat(p); err == nil {
			st.ForceRO = p
		}
	}
	return st
}
