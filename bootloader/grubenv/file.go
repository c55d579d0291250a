package grubenv

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"

	"github.com/aduflash/aduflash/internal/atomicfile"
)

// ReadFile reads and parses the block in a file.
func ReadFile(path string) (*Env, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("grubenv: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("grubenv: %w", err)
	}
	if st.Size() <= 0 || st.Size() > MaxSize {
		return nil, fmt.Errorf("grubenv: %s: %w (%d bytes)", path, ErrSize, st.Size())
	}
	b := make([]byte, st.Size())
	if _, err := io.ReadFull(f, b); err != nil {
		return nil, fmt.Errorf("grubenv: reading %s: %w", path, err)
	}
	e, err := Parse(b)
	if err != nil {
		return nil, fmt.Errorf("grubenv: %s: %w", path, err)
	}
	return e, nil
}

// WriteFile writes e to path atomically (atomicfile.WriteFile), so that after a power cut
// path holds either the old or the new block. The new file gets the old file's
// permissions, or 0644.
func WriteFile(path string, e *Env) error {
	b, err := e.Encode()
	if err != nil {
		return err
	}
	mode := fs.FileMode(0o644)
	if st, err := os.Stat(path); err == nil {
		mode = st.Mode().Perm()
	}
	if err := atomicfile.WriteFile(path, b, mode); err != nil {
		return fmt.Errorf("grubenv: writing %s: %w", path, err)
	}
	return nil
}

// Update reads the block at path (or starts a new DefaultSize block when the file does not
// exist), lets fn change it and writes it back with WriteFile, keeping the file's size.
// Nothing is written when fn returns an error.
func Update(path string, fn func(*Env) error) error {
	e, err := ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		e, err = New(), nil
	}
	if err != nil {
		return err
	}
	if err := fn(e); err != nil {
		return err
	}
	return WriteFile(path, e)
}
