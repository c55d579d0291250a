//go:build !linux

package journal

// syncDir is a no-op outside Linux: the agent ships on Linux, and folder
// fsync is not available (Windows) or not portable elsewhere.
func syncDir(dir string) error { return nil }
