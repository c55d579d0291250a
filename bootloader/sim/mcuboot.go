package sim

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"

	"github.com/aduflash/aduflash/bootloader"
	"github.com/aduflash/aduflash/bootloader/mcuboottrailer"
	"github.com/aduflash/aduflash/image/mcuboot"
)

// MCUboot models what MCUboot's bootutil does with the two slots of one image at reset, for
// the swap upgrade strategies: it decides the swap type from both trailers
// (mcuboottrailer.Decide) and then
//
//   - none: boots the primary slot, writing nothing;
//   - test or perm: swaps the images, then leaves the primary trailer as MCUboot does after
//     the swap (magic, swap_info = the swap type, swap_size, copy_done set, image_ok set
//     for perm and unset for test) and the secondary trailer erased;
//   - revert: swaps the images back and leaves the primary trailer with magic, swap_info =
//     revert, swap_size, copy_done and image_ok set (boot_perform_update sets image_ok after
//     a revert so that it does not revert again), and the secondary trailer erased.
//
// The swap is a plain full copy: everything in each slot before the trailer fields (the
// last -Layout(max-align).SwapSize bytes) changes places, and the slots are erased and
// rewritten whole. MCUboot's sector-by-sector swap with its swap-status records (so that a
// reset during the swap resumes it) is not modelled, nor is image validation (hash,
// signature, security counter: MCUboot erases an invalid secondary image instead of
// swapping), multi-image, overwrite-only or direct-xip. Reset is not meant to be cut by a
// power failure.
type MCUboot struct {
	Primary, Secondary mcuboottrailer.Slot
	// Name is the bank name Reset returns as Boot.Bank (MCUboot always runs the primary
	// slot); default "primary".
	Name bootloader.Bank
	// LastSwap is the swap the last Reset performed (SwapNone when it only booted).
	LastSwap mcuboottrailer.SwapType
}

// Reset runs MCUboot once. Boot.Rollback is true for a revert, Boot.Saved when it wrote the
// flash.
func (m *MCUboot) Reset() (Boot, error) {
	name := m.Name
	if name == "" {
		name = "primary"
	}
	p, err := mcuboottrailer.Read(m.Primary)
	if err != nil {
		return Boot{}, fmt.Errorf("sim: primary slot: %w", err)
	}
	s, err := mcuboottrailer.Read(m.Secondary)
	if err != nil {
		return Boot{}, fmt.Errorf("sim: secondary slot: %w", err)
	}
	swap := mcuboottrailer.Decide(p, s)
	m.LastSwap = swap
	b := Boot{Bank: name}
	if swap == mcuboottrailer.SwapNone {
		return b, nil
	}
	if err := m.swap(swap); err != nil {
		return Boot{}, err
	}
	b.Saved = true
	b.Rollback = swap == mcuboottrailer.SwapRevert
	return b, nil
}

func maxAlignOf(s mcuboottrailer.Slot) int {
	if s.MaxAlign != 0 {
		return s.MaxAlign
	}
	return max(mcuboot.DefaultMaxAlign, s.WriteSize)
}

func readSlot(s mcuboottrailer.Slot) ([]byte, error) {
	b := make([]byte, s.Size)
	if _, err := io.ReadFull(io.NewSectionReader(s.Flash, s.Offset, s.Size), b); err != nil {
		return nil, fmt.Errorf("sim: reading slot at %d: %w", s.Offset, err)
	}
	return b, nil
}

// swap exchanges the image areas of both slots and writes the trailers left after swap.
func (m *MCUboot) swap(swap mcuboottrailer.SwapType) error {
	ma := maxAlignOf(m.Primary)
	l := mcuboot.Layout(ma)
	fields := -l.SwapSize
	pd, err := readSlot(m.Primary)
	if err != nil {
		return err
	}
	sd, err := readSlot(m.Secondary)
	if err != nil {
		return err
	}
	erased := byte(0xff)
	if m.Primary.ErasedZero {
		erased = 0
	}
	n := min(len(pd), len(sd)) - fields
	if n <= 0 {
		return fmt.Errorf("sim: slots of %d and %d bytes are smaller than the trailer", len(pd), len(sd))
	}
	newP := bytes.Repeat([]byte{erased}, len(pd))
	newS := bytes.Repeat([]byte{erased}, len(sd))
	copy(newP[:n], sd[:n])
	copy(newS[:n], pd[:n])

	// The primary trailer as MCUboot leaves it after the swap.
	t := newP[len(newP)-fields:]
	end := len(t)
	copy(t[end-mcuboot.MagicSize:], mcuboot.TrailerMagic(ma))
	t[end+l.SwapInfo] = byte(m.Primary.ImageNumber)<<4 | byte(swap)
	binary.LittleEndian.PutUint32(t[end+l.SwapSize:], uint32(n))
	t[end+l.CopyDone] = mcuboot.FlagSet
	if swap != mcuboottrailer.SwapTest {
		t[end+l.ImageOK] = mcuboot.FlagSet
	}

	for _, w := range []struct {
		s mcuboottrailer.Slot
		d []byte
	}{{m.Primary, newP}, {m.Secondary, newS}} {
		if err := w.s.Flash.Erase(w.s.Offset, w.s.Size); err != nil {
			return fmt.Errorf("sim: erasing slot at %d: %w", w.s.Offset, err)
		}
		// Program only the part that is not erased, in whole write units.
		last := len(w.d)
		for last > 0 && w.d[last-1] == erased {
			last--
		}
		if ws := w.s.WriteSize; ws > 1 {
			last = (last + ws - 1) / ws * ws
		}
		if last == 0 {
			continue
		}
		if _, err := w.s.Flash.WriteAt(w.d[:last], w.s.Offset); err != nil {
			return fmt.Errorf("sim: writing slot at %d: %w", w.s.Offset, err)
		}
	}
	return nil
}
