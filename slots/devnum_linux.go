package slots

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// deviceNumber returns the device number of a device node and whether it is a block device.
func deviceNumber(path string) (rdev uint64, block, ok bool) {
	fi, err := os.Stat(path)
	if err != nil || fi.Mode()&os.ModeDevice == 0 {
		return 0, false, false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, false, false
	}
	return uint64(st.Rdev), fi.Mode()&os.ModeCharDevice == 0, true
}

// blockSysfsDir returns the real sysfs directory of a block device (…/mmcblk0/mmcblk0p2),
// or "" when sysfs does not know it.
func blockSysfsDir(sysfs string, rdev uint64) string {
	major := (rdev>>8)&0xfff | (rdev>>32)&^0xfff
	minor := rdev&0xff | (rdev>>12)&^0xff
	p, err := filepath.EvalSymlinks(filepath.Join(sysfs, "dev", "block", fmt.Sprintf("%d:%d", major, minor)))
	if err != nil {
		return ""
	}
	return p
}
