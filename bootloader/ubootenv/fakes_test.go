package ubootenv

import (
	"errors"
	"fmt"
)

// memStorage is an in-memory copy.
type memStorage struct {
	buf        []byte
	failWrite  error
	writes     int
	flagWrites []byte
}

func (m *memStorage) ReadCopy(p []byte) error {
	if len(m.buf) < len(p) {
		return fmt.Errorf("%w: short", ErrStorage)
	}
	copy(p, m.buf)
	return nil
}

func (m *memStorage) WriteCopy(p []byte) error {
	if m.failWrite != nil {
		return m.failWrite
	}
	m.writes++
	m.buf = append([]byte(nil), p...)
	return nil
}

func (m *memStorage) WriteFlag(b byte) error {
	m.flagWrites = append(m.flagWrites, b)
	m.buf[4] = b
	return nil
}

// fakeMTD models NOR (writes AND into the array, erase sets 0xFF) and NAND (page-aligned
// writes of whole pages into erased pages only, bad blocks fail erase and write).
type fakeMTD struct {
	data      []byte
	nand      bool
	erase     int
	page      int
	bad       map[int64]bool
	erases    []int64
	unlocks   int
	pageDirty map[int64]bool
}

func newFakeMTD(size, erase, page int, nand bool) *fakeMTD {
	d := make([]byte, size)
	for i := range d {
		d[i] = 0xFF
	}
	return &fakeMTD{data: d, nand: nand, erase: erase, page: page, bad: map[int64]bool{}, pageDirty: map[int64]bool{}}
}

func (f *fakeMTD) geo() MTDGeometry {
	return MTDGeometry{NAND: f.nand, Size: int64(len(f.data)), EraseSize: f.erase, WriteSize: f.page}
}

func (f *fakeMTD) block(off int64) int64 { return off / int64(f.erase) * int64(f.erase) }

func (f *fakeMTD) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 || off+int64(len(p)) > int64(len(f.data)) {
		return 0, errors.New("fake mtd: read out of range")
	}
	return copy(p, f.data[off:]), nil
}

func (f *fakeMTD) WriteAt(p []byte, off int64) (int, error) {
	if off < 0 || off+int64(len(p)) > int64(len(f.data)) {
		return 0, errors.New("fake mtd: write out of range")
	}
	if f.nand {
		if off%int64(f.page) != 0 || len(p)%f.page != 0 {
			return 0, fmt.Errorf("fake nand: unaligned write %#x+%#x", off, len(p))
		}
		for pg := off; pg < off+int64(len(p)); pg += int64(f.page) {
			if f.bad[f.block(pg)] {
				return 0, fmt.Errorf("fake nand: write to bad block %#x", f.block(pg))
			}
			if f.pageDirty[pg] {
				return 0, fmt.Errorf("fake nand: page %#x written twice without erase", pg)
			}
			f.pageDirty[pg] = true
		}
		return copy(f.data[off:], p), nil
	}
	for i, b := range p {
		f.data[off+int64(i)] &= b
	}
	return len(p), nil
}

func (f *fakeMTD) Erase(off, length int64) error {
	if off%int64(f.erase) != 0 || length%int64(f.erase) != 0 || off+length > int64(len(f.data)) {
		return fmt.Errorf("fake mtd: unaligned erase %#x+%#x", off, length)
	}
	for b := off; b < off+length; b += int64(f.erase) {
		if f.bad[b] {
			return fmt.Errorf("fake mtd: erase of bad block %#x", b)
		}
		f.erases = append(f.erases, b)
		for i := b; i < b+int64(f.erase); i++ {
			f.data[i] = 0xFF
		}
		for pg := b; pg < b+int64(f.erase); pg += int64(f.page) {
			delete(f.pageDirty, pg)
		}
	}
	return nil
}

func (f *fakeMTD) IsBad(off int64) (bool, error) {
	if !f.nand {
		return false, nil
	}
	return f.bad[f.block(off)], nil
}

func (f *fakeMTD) Unlock(off, length int64) error { f.unlocks++; return nil }
