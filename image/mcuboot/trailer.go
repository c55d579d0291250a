package mcuboot

import (
	"bytes"
	"encoding/binary"
	"fmt"
)

// Trailer constants. The trailer sits at the end of a slot; every field occupies its own
// max-align unit so that each can be written once after an erase.
const (
	// MagicSize is the size of the trailer magic.
	MagicSize = 16
	// DefaultMaxAlign is BOOT_MAX_ALIGN when not configured (and imgtool's default).
	DefaultMaxAlign = 8
	// DefaultMaxSectors is imgtool's default for -M/--max-sectors (BOOT_MAX_IMG_SECTORS).
	DefaultMaxSectors = 128

	// FlagSet is the value of image_ok and copy_done once written; anything else means unset.
	FlagSet = 0x01

	// Swap types stored in the low nibble of swap_info (the high nibble is the image number).
	SwapTypeNone   = 1
	SwapTypeTest   = 2
	SwapTypePerm   = 3
	SwapTypeRevert = 4
)

// magicV8 is the trailer magic for max-align 8; magicTail the last 14 bytes of the magic for
// larger alignments, which start with the alignment as a little-endian u16.
var (
	magicV8   = []byte{0x77, 0xc2, 0x95, 0xf3, 0x60, 0xd2, 0xef, 0x7f, 0x35, 0x52, 0x50, 0x0f, 0x2c, 0xb6, 0x79, 0x80}
	magicTail = []byte{0x2d, 0xe1, 0x5d, 0x29, 0x41, 0x0b, 0x8d, 0x77, 0x67, 0x9c, 0x11, 0x0f, 0x1f, 0x8a}
)

// TrailerMagic returns the 16-byte trailer magic MCUboot and imgtool write for a max-align:
// the classic magic for 8, otherwise {u16 max-align (little-endian)} followed by 14 fixed bytes.
func TrailerMagic(maxAlign int) []byte {
	if maxAlign == DefaultMaxAlign {
		return bytes.Clone(magicV8)
	}
	m := make([]byte, 2, MagicSize)
	binary.LittleEndian.PutUint16(m, uint16(maxAlign))
	return append(m, magicTail...)
}

// MagicMaxAlign reports the max-align that a 16-byte trailer magic encodes, and whether m is a
// trailer magic at all (what `imgtool dumpinfo` accepts: the classic magic means 8, the other
// form carries the alignment, which must be a power of two of at least 8 here).
func MagicMaxAlign(m []byte) (int, bool) {
	if len(m) != MagicSize {
		return 0, false
	}
	if bytes.Equal(m, magicV8) {
		return DefaultMaxAlign, true
	}
	if !bytes.Equal(m[2:], magicTail) {
		return 0, false
	}
	a := int(binary.LittleEndian.Uint16(m))
	if a < 8 || a&(a-1) != 0 {
		return 0, false
	}
	return a, true
}

// TrailerOptions are the inputs of imgtool's trailer size formula.
type TrailerOptions struct {
	// Align is the flash write size (imgtool --align): 1, 2, 4, 8, 16 or 32. 0 means 1.
	Align int
	// MaxAlign is BOOT_MAX_ALIGN (imgtool --max-align). 0 means max(8, Align).
	MaxAlign int
	// MaxSectors is BOOT_MAX_IMG_SECTORS (imgtool -M). 0 means 128.
	MaxSectors int
	// OverwriteOnly: the bootloader overwrites instead of swapping (no swap status area).
	OverwriteOnly bool
}

func (o TrailerOptions) normalize() (TrailerOptions, error) {
	if o.Align == 0 {
		o.Align = 1
	}
	if o.MaxAlign == 0 {
		o.MaxAlign = max(DefaultMaxAlign, o.Align)
	}
	if o.MaxSectors == 0 {
		o.MaxSectors = DefaultMaxSectors
	}
	switch o.Align {
	case 1, 2, 4, 8, 16, 32:
	default:
		return o, fmt.Errorf("%w: alignment %d is not one of 1, 2, 4, 8, 16, 32", ErrBadOptions, o.Align)
	}
	switch o.MaxAlign {
	case 8, 16, 32:
	default:
		return o, fmt.Errorf("%w: max alignment %d is not one of 8, 16, 32", ErrBadOptions, o.MaxAlign)
	}
	if o.MaxSectors < 0 || o.MaxSectors > 1<<16 {
		return o, fmt.Errorf("%w: max sectors %d is out of range 1..65536", ErrBadOptions, o.MaxSectors)
	}
	return o, nil
}

