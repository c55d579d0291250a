package mcuboottrailer

import (
	"bytes"
	"errors"
	"fmt"
)

var errNotErasedFake = errors.New("norfake: programming a unit that is not erased")

// norFake is a tiny NOR flash: erase sets every byte of an erase block to the erased value,
// programming can only move bits away from it (AND for 0xFF, OR for 0x00), writes and erases
// must be aligned. Programming bytes that are not erased is recorded and refused.
type norFake struct {
	mem        []byte
	erased     byte
	eraseSize  int
	writeSize  int
	writes     int
	erases     int
	violations int
}

func newNOR(size, eraseSize, writeSize int, erased byte) *norFake {
	return &norFake{mem: bytes.Repeat([]byte{erased}, size), erased: erased, eraseSize: eraseSize, writeSize: writeSize}
}

func (f *norFake) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 || off+int64(len(p)) > int64(len(f.mem)) {
		return 0, fmt.Errorf("norfake: read [%d,+%d) out of range", off, len(p))
	}
	return copy(p, f.mem[off:]), nil
}

func (f *norFake) WriteAt(p []byte, off int64) (int, error) {
	if off < 0 || off+int64(len(p)) > int64(len(f.mem)) {
		return 0, fmt.Errorf("norfake: write [%d,+%d) out of range", off, len(p))
	}
	if off%int64(f.writeSize) != 0 || len(p)%f.writeSize != 0 {
		return 0, fmt.Errorf("norfake: write [%d,+%d) not aligned to %d", off, len(p), f.writeSize)
	}
	f.writes++
	for i := range p {
		if f.mem[off+int64(i)] != f.erased {
			f.violations++
			return 0, fmt.Errorf("%w at %d", errNotErasedFake, off+int64(i))
		}
	}
	for i, c := range p {
		if f.erased == 0xff {
			f.mem[off+int64(i)] &= c
		} else {
			f.mem[off+int64(i)] |= c
		}
	}
	return len(p), nil
}

func (f *norFake) Erase(off, length int64) error {
	es := int64(f.eraseSize)
	if off < 0 || length <= 0 || off%es != 0 || length%es != 0 || off+length > int64(len(f.mem)) {
		return fmt.Errorf("norfake: erase [%d,+%d) not aligned to %d or out of range", off, length, es)
	}
	f.erases++
	for i := off; i < off+length; i++ {
		f.mem[i] = f.erased
	}
	return nil
}
