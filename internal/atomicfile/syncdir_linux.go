package atomicfile

import (
	"errors"
	"os"
	"syscall"
)

// SyncDir fsyncs a folder so that entries created, renamed or removed in it survive a
// power cut. It does nothing outside Linux (see syncdir_other.go), nor on a file system
// that cannot sync folders (EINVAL: some network and FUSE file systems), where nothing
// more can be done.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if errors.Is(err, syscall.EINVAL) {
		err = nil
	}
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
