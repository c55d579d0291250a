package mtdsim

import (
	"fmt"

	"github.com/aduflash/aduflash/mtd"
)

// BlockCounters are the operations a Block has performed.
type BlockCounters struct {
	SectorWrites int64 // operations: sector writes (or the part of one sector a WriteAt touches), torn ones included
	BytesWritten int64 // bytes that reached the medium
	Syncs        int64
}

// Block is a simulated block device or file (an eMMC partition): zero-filled, any
// alignment, with the power-cut model of the package doc at sector granularity. It
// implements io.ReaderAt, io.WriterAt, Sync, Size and Close, and is safe for concurrent
// use.
type Block struct {
	medium
	sector int
	cnt    BlockCounters
}

// NewBlock returns a zero-filled block device of size bytes with sectorSize sectors.
// Options: WithSeed.
func NewBlock(size, sectorSize int, opts ...Option) (*Block, error) {
	if size < 0 || sectorSize <= 0 || size%sectorSize != 0 {
		return nil, fmt.Errorf("mtdsim: block device size %d, sector %d: %w", size, sectorSize, mtd.ErrUnaligned)
	}
	c := newConfig(opts)
	return &Block{medium: newMedium(make([]byte, size), c.seed), sector: sectorSize}, nil
}

// Size returns the size in bytes.
func (b *Block) Size() int64 { return int64(len(b.data)) }

// SectorSize returns the sector size.
func (b *Block) SectorSize() int { return b.sector }

// WriteAt writes p at off, sector by sector in order (one operation per sector touched).
// Writes past the end are refused whole with mtd.ErrOutOfRange.
func (b *Block) WriteAt(p []byte, off int64) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.pw.check(); err != nil {
		return 0, err
	}
	if err := mtd.CheckRange(off, int64(len(p)), int64(len(b.data))); err != nil {
		return 0, err
	}
	b.lies.wrote(off, int64(len(p)))
	done := 0
	for done < len(p) {
		pos := off + int64(done)
		n := min(len(p)-done, b.sector-int(pos%int64(b.sector)))
		b.cnt.SectorWrites++
		if k := b.pw.begin(n, b.rng); k >= 0 {
			copy(b.data[pos:], p[done:done+k])
			b.cnt.BytesWritten += int64(k)
			return done + k, fmt.Errorf("mtdsim: write at %#x: %w", pos+int64(k), mtd.ErrPowerCut)
		}
		copy(b.data[pos:], p[done:done+n])
		b.cnt.BytesWritten += int64(n)
		done += n
	}
	return done, nil
}

// Sync counts and succeeds: writes reach the medium when WriteAt returns. It starts the
// AfterSync lies whose range was written.
func (b *Block) Sync() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.synced(); err != nil {
		return err
	}
	b.cnt.Syncs++
	return nil
}

// Close does nothing; the device stays usable (see Flash.Close).
func (b *Block) Close() error { return nil }

// Counters returns the counters.
func (b *Block) Counters() BlockCounters {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.cnt
}

// Load preloads content at offset 0 (not an operation).
func (b *Block) Load(data []byte) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(data) > len(b.data) {
		return fmt.Errorf("mtdsim: load %d bytes into %d: %w", len(data), len(b.data), mtd.ErrOutOfRange)
	}
	copy(b.data, data)
	return nil
}
