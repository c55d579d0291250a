package ubootenv

import (
	"fmt"

	"github.com/aduflash/aduflash/internal/enumname"
)

// FlagScheme is how the flags byte of a redundant env orders the two copies.
type FlagScheme int

const (
	// FlagsSerial is the incrementing counter of U-Boot's NAND, MMC, UBI and file
	// backends and libubootenv's NAND/UBI/file devices: a write stores current+1 (mod 256).
	FlagsSerial FlagScheme = iota
	// FlagsBoolean is the ACTIVE (1) / OBSOLETE (0) scheme of U-Boot's CFI NOR backend
	// (env/flash.c): a write stores ACTIVE in the new copy and then programs the old
	// copy's flags byte to OBSOLETE in place, without erase.
	FlagsBoolean
)

// Flag values of the boolean scheme.
const (
	FlagActive   byte = 1
	FlagObsolete byte = 0
)

var flagSchemeNames = []string{FlagsSerial: "serial", FlagsBoolean: "boolean"}

func (s FlagScheme) String() string { return enumname.Name(s, "FlagScheme", flagSchemeNames) }

// CopyState is what selection needs to know about one copy.
type CopyState struct {
	Valid bool // CRC matched (and the copy was readable)
	Flags byte
}

// Select returns the index (0 or 1) of the current copy of a redundant env, as U-Boot
// chooses it:
//
//   - exactly one valid copy: that one;
//   - none valid: -1 and ErrNoValidCopy;
//   - both valid, FlagsSerial (env_check_redund): 255 vs 0 → the 0 copy; otherwise the
//     greater flags byte; equal → the first copy;
//   - both valid, FlagsBoolean (env/flash.c): 1/0 → first, 0/1 → second, equal → first,
//     first is 0xFF → first, second is 0xFF → second, anything else → second. The last
//     rule is the "03/02 trap": U-Boot on NOR picks the second copy for 03/02 and 02/01,
//     where libubootenv's comparison (greater wins) picks the first. U-Boot is what boots,
//     so this follows U-Boot (verified with a real U-Boot build, test-harness.md §2b).
func Select(c1, c2 CopyState, s FlagScheme) (int, error) {
	switch {
	case c1.Valid && !c2.Valid:
		return 0, nil
	case !c1.Valid && c2.Valid:
		return 1, nil
	case !c1.Valid && !c2.Valid:
		return -1, fmt.Errorf("%w: copy 1 and copy 2 both invalid", ErrNoValidCopy)
	}
	f1, f2 := c1.Flags, c2.Flags
	switch s {
	case FlagsBoolean:
		switch {
		case f1 == FlagActive && f2 == FlagObsolete:
			return 0, nil
		case f1 == FlagObsolete && f2 == FlagActive:
			return 1, nil
		case f1 == f2:
			return 0, nil
		case f1 == 0xFF:
			return 0, nil
		case f2 == 0xFF:
			return 1, nil
		default:
			return 1, nil
		}
	default:
		switch {
		case f1 == 0xFF && f2 == 0:
			return 1, nil
		case f2 == 0xFF && f1 == 0:
			return 0, nil
		case f2 > f1:
			return 1, nil
		default:
			return 0, nil
		}
	}
}

// NextFlags is the flags byte of the copy written after a current copy with flags cur.
func NextFlags(cur byte, s FlagScheme) byte {
	if s == FlagsBoolean {
		return FlagActive
	}
	return cur + 1
}
