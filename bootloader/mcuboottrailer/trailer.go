// Package mcuboottrailer reads and edits the MCUboot image trailer at the end of a flash
// slot, the way an application does through MCUboot's bootutil (boot_set_pending,
// boot_set_confirmed, boot_swap_type): it requests a test or permanent upgrade in the
// secondary slot, confirms the image in the primary slot, reads a slot's trailer state and
// decides which swap MCUboot will perform at the next reset.
//
// Scope: the trailer fields magic, image_ok, copy_done, swap_info and swap_size, at the
// offsets given by image/mcuboot's Layout; erased value 0xFF or 0x00. Not covered: the swap
// status area, encryption key slots, swap-offset mode's TLV sizes, and performing swaps.
//
// Flash is reached through the small Flash interface (a subset of mtd's device methods);
// the slot's geometry is passed in Slot. Every field is written in whole write units that
// must be erased beforehand: a unit is never programmed twice without an erase.
package mcuboottrailer

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"

	"github.com/aduflash/aduflash/image/mcuboot"
	"github.com/aduflash/aduflash/internal/enumname"
	"github.com/aduflash/aduflash/internal/errkind"
)

// Flash is the part of a flash device this package uses: byte reads and writes at offsets
// within the device, and erasing whole erase blocks. mtd's devices and mtdsim satisfy it.
type Flash interface {
	ReadAt(p []byte, off int64) (int, error)
	WriteAt(p []byte, off int64) (int, error)
	Erase(off, length int64) error
}

// Slot is an MCUboot image slot on a Flash device. Size, EraseSize and WriteSize come from
// the device's geometry (mtd.Info's Size, EraseSize and WriteSize when the slot is a whole
// MTD partition).
type Slot struct {
	Flash Flash
	// Offset is where the slot starts in Flash; it must be a multiple of EraseSize.
	Offset int64
	// Size is the slot size, a multiple of EraseSize.
	Size int64
	// EraseSize is the erase block size.
	EraseSize int
	// WriteSize is the minimum write unit (flash_area_align): 1, 2, 4, 8, 16 or 32.
	WriteSize int
	// MaxAlign is BOOT_MAX_ALIGN of the bootloader: 8, 16 or 32; 0 means max(8, WriteSize)
	// (imgtool's default).
	MaxAlign int
	// ErasedZero says the flash erases to 0x00 instead of 0xFF (imgtool -R 0).
	ErasedZero bool
	// ImageEnd is where the image written into the slot ends (header + body + TLVs). A
	// stale trailer is erased by RequestUpgrade only when the erase blocks holding it start
	// at or after ImageEnd; 0 means unknown, and then stale trailers are never erased.
	ImageEnd int64
	// ImageNumber is written into swap_info's high nibble by RequestUpgrade. bootutil's
	// boot_set_pending_multi always writes 0, which is the default.
	ImageNumber int
}

// Sentinel errors.
var (
	// ErrGeometry: the Slot's sizes, alignments or options are invalid.
	ErrGeometry = errkind.New(errkind.Input, "mcuboottrailer: invalid slot geometry")
	// ErrShort: a trailer region is shorter than the trailer fields.
	ErrShort = errkind.New(errkind.Input, "mcuboottrailer: trailer region too short")
	// ErrBadMagic: the primary slot's magic is neither the trailer magic nor erased, so it
	// cannot be confirmed (bootutil's BOOT_EBADVECT).
	ErrBadMagic = errkind.New(errkind.Input, "mcuboottrailer: slot trailer magic is corrupt")
	// ErrStale: a trailer unit to be written holds other data, and erasing the trailer's
	// erase block is not safe (it may hold image data, or ImageEnd is unknown).
	ErrStale = errkind.New(errkind.Input, "mcuboottrailer: trailer holds stale data that cannot be erased safely")
	// ErrNotErased: a unit to be programmed is not erased (writing it would need an erase).
	ErrNotErased = errkind.New(errkind.Input, "mcuboottrailer: trailer unit to be written is not erased")
	// ErrFlash wraps failures of the Flash device.
	ErrFlash = errkind.New(errkind.Environment, "mcuboottrailer: flash access failed")
)

// MagicState is the state of a trailer magic, numbered as bootutil's BOOT_MAGIC_*.
type MagicState int

// Magic states.
const (
	MagicGood  MagicState = 1 // the trailer magic for the slot's max-align
	MagicBad   MagicState = 2 // anything else that is not erased
	MagicUnset MagicState = 3 // all 16 bytes erased
)

