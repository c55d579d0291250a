package ubootenv

import (
	"fmt"
	"io"
)

// MTD is the part of an MTD device (package mtd's Device, or mtd/mtdsim) that the env
// needs. NAND writes must be page-aligned; NOR writes can only clear bits.
type MTD interface {
	io.ReaderAt
	io.WriterAt
	Erase(off, length int64) error
	IsBad(off int64) (bool, error)
	Unlock(off, length int64) error
}

// MTDGeometry is the part of mtd.Info the env needs (pass Info().Type == NAND as NAND).
type MTDGeometry struct {
	NAND      bool  // NAND (bad blocks, page writes, serial flags); otherwise NOR-like
	Size      int64 // device size
	EraseSize int   // erase block size
	WriteSize int   // page size (NAND) or minimal write unit (1 on NOR)
}

// MTDStorage is one env copy on raw MTD.
//
// NAND: the copy occupies the first good erase block(s) from Offset, searched within
// NumSectors blocks of SectorSize; each block is erased and written in pages. NOR: the
// sectors under the copy are read, erased and written back with the new copy (so data
// sharing the sector survives), and WriteFlag programs the flags byte in place.
type MTDStorage struct {
	dev         MTD
	geo         MTDGeometry
	offset      int64
	sectorSize  int64
	numSectors  int
	disableLock bool
	name        string
}

// NewMTDStorage checks the layout. offset < 0 counts from the end of the device;
// sectorSize 0 means the erase size; numSectors 0 means as many as the env needs.
// disableLock skips MEMUNLOCK before erasing (fw_env.config's disable_lock).
func NewMTDStorage(name string, dev MTD, geo MTDGeometry, offset, sectorSize int64, numSectors int, disableLock bool) (*MTDStorage, error) {
	if geo.EraseSize <= 0 || geo.Size <= 0 {
		return nil, fmt.Errorf("%w: MTD %s: bad geometry (size %d, erase size %d)", ErrStorage, name, geo.Size, geo.EraseSize)
	}
	if geo.WriteSize <= 0 {
		geo.WriteSize = 1
	}
	if sectorSize == 0 {
		sectorSize = int64(geo.EraseSize)
	}
	if sectorSize < 0 || sectorSize%int64(geo.EraseSize) != 0 {
		return nil, fmt.Errorf("%w: MTD %s: sector size %#x is not a multiple of the erase size %#x", ErrStorage, name, sectorSize, geo.EraseSize)
	}
	if offset < 0 {
		offset += geo.Size
	}
	if offset < 0 || offset >= geo.Size {
		return nil, fmt.Errorf("%w: MTD %s: offset %#x outside the device (%#x bytes)", ErrStorage, name, offset, geo.Size)
	}
	if geo.NAND && offset%sectorSize != 0 {
		return nil, fmt.Errorf("%w: MTD %s: NAND env offset %#x is not aligned to the sector size %#x", ErrStorage, name, offset, sectorSize)
	}
	if numSectors < 0 {
		return nil, fmt.Errorf("%w: MTD %s: negative number of sectors", ErrStorage, name)
	}
	return &MTDStorage{dev: dev, geo: geo, offset: offset, sectorSize: sectorSize, numSectors: numSectors, disableLock: disableLock, name: name}, nil
}

// DefaultScheme implements DefaultSchemer: serial on NAND, boolean on NOR.
func (s *MTDStorage) DefaultScheme() FlagScheme {
	if s.geo.NAND {
		return FlagsSerial
	}
	return FlagsBoolean
}

func (s *MTDStorage) where() string { return fmt.Sprintf("MTD %s at offset %#x", s.name, s.offset) }

// nandBlocks returns the offsets of the good blocks holding an env of n bytes.
func (s *MTDStorage) nandBlocks(n int) ([]int64, error) {
	need := int((int64(n) + s.sectorSize - 1) / s.sectorSize)
	limit := s.numSectors
	if limit < need {
		limit = need
	}
	var blocks []int64
	for i := 0; i < limit && len(blocks) < need; i++ {
		off := s.offset + int64(i)*s.sectorSize
		if off+s.sectorSize > s.geo.Size {
			break
		}
		bad, err := s.dev.IsBad(off)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: bad-block check at %#x: %w", ErrStorage, s.where(), off, err)
		}
		if !bad {
			blocks = append(blocks, off)
		}
	}
	if len(blocks) < need {
		return nil, fmt.Errorf("%w: %s: %d good block(s) of %#x needed, %d found within %d sector(s)", ErrStorage, s.where(), need, s.sectorSize, len(blocks), limit)
	}
	return blocks, nil
}

