package atomicfile

import "os"

// SyncDir fsyncs a folder so that entries created, renamed or removed in it survive a
// power cut. It does nothing outside Linux (see syncdir_other.go).
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
