// Package infile opens the inputs of the host CLIs whose size must be known before reading:
// regular files and block devices.
package infile

import (
	"fmt"
	"io"
	"os"
)

// OpenSized opens a regular file or a block device and returns its size; a directory or a
// pipe is refused with a message saying why.
func OpenSized(path string) (*os.File, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, err
	}
	if st.Mode().IsRegular() {
		return f, st.Size(), nil
	}
	if st.IsDir() {
		f.Close()
		return nil, 0, fmt.Errorf("%s: is a directory", path)
	}
	// A block device: its size is where a seek to the end lands.
	n, err := f.Seek(0, io.SeekEnd)
	if err == nil && n > 0 {
		if _, err = f.Seek(0, io.SeekStart); err == nil {
			return f, n, nil
		}
	}
	f.Close()
	return nil, 0, fmt.Errorf("%s: cannot tell its size (a pipe?): give a regular file or a block device", path)
}
