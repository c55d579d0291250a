// Package limitread reads whole files and streams that must be small (manifests, MCU
// images, request bodies), refusing a larger one after limit+1 bytes instead of reading it
// all.
package limitread

import (
	"errors"
	"fmt"
	"io"
	"os"
)

// ErrTooLarge: the file or stream has more than the limit's bytes.
var ErrTooLarge = errors.New("file larger than the limit")

// File reads the file at path, at most limit bytes; a larger file is ErrTooLarge.
func File(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := All(f, limit)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return b, nil
}

// All reads r to its end, at most limit bytes; a longer stream is ErrTooLarge once limit+1
// bytes were read.
func All(r io.Reader, limit int64) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%w: more than %d bytes", ErrTooLarge, limit)
	}
	return b, nil
}
