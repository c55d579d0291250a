//go:build !linux

package agent

// rootFSKB is not measured off Linux.
func rootFSKB() int64 { return 0 }