// TrailerSize is the space imgtool reserves at the end of a slot for the trailer (without
// encryption keys, which this package does not write):
//
//	swap:           max_sectors·3·align + 4·max_align + align_up(16, max_align)
//	overwrite-only: 2·max_align + align_up(16, max_align)
//
// For 128 sectors and max-align 8: 432 bytes for align 1, 1584 for align 4, 3120 for align 8;
// 32 bytes overwrite-only.
func TrailerSize(o TrailerOptions) (int, error) {
	o, err := o.normalize()
	if err != nil {
		return 0, err
	}
	magic := alignUp(MagicSize, o.MaxAlign)
	if o.OverwriteOnly {
		return 2*o.MaxAlign + magic, nil
	}
	return o.MaxSectors*3*o.Align + 4*o.MaxAlign + magic, nil
}

// TrailerLayout gives where the trailer fields sit, as negative offsets from the end of the
// slot (MCUboot's boot_*_off functions and imgtool agree on them). Each flag field is one byte
// at the start of its max-align unit; swap_size is a little-endian u32.
type TrailerLayout struct {
	MaxAlign int
	Magic    int // the 16-byte magic: always the last 16 bytes
	ImageOK  int
	CopyDone int
	SwapInfo int
	SwapSize int
}

// Layout returns the trailer layout for a max-align (8, 16 or 32; other powers of two work too).
// For 8: magic −16, image_ok −24, copy_done −32, swap_info −40, swap_size −48.
func Layout(maxAlign int) TrailerLayout {
	l := TrailerLayout{MaxAlign: maxAlign, Magic: -MagicSize}
	l.ImageOK = -(alignUp(MagicSize, maxAlign) + maxAlign)
	l.CopyDone = l.ImageOK - maxAlign
	l.SwapInfo = l.CopyDone - maxAlign
	l.SwapSize = l.SwapInfo - maxAlign
	return l
}

// Trailer holds the trailer fields of a slot (or of an image padded with --pad/--confirm).
type Trailer struct {
	// Offset is where the trailer's swap_size unit starts, from the start of the data.
	Offset   int    `json:"offset"`
	MaxAlign int    `json:"max_align"`
	Magic    Hex    `json:"magic"`
	ImageOK  uint8  `json:"image_ok"`
	CopyDone uint8  `json:"copy_done"`
	SwapInfo uint8  `json:"swap_info"`
	SwapSize uint32 `json:"swap_size"`
}

// Confirmed reports whether image_ok is set.
func (t *Trailer) Confirmed() bool { return t.ImageOK == FlagSet }

// SwapType is the low nibble of swap_info (SwapType* constants; 0xf when erased).
func (t *Trailer) SwapType() int { return int(t.SwapInfo & 0x0f) }

// ImageNumber is the high nibble of swap_info.
func (t *Trailer) ImageNumber() int { return int(t.SwapInfo >> 4) }

// ParseTrailer reads the trailer at the end of slot (which may be a whole slot or an image
// padded to one). It returns false when the last 16 bytes are not a trailer magic or the slot
// is too small for the fields the magic implies.
func ParseTrailer(slot []byte) (*Trailer, bool) {
	if len(slot) < MagicSize {
		return nil, false
	}
	m := slot[len(slot)-MagicSize:]
	ma, ok := MagicMaxAlign(m)
	if !ok {
		return nil, false
	}
	l := Layout(ma)
	start := len(slot) + l.SwapSize
	if start < 0 {
		return nil, false
	}
	end := len(slot)
	return &Trailer{
		Offset:   start,
		MaxAlign: ma,
		Magic:    bytes.Clone(m),
		ImageOK:  slot[end+l.ImageOK],
		CopyDone: slot[end+l.CopyDone],
		SwapInfo: slot[end+l.SwapInfo],
		SwapSize: binary.LittleEndian.Uint32(slot[start:]),
	}, true
}

func alignUp(n, a int) int { return (n + a - 1) &^ (a - 1) }
