package agent

import "golang.org/x/sys/unix"

// rootFSKB is the size of the root file system in KB (0 when unknown).
func rootFSKB() int64 {
	var st unix.Statfs_t
	if err := unix.Statfs("/", &st); err != nil {
		return 0
	}
	return int64(st.Blocks) * int64(st.Bsize) / 1024
}
