//go:build !linux

package ubootenv

import "fmt"

// openStorage opens files; devices need Linux.
func openStorage(d Device, sysfsRoot string) (Storage, error) {
	_ = sysfsRoot
	if d.Kind != KindFile {
		return nil, fmt.Errorf("%w: %s device %s needs Linux", ErrUnsupported, d.Kind, d.Path)
	}
	return &FileStorage{Path: d.Path, Offset: d.Offset}, nil
}
