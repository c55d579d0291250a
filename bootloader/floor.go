package bootloader

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"unicode"

	"github.com/aduflash/aduflash/internal/errkind"
)

// VarSecFloor is the variable in which the U-Boot (every preset) and GRUB backends keep the
// anti-rollback floors: "CLASS:N" pairs separated by spaces, e.g. "rootfs:7 mcu:3". No boot
// script reads it; it lives in the bootloader's storage so that a wipe of the agent's data
// does not lower the floors.
const VarSecFloor = "adu_sec_floor"

// Floors are anti-rollback floors: per slot class, the lowest image security counter the
// device still accepts. A class that is not in the map has floor 0.
type Floors map[string]uint64

// FloorKeeper is a backend that keeps the anti-rollback floors in the bootloader's storage
// (the U-Boot and GRUB backends; MCUboot's trailers have no room for them). A floor is only
// ever raised.
type FloorKeeper interface {
	// Floors reads the floors.
	Floors() (Floors, error)
	// ConfirmRaising is Confirm that raises the floors to at least raise in the same single
	// write, so that a power cut leaves the old state with the old floors or the new state
	// with the new ones. A nil raise is Confirm.
	ConfirmRaising(s Bank, raise Floors) error
	// RaiseFloors raises the floors to at least raise in one write (none when no floor rises).
	RaiseFloors(raise Floors) error
}

// ErrFloorClass: a floor's class name cannot be stored in VarSecFloor (empty, or holding a
// space or a control character).
var ErrFloorClass = errkind.New(errkind.Input, "slot class cannot be stored as an anti-rollback floor")

// parseFloors reads the value of VarSecFloor.
func parseFloors(v string) (Floors, error) {
	f := Floors{}
	for _, field := range strings.Fields(v) {
		i := strings.LastIndexByte(field, ':')
		var n uint64
		var err error
		if i > 0 {
			n, err = strconv.ParseUint(field[i+1:], 10, 64)
		}
		if i <= 0 || err != nil {
			return nil, fmt.Errorf("%w: %s=%q: %q is not CLASS:COUNTER", ErrBadState, VarSecFloor, v, field)
		}
		f[field[:i]] = max(f[field[:i]], n)
	}
	return f, nil
}

// String is the value of VarSecFloor: the non-zero floors by class name.
func (f Floors) String() string {
	classes := make([]string, 0, len(f))
	for c, n := range f {
		if n > 0 {
			classes = append(classes, c)
		}
	}
	sort.Strings(classes)
	parts := make([]string, len(classes))
	for i, c := range classes {
		parts[i] = c + ":" + strconv.FormatUint(f[c], 10)
	}
	return strings.Join(parts, " ")
}

// floorsOf reads the floors from the variables.
func floorsOf(vars map[string]string) (Floors, error) {
	return parseFloors(vars[VarSecFloor])
}

// storeFloors reads the floors of the environment in store.
func storeFloors(store EnvStore) (Floors, error) {
	vars, err := store.Vars()
	if err != nil {
		return nil, err
	}
	return floorsOf(vars)
}

// raiseStoreFloors raises the floors of the environment in store in one write; none when
// no floor rises.
func raiseStoreFloors(store EnvStore, raise Floors) error {
	vars, err := store.Vars()
	if err != nil {
		return err
	}
	set := map[string]string{}
	if err := raiseInto(set, vars, raise); err != nil || len(set) == 0 {
		return err
	}
	return store.Update(set, nil)
}

// raiseInto adds to set the VarSecFloor value that raises the floors in vars to at least
// raise, if any floor rises.
func raiseInto(set, vars map[string]string, raise Floors) error {
	if len(raise) == 0 {
		return nil
	}
	f, err := floorsOf(vars)
	if err != nil {
		return err
	}
	rises := false
	for c, n := range raise {
		if c == "" || strings.ContainsFunc(c, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) {
			return fmt.Errorf("%w: %q", ErrFloorClass, c)
		}
		if n > f[c] {
			f[c], rises = n, true
		}
	}
	if rises {
		set[VarSecFloor] = f.String()
	}
	return nil
}

var (
	_ FloorKeeper = (*UBoot)(nil)
	_ FloorKeeper = (*GRUB)(nil)
)
