//go:build !linux

package slots

// deviceNumber is Linux-only; elsewhere targets are compared by path.
func deviceNumber(path string) (rdev uint64, block, ok bool) { return 0, false, false }

func blockSysfsDir(sysfs string, rdev uint64) string { return "" }