// Location returns where a copy of n bytes starts on the device: its configured offset,
// or on NAND the first good block at or after it (bad blocks are skipped).
func (s *MTDStorage) Location(n int) (int64, error) {
	if !s.geo.NAND {
		return s.offset, nil
	}
	blocks, err := s.nandBlocks(n)
	if err != nil {
		return 0, err
	}
	return blocks[0], nil
}

// ReadCopy implements Storage.
func (s *MTDStorage) ReadCopy(p []byte) error {
	if !s.geo.NAND {
		if s.offset+int64(len(p)) > s.geo.Size {
			return fmt.Errorf("%w: %s: env of %d bytes runs past the device end", ErrStorage, s.where(), len(p))
		}
		if _, err := io.ReadFull(io.NewSectionReader(s.dev, s.offset, int64(len(p))), p); err != nil {
			return fmt.Errorf("%w: %s: read: %w", ErrStorage, s.where(), err)
		}
		return nil
	}
	blocks, err := s.nandBlocks(len(p))
	if err != nil {
		return err
	}
	for i, b := range blocks {
		chunk := p[int64(i)*s.sectorSize : min(int64(len(p)), int64(i+1)*s.sectorSize)]
		if _, err := io.ReadFull(io.NewSectionReader(s.dev, b, int64(len(chunk))), chunk); err != nil {
			return fmt.Errorf("%w: %s: read block %#x: %w", ErrStorage, s.where(), b, err)
		}
	}
	return nil
}

// WriteCopy implements Storage.
func (s *MTDStorage) WriteCopy(p []byte) error {
	if s.geo.NAND {
		return s.writeNAND(p)
	}
	return s.writeNOR(p)
}

func (s *MTDStorage) writeNAND(p []byte) error {
	blocks, err := s.nandBlocks(len(p))
	if err != nil {
		return err
	}
	ws := int64(s.geo.WriteSize)
	for i, b := range blocks {
		chunk := p[int64(i)*s.sectorSize : min(int64(len(p)), int64(i+1)*s.sectorSize)]
		padded := make([]byte, (int64(len(chunk))+ws-1)/ws*ws)
		copy(padded, chunk)
		for j := len(chunk); j < len(padded); j++ {
			padded[j] = 0xFF
		}
		if !s.disableLock {
			_ = s.dev.Unlock(b, s.sectorSize) // many chips do not support locking; libubootenv ignores it too
		}
		if err := s.dev.Erase(b, s.sectorSize); err != nil {
			return fmt.Errorf("%w: %s: erase block %#x: %w", ErrStorage, s.where(), b, err)
		}
		if _, err := s.dev.WriteAt(padded, b); err != nil {
			return fmt.Errorf("%w: %s: write block %#x: %w", ErrStorage, s.where(), b, err)
		}
	}
	return nil
}

func (s *MTDStorage) writeNOR(p []byte) error {
	start := s.offset / s.sectorSize * s.sectorSize
	end := (s.offset + int64(len(p)) + s.sectorSize - 1) / s.sectorSize * s.sectorSize
	if end > s.geo.Size {
		return fmt.Errorf("%w: %s: env of %d bytes runs past the device end", ErrStorage, s.where(), len(p))
	}
	region := make([]byte, end-start)
	if start != s.offset || end != s.offset+int64(len(p)) {
		if _, err := io.ReadFull(io.NewSectionReader(s.dev, start, end-start), region); err != nil {
			return fmt.Errorf("%w: %s: read sector(s) %#x-%#x: %w", ErrStorage, s.where(), start, end, err)
		}
	}
	copy(region[s.offset-start:], p)
	if !s.disableLock {
		_ = s.dev.Unlock(start, end-start) // see writeNAND
	}
	if err := s.dev.Erase(start, end-start); err != nil {
		return fmt.Errorf("%w: %s: erase %#x-%#x: %w", ErrStorage, s.where(), start, end, err)
	}
	if _, err := s.dev.WriteAt(region, start); err != nil {
		return fmt.Errorf("%w: %s: write %#x-%#x: %w", ErrStorage, s.where(), start, end, err)
	}
	return nil
}

// WriteFlag implements FlagWriter on NOR (programs one byte without erase). NAND cannot
// rewrite a page in place and returns ErrUnsupported.
func (s *MTDStorage) WriteFlag(b byte) error {
	if s.geo.NAND {
		return fmt.Errorf("%w: %s: in-place flag write on NAND", ErrUnsupported, s.where())
	}
	if !s.disableLock {
		_ = s.dev.Unlock(s.offset/s.sectorSize*s.sectorSize, s.sectorSize)
	}
	if _, err := s.dev.WriteAt([]byte{b}, s.offset+4); err != nil {
		return fmt.Errorf("%w: %s: program flags byte: %w", ErrStorage, s.where(), err)
	}
	return nil
}
