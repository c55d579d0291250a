package mtd

import (
	"errors"
	"fmt"
	"iter"

	"github.com/aduflash/aduflash/internal/enumname"
)

// Sentinel errors. Every error returned by this package and by mtd/mtdsim wraps one of
// them (or an os / syscall error) so callers can test with errors.Is.
var (
	// ErrUnsupported: the operation does not exist on this OS or this kind of device
	// (MarkBad on NOR or RAM, any ioctl outside Linux).
	ErrUnsupported = errors.New("mtd: unsupported")
	// ErrBadBlock: the erase block is marked bad; skip it.
	ErrBadBlock = errors.New("mtd: bad block")
	// ErrIO: the flash reported a failed erase or program (EIO). The block is worn out
	// and should be marked bad by the caller.
	ErrIO = errors.New("mtd: flash operation failed")
	// ErrUnaligned: an offset or length does not respect the write or erase granularity.
	ErrUnaligned = errors.New("mtd: unaligned")
	// ErrOutOfRange: the range is not inside the device or volume.
	ErrOutOfRange = errors.New("mtd: out of range")
	// ErrPowerCut: the (simulated) power failed; see package mtd/mtdsim.
	ErrPowerCut = errors.New("mtd: power cut")
	// ErrNotErased: a program would need to set bits that are 0 (mtdsim strict NOR) or
	// programs a NAND page a second time since its erase (mtdsim NAND).
	ErrNotErased = errors.New("mtd: not erased")
	// ErrReadOnly: the device or volume is not writable.
	ErrReadOnly = errors.New("mtd: read-only")
	// ErrNotFound: no MTD device or UBI volume has that name or number.
	ErrNotFound = errors.New("mtd: not found")
	// ErrBlockEmulation: the path is an mtdblock device; open /dev/mtdN instead.
	ErrBlockEmulation = errors.New("mtd: mtdblock emulation refused (erase and bad-block handling would be lost); use the /dev/mtdN character device")
	// ErrUpdateSize: fewer or more bytes than announced were written to a UBI volume update.
	ErrUpdateSize = errors.New("mtd: UBI update size mismatch")
	// ErrClosed: the device or writer is closed.
	ErrClosed = errors.New("mtd: closed")
)

// BlockError reports an operation that failed at one erase block (or page).
type BlockError struct {
	Op  string // "erase", "write", "markbad", ...
	Off int64  // offset of the erase block (or page) that failed
	Err error  // one of the sentinels above, possibly joined with an errno
}

func (e *BlockError) Error() string {
	return fmt.Sprintf("mtd: %s at offset %#x: %v", e.Op, e.Off, e.Err)
}

func (e *BlockError) Unwrap() error { return e.Err }

// Type is the kind of flash, as the kernel's MTD type (values equal MTD_* in mtd-abi.h).
type Type uint8

// MTD types.
const (
	TypeAbsent    Type = 0
	TypeRAM       Type = 1
	TypeROM       Type = 2
	TypeNOR       Type = 3
	TypeNAND      Type = 4
	TypeDataFlash Type = 6
	TypeUBIVolume Type = 7
	TypeMLCNAND   Type = 8
)

var typeNames = []string{
	TypeAbsent: "absent", TypeRAM: "ram", TypeROM: "rom", TypeNOR: "nor", TypeNAND: "nand",
	TypeDataFlash: "dataflash", TypeUBIVolume: "ubi", TypeMLCNAND: "mlc-nand",
}

// String returns the name sysfs uses (/sys/class/mtd/mtdN/type).
func (t Type) String() string { return enumname.Name(t, "unknown", typeNames) }

// ParseType parses a sysfs type name ("nor", "nand", "mlc-nand", ...).
func ParseType(s string) (Type, error) {
	for i, n := range typeNames {
		if n != "" && n == s {
			return Type(i), nil
		}
	}
	return 0, fmt.Errorf("mtd: unknown MTD type %q: %w", s, ErrUnsupported)
}

