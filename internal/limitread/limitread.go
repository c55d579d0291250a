// Package limitread reads whole files that must be small (manifests, MCU images), refusing
// a larger one after limit+1 bytes instead of reading it all.
package limitread

import (
	"errors"
	"fmt"
	"io"
	"os"
)

// ErrTooLarge: the file has more than the limit's bytes.
var ErrTooLarge = errors.New("file larger than the limit")

// File reads the file at path, at most limit bytes; a larger file is ErrTooLarge.
func File(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s: %w: more than %d bytes", path, ErrTooLarge, limit)
	}
	return b, nil
}
