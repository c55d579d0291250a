//go:build !linux

package atomicfile

// SyncDir does nothing outside Linux: the device tools ship on Linux, and a folder fsync is
// not available (Windows) or not portable elsewhere.
func SyncDir(dir string) error { return nil }
