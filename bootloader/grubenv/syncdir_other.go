//go:build !linux

package grubenv

// syncDir is a no-op outside Linux: the agent runs on Linux; elsewhere (host tools, tests
// on macOS or Windows) directory fsync is either unsupported or not needed for correctness.
func syncDir(string) error { return nil }