// IsNAND reports NAND (SLC or MLC): page writes, bad blocks.
func (t Type) IsNAND() bool { return t == TypeNAND || t == TypeMLCNAND }

// HasBadBlocks reports whether the kernel tracks bad blocks for this type.
func (t Type) HasBadBlocks() bool { return t.IsNAND() }

// Info is the geometry of a device.
type Info struct {
	Name        string // MTD name (from sysfs / the partition table)
	Type        Type
	Size        int64 // bytes
	EraseSize   int   // erase block size in bytes
	WriteSize   int   // minimal write unit: the page on NAND, 1 on NOR and RAM
	OOBSize     int   // out-of-band bytes per page (NAND)
	SubpageSize int   // sub-page size (NAND; UBI needs it); equals WriteSize when unknown
	Writable    bool  // MTD_WRITEABLE set and the device was opened for writing
}

// Blocks returns the number of erase blocks.
func (i Info) Blocks() int {
	if i.EraseSize <= 0 {
		return 0
	}
	return int(i.Size / int64(i.EraseSize))
}

// BlockOf returns the index of the erase block holding off.
func (i Info) BlockOf(off int64) int { return int(off / int64(max(i.EraseSize, 1))) }

// BlockOffset returns the offset of erase block n.
func (i Info) BlockOffset(n int) int64 { return int64(n) * int64(i.EraseSize) }

// CheckWrite validates a write of n bytes at off against the geometry: inside the device
// (ErrOutOfRange) and, for WriteSize > 1, page-aligned offset and length (ErrUnaligned).
func (i Info) CheckWrite(off int64, n int) error {
	if err := CheckRange(off, int64(n), i.Size); err != nil {
		return err
	}
	if ws := int64(max(i.WriteSize, 1)); off%ws != 0 || int64(n)%ws != 0 {
		return fmt.Errorf("mtd: write of %d bytes at %#x, page size %d: %w", n, off, ws, ErrUnaligned)
	}
	return nil
}

// CheckErase validates an erase of length bytes at off: inside the device and aligned on
// erase blocks.
func (i Info) CheckErase(off, length int64) error {
	if err := CheckRange(off, length, i.Size); err != nil {
		return err
	}
	if es := int64(i.EraseSize); es <= 0 || off%es != 0 || length%es != 0 {
		return fmt.Errorf("mtd: erase of %#x bytes at %#x, erase size %d: %w", length, off, i.EraseSize, ErrUnaligned)
	}
	return nil
}

// CheckRange returns ErrOutOfRange unless 0 <= off and off+n <= size (n >= 0).
func CheckRange(off, n, size int64) error {
	if off < 0 || n < 0 || off > size || n > size-off {
		return fmt.Errorf("mtd: range %#x+%#x outside size %#x: %w", off, n, size, ErrOutOfRange)
	}
	return nil
}

// IsErased reports whether every byte of buf is 0xFF (erased flash).
func IsErased(buf []byte) bool {
	for _, b := range buf {
		if b != 0xFF {
			return false
		}
	}
	return true
}

// AlignDown rounds off down to a multiple of align (align > 0).
func AlignDown(off, align int64) int64 { return off - off%align }

// AlignUp rounds off up to a multiple of align (align > 0).
func AlignUp(off, align int64) int64 {
	if r := off % align; r != 0 {
		return off + align - r
	}
	return off
}

// IsAligned reports whether off is a multiple of align (align > 0).
func IsAligned(off, align int64) bool { return off%align == 0 }

// BlockRange yields the start offset of every erase block that overlaps
// [off, off+length), in order:
//
//	for blk := range mtd.BlockRange(off, n, info.EraseSize) { ... }
func BlockRange(off, length int64, eraseSize int) iter.Seq[int64] {
	return func(yield func(int64) bool) {
		if eraseSize <= 0 || length <= 0 {
			return
		}
		es := int64(eraseSize)
		for b := AlignDown(off, es); b < off+length; b += es {
			if !yield(b) {
				return
			}
		}
	}
}
