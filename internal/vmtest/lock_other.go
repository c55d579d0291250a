//go:build !unix

package vmtest

// lockFile does nothing where there is no flock; vmtest needs QEMU and Debian's tools, which
// it only finds on Linux, so its tests skip there anyway.
func lockFile(string) (func(), error) { return func() {}, nil }
