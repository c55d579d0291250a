package mcuboottrailer

import (
	"bytes"
	"fmt"

	"github.com/aduflash/aduflash/image/mcuboot"
)

// unit is one write of a trailer field: data at an offset from the slot start.
type unit struct {
	name string
	off  int64 // from the slot start
	data []byte
}

// magicUnit is boot_write_magic: align_up(16, max-align) bytes ending at the slot end,
// erased padding followed by the magic.
func (s Slot) magicUnit(g geometry) unit {
	n := (mcuboot.MagicSize + g.maxAlign - 1) &^ (g.maxAlign - 1)
	d := bytes.Repeat([]byte{g.erased}, n)
	copy(d[n-mcuboot.MagicSize:], mcuboot.TrailerMagic(g.maxAlign))
	return unit{name: "magic", off: s.Size - int64(n), data: d}
}

// flagUnit is boot_write_trailer for a one-byte field: the value padded with the erased
// value to the write size.
func (s Slot) flagUnit(g geometry, name string, fromEnd int, v byte) unit {
	d := bytes.Repeat([]byte{g.erased}, s.WriteSize)
	d[0] = v
	return unit{name: name, off: s.Size + int64(fromEnd), data: d}
}

// unitState compares a unit's current contents with what is to be written.
type unitState int

const (
	unitErased unitState = iota
	unitWritten
	unitConflict
)

func (g geometry) state(fields []byte, fieldsOff int64, u unit) unitState {
	cur := fields[u.off-fieldsOff : u.off-fieldsOff+int64(len(u.data))]
	switch {
	case bytes.Equal(cur, u.data):
		return unitWritten
	case allErased(cur, g.erased):
		return unitErased
	}
	return unitConflict
}

// program writes a unit after checking on the flash that it is still erased.
func (s Slot) program(g geometry, u unit) error {
	cur := make([]byte, len(u.data))
	off := s.Offset + u.off
	if err := readFull(s.Flash, cur, off); err != nil {
		return err
	}
	if bytes.Equal(cur, u.data) {
		return nil
	}
	if !allErased(cur, g.erased) {
		return fmt.Errorf("%w: %s at slot offset %d", ErrNotErased, u.name, u.off)
	}
	n, err := s.Flash.WriteAt(u.data, off)
	if err == nil && n != len(u.data) {
		err = fmt.Errorf("short write: %d of %d bytes", n, len(u.data))
	}
	if err != nil {
		return fmt.Errorf("%w: writing %s at %d: %w", ErrFlash, u.name, off, err)
	}
	return nil
}

func readFull(f Flash, b []byte, off int64) error {
	n, err := f.ReadAt(b, off)
	if n == len(b) {
		return nil
	}
	if err == nil {
		err = fmt.Errorf("short read: %d of %d bytes", n, len(b))
	}
	return fmt.Errorf("%w: reading at %d: %w", ErrFlash, off, err)
}

// RequestUpgrade marks the image in the secondary slot s as pending, like bootutil's
// boot_set_pending_multi: it writes the magic, then image_ok=1 if permanent, then swap_info
// (swap type perm or test, image number s.ImageNumber). Units that already hold the wanted
// value are skipped, so a request interrupted by a power cut can be repeated. If a unit
// holds other data (a bad magic, image_ok set for a test request, another swap_info), the
// erase blocks holding the trailer fields are erased first when they start at or after
// s.ImageEnd; otherwise ErrStale is returned and nothing is written. (bootutil itself erases
// the whole slot when the magic is bad; this package never erases image data.)
func RequestUpgrade(s Slot, permanent bool) error {
	g, fields, err := s.readFields()
	if err != nil {
		return err
	}
	fieldsOff := s.Size - int64(g.fields)
	swapType := byte(mcuboot.SwapTypeTest)
	if permanent {
		swapType = mcuboot.SwapTypePerm
	}
	units := []unit{s.magicUnit(g)}
	okUnit := s.flagUnit(g, "image_ok", g.layout.ImageOK, mcuboot.FlagSet)
	if permanent {
		units = append(units, okUnit)
	}
	units = append(units, s.flagUnit(g, "swap_info", g.layout.SwapInfo, byte(s.ImageNumber)<<4|swapType))

	stale := ""
	for _, u := range units {
		if g.state(fields, fieldsOff, u) == unitConflict {
			stale = u.name
			break
		}
	}
	// A test request must leave image_ok erased, or MCUboot would make it permanent.
	if !permanent && stale == "" && g.state(fields, fieldsOff, okUnit) != unitErased {
		stale = "image_ok"
	}
	if stale != "" {
		if err := s.eraseFields(g, stale); err != nil {
			return err
		}
	}
	for _, u := range units {
		if err := s.program(g, u); err != nil {
			return err
		}
	}
	return nil
}

// eraseFields erases the erase blocks holding the trailer fields if no image data can be
// in them.
func (s Slot) eraseFields(g geometry, field string) error {
	es := int64(s.EraseSize)
	start := (s.Size - int64(g.fields)) / es * es
	if s.ImageEnd <= 0 || start < s.ImageEnd {
		return fmt.Errorf("%w: %s in slot at %d needs rewriting, and erasing [%d, %d) of the slot would be unsafe (image ends at %d; 0 = unknown)",
			ErrStale, field, s.Offset, start, s.Size, s.ImageEnd)
	}
	if err := s.Flash.Erase(s.Offset+start, s.Size-start); err != nil {
		return fmt.Errorf("%w: erasing %d bytes at %d: %w", ErrFlash, s.Size-start, s.Offset+start, err)
	}
	return nil
}

// Confirm marks the image in the primary slot s as good, like bootutil's
// boot_set_confirmed_multi: it writes image_ok=1 when the magic is good and image_ok is
// erased. An erased magic (an image that was not swapped in) or an image_ok already written
// needs nothing; a corrupt magic gives ErrBadMagic. Nothing is ever erased in the primary
// slot, so a non-erased image_ok unit gives ErrNotErased.
func Confirm(s Slot) error {
	g, fields, err := s.readFields()
	if err != nil {
		return err
	}
	st := g.parse(fields)
	switch st.Magic {
	case MagicUnset:
		return nil
	case MagicBad:
		return fmt.Errorf("%w: primary slot at %d", ErrBadMagic, s.Offset)
	}
	if st.ImageOK != FlagUnset {
		return nil
	}
	return s.program(g, s.flagUnit(g, "image_ok", g.layout.ImageOK, mcuboot.FlagSet))
}