var magicStateNames = []string{MagicGood: "good", MagicBad: "bad", MagicUnset: "unset"}

func (m MagicState) String() string { return enumname.Name(m, "MagicState", magicStateNames) }

// Flag is the state of image_ok or copy_done, numbered as bootutil's BOOT_FLAG_*.
type Flag int

// Flag states.
const (
	FlagSet   Flag = 1 // 0x01
	FlagBad   Flag = 2 // neither 0x01 nor erased
	FlagUnset Flag = 3 // erased
)

var flagNames = []string{FlagSet: "set", FlagBad: "bad", FlagUnset: "unset"}

func (f Flag) String() string { return enumname.Name(f, "Flag", flagNames) }

// SwapType is what MCUboot does at the next reset (bootutil's BOOT_SWAP_TYPE_*).
type SwapType int

// Swap types.
const (
	SwapNone   SwapType = mcuboot.SwapTypeNone
	SwapTest   SwapType = mcuboot.SwapTypeTest
	SwapPerm   SwapType = mcuboot.SwapTypePerm
	SwapRevert SwapType = mcuboot.SwapTypeRevert
)

var swapTypeNames = []string{SwapNone: "none", SwapTest: "test", SwapPerm: "perm", SwapRevert: "revert"}

func (s SwapType) String() string { return enumname.Name(s, "SwapType", swapTypeNames) }

// Status is a slot's trailer as bootutil's boot_read_swap_state decodes it, plus the raw
// swap_info byte and swap_size.
type Status struct {
	Magic    MagicState
	ImageOK  Flag
	CopyDone Flag
	// SwapType and ImageNumber are decoded from swap_info; an erased swap_info or a swap
	// type above revert gives SwapNone and image 0, as in bootutil.
	SwapType    SwapType
	ImageNumber int
	SwapInfo    byte // raw swap_info byte
	// SwapSize is the little-endian u32 at swap_size; SwapSizeSet is false when erased.
	SwapSize    uint32
	SwapSizeSet bool
}

// geometry is a validated Slot.
type geometry struct {
	maxAlign int
	erased   byte
	layout   mcuboot.TrailerLayout
	fields   int // bytes from the swap_size unit to the slot end
}

func erasedByte(zero bool) byte {
	if zero {
		return 0x00
	}
	return 0xff
}

func newGeometry(maxAlign int, erasedZero bool) (geometry, error) {
	switch maxAlign {
	case 8, 16, 32:
	default:
		return geometry{}, fmt.Errorf("%w: max-align %d is not 8, 16 or 32", ErrGeometry, maxAlign)
	}
	l := mcuboot.Layout(maxAlign)
	return geometry{maxAlign: maxAlign, erased: erasedByte(erasedZero), layout: l, fields: -l.SwapSize}, nil
}

func (s Slot) geometry() (geometry, error) {
	if s.Flash == nil {
		return geometry{}, fmt.Errorf("%w: no flash", ErrGeometry)
	}
	switch s.WriteSize {
	case 1, 2, 4, 8, 16, 32:
	default:
		return geometry{}, fmt.Errorf("%w: write size %d is not 1, 2, 4, 8, 16 or 32", ErrGeometry, s.WriteSize)
	}
	ma := s.MaxAlign
	if ma == 0 {
		ma = max(mcuboot.DefaultMaxAlign, s.WriteSize)
	}
	g, err := newGeometry(ma, s.ErasedZero)
	if err != nil {
		return g, err
	}
	if s.WriteSize > ma {
		return g, fmt.Errorf("%w: write size %d exceeds max-align %d", ErrGeometry, s.WriteSize, ma)
	}
	if s.EraseSize <= 0 || s.EraseSize%s.WriteSize != 0 {
		return g, fmt.Errorf("%w: erase size %d is not a positive multiple of write size %d", ErrGeometry, s.EraseSize, s.WriteSize)
	}
	es := int64(s.EraseSize)
	if s.Offset < 0 || s.Offset%es != 0 || s.Size <= 0 || s.Size%es != 0 {
		return g, fmt.Errorf("%w: slot at %d size %d is not aligned to erase size %d", ErrGeometry, s.Offset, s.Size, s.EraseSize)
	}
	if s.Size < int64(g.fields) {
		return g, fmt.Errorf("%w: slot size %d is smaller than the trailer (%d bytes)", ErrGeometry, s.Size, g.fields)
	}
	if s.ImageNumber < 0 || s.ImageNumber > 15 {
		return g, fmt.Errorf("%w: image number %d is not 0..15", ErrGeometry, s.ImageNumber)
	}
	return g, nil
}

