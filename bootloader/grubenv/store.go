package grubenv

import (
	"errors"
	"io/fs"
	"maps"
	"slices"
)

// Store is a GRUB environment file seen as package bootloader's EnvStore: Vars reads the file,
// Update rewrites it atomically (temp file, fsync, rename) with all changes at once.
type Store struct {
	Path string
}

// Vars returns the file's variables; a missing file is an empty environment.
func (s Store) Vars() (map[string]string, error) {
	e, err := ReadFile(s.Path)
	if errors.Is(err, fs.ErrNotExist) {
		return map[string]string{}, nil
	}
	if err != nil {
		return nil, err
	}
	m := map[string]string{}
	for _, v := range e.Vars() {
		m[v.Name] = v.Value
	}
	return m, nil
}

// Update sets and deletes variables in one rewrite of the file.
func (s Store) Update(set map[string]string, unset []string) error {
	return Update(s.Path, func(e *Env) error {
		for _, n := range unset {
			e.Unset(n)
		}
		names := slices.Sorted(maps.Keys(set))
		for _, n := range names {
			if err := e.Set(n, set[n]); err != nil {
				return err
			}
		}
		return nil
	})
}
