package agent

import (
	"fmt"

	"github.com/aduflash/aduflash/bootloader"
)

// The anti-rollback floors: per slot class, the lowest security counter an image (aduimg, or
// MCUboot's SEC_CNT TLV) must carry. They rise when a bank holding higher counters is
// confirmed, never at install time, so that a failed trial still rolls back to the old bank.
// The journal keeps them (Record.SecurityFloors) and so does a bootloader that can
// (bootloader.FloorKeeper: U-Boot, GRUB), in the very write that confirms the bank; a wipe of
// the state folder leaves the bootloader's copy, and the higher of the two is enforced.

// checkFloor refuses a signed image whose security counter is below its class's floor. Raw
// images carry no counter (and no signature): allow_raw takes them as they are.
func (a *Agent) checkFloor(class string, info ImageInfo) error {
	if info.Format == FormatRaw || info.CounterUnknown {
		return nil // no counter, or not yet: the installer asks again once it is known
	}
	floor, err := a.floorOf(class)
	if err != nil {
		return err
	}
	if info.SecurityCounter < floor {
		return fmt.Errorf("%w: %s image's security counter %d is below the device's floor %d for slot class %s",
			ErrDowngrade, info.Format, info.SecurityCounter, floor, class)
	}
	return nil
}

// floorOf is the floor of class: the higher of the journal's and the bootloader's.
func (a *Agent) floorOf(class string) (uint64, error) {
	var floor uint64
	a.view(func(r *Record) { floor = r.SecurityFloors[class] })
	fk, ok := a.o.Bootloader.(bootloader.FloorKeeper)
	if !ok {
		return floor, nil
	}
	f, err := fk.Floors()
	if err != nil {
		return 0, fmt.Errorf("%w: reading the anti-rollback floor: %w", ErrBootloader, err)
	}
	return max(floor, f[class]), nil
}

// confirm makes dep's bank permanent in the bootloader, raising the bootloader's floors to
// the counters of dep's images in the same write.
func (a *Agent) confirm(dep *Deployment) error {
	bank := bootloader.Bank(dep.Bank)
	if fk, ok := a.o.Bootloader.(bootloader.FloorKeeper); ok {
		return fk.ConfirmRaising(bank, dep.floors())
	}
	return a.o.Bootloader.Confirm(bank)
}

// syncFloors raises the bootloader's floors to the journal's when they are lower: a journal
// from an agent that kept them only there, or a bank confirmed without them (aduagent
// mark-good). It writes nothing when the bootloader already holds them; a failure is logged
// (the journal's floors still apply).
func (a *Agent) syncFloors() {
	fk, ok := a.o.Bootloader.(bootloader.FloorKeeper)
	if !ok {
		return
	}
	var floors bootloader.Floors
	a.view(func(r *Record) {
		floors = bootloader.Floors{}
		for c, n := range r.SecurityFloors {
			floors[c] = n
		}
	})
	if err := fk.RaiseFloors(floors); err != nil {
		a.log.Warn("the bootloader does not hold the anti-rollback floors; a wipe of the state folder would lower them",
			"floors", floors.String(), "err", err)
	}
}

// floors are the highest security counters of dep's images, by slot class.
func (d *Deployment) floors() bootloader.Floors {
	f := bootloader.Floors{}
	for _, s := range d.Steps {
		if i := s.Progress.Info; s.MCU == nil && i != nil && i.SecurityCounter > f[s.Class] {
			f[s.Class] = i.SecurityCounter
		}
	}
	return f
}