// Parse decodes the trailer fields at the end of tail (the end of a slot, or a whole slot
// or image padded by imgtool) for a max-align of 8, 16 or 32 and the given erased value.
func Parse(tail []byte, maxAlign int, erasedZero bool) (Status, error) {
	g, err := newGeometry(maxAlign, erasedZero)
	if err != nil {
		return Status{}, err
	}
	if len(tail) < g.fields {
		return Status{}, fmt.Errorf("%w: %d bytes, need %d", ErrShort, len(tail), g.fields)
	}
	return g.parse(tail[len(tail)-g.fields:]), nil
}

func allErased(b []byte, erased byte) bool {
	for _, c := range b {
		if c != erased {
			return false
		}
	}
	return true
}

// parse decodes exactly g.fields bytes ending at the slot end.
func (g geometry) parse(r []byte) Status {
	end := len(r)
	var st Status
	magic := r[end+g.layout.Magic:]
	switch {
	case allErased(magic, g.erased):
		st.Magic = MagicUnset
	case bytes.Equal(magic, mcuboot.TrailerMagic(g.maxAlign)):
		st.Magic = MagicGood
	default:
		st.Magic = MagicBad
	}
	st.ImageOK = g.flag(r[end+g.layout.ImageOK])
	st.CopyDone = g.flag(r[end+g.layout.CopyDone])
	st.SwapInfo = r[end+g.layout.SwapInfo]
	st.SwapType, st.ImageNumber = SwapType(st.SwapInfo&0x0f), int(st.SwapInfo>>4)
	if st.SwapInfo == g.erased || st.SwapType > SwapRevert {
		st.SwapType, st.ImageNumber = SwapNone, 0
	}
	sz := r[end+g.layout.SwapSize : end+g.layout.SwapSize+4]
	st.SwapSize = binary.LittleEndian.Uint32(sz)
	st.SwapSizeSet = !allErased(sz, g.erased)
	return st
}

func (g geometry) flag(b byte) Flag {
	switch b {
	case g.erased:
		return FlagUnset
	case mcuboot.FlagSet:
		return FlagSet
	}
	return FlagBad
}

// readFields works out the slot's trailer geometry and reads its fields region.
func (s Slot) readFields() (geometry, []byte, error) {
	g, err := s.geometry()
	if err != nil {
		return geometry{}, nil, err
	}
	b := make([]byte, g.fields)
	off := s.Offset + s.Size - int64(g.fields)
	if _, err := io.ReadFull(io.NewSectionReader(s.Flash, off, int64(len(b))), b); err != nil {
		return geometry{}, nil, fmt.Errorf("%w: reading trailer at %d: %w", ErrFlash, off, err)
	}
	return g, b, nil
}

// Read reads and decodes a slot's trailer.
func Read(s Slot) (Status, error) {
	g, r, err := s.readFields()
	if err != nil {
		return Status{}, err
	}
	return g.parse(r), nil
}

// Decide is MCUboot's boot_swap_tables: the swap type for a primary and a secondary
// slot's trailer state. Secondary magic good with image_ok unset gives test, with image_ok
// set gives perm; otherwise primary magic good, image_ok unset and copy_done set with the
// secondary magic unset gives revert; anything else none.
func Decide(primary, secondary Status) SwapType {
	switch {
	case secondary.Magic == MagicGood && secondary.ImageOK == FlagUnset:
		return SwapTest
	case secondary.Magic == MagicGood && secondary.ImageOK == FlagSet:
		return SwapPerm
	case primary.Magic == MagicGood && secondary.Magic == MagicUnset &&
		primary.ImageOK == FlagUnset && primary.CopyDone == FlagSet:
		return SwapRevert
	}
	return SwapNone
}

// State reads both slots' trailers and returns the swap MCUboot would perform at the next
// reset (boot_swap_type_multi).
func State(primary, secondary Slot) (SwapType, error) {
	p, err := Read(primary)
	if err != nil {
		return 0, fmt.Errorf("primary slot: %w", err)
	}
	sec, err := Read(secondary)
	if err != nil {
		return 0, fmt.Errorf("secondary slot: %w", err)
	}
	return Decide(p, sec), nil
}
