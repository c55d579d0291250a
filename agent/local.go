package agent

import (
	"context"
	"errors"
	"fmt"

	"github.com/aduflash/aduflash/adu"
)

// LocalInstall is a manual update (aduagent install): one file into the spare bank's slot
// of one class, without the service.
type LocalInstall struct {
	Source Source
	// Adaptive, if set, names the file's adaptive index and chunk store: the install fetches
	// only the chunks the running bank's slot lacks (its index is trusted through the image's
	// signed header it names, which every chunk is checked against).
	Adaptive *AdaptiveFiles
	// Class is the slot class (default: the only configured class).
	Class string
	// Criteria is recorded as the class's installedCriteria once the bank is confirmed
	// (default: the image version).
	Criteria string
	// NoReboot leaves the reboot to the caller.
	NoReboot bool
	// DryRun checks the file as the install would (download, signature, every chunk, slot
	// class and fit, compatibility and versions), reads the running bank's slots it would
	// copy and compares them with the spare's, and stops there: no slot byte, no journal
	// entry, no bootloader transition.
	DryRun bool
}

// InstallLocal writes the file into the spare bank, verifies it, fills the bank's slots of
// the other classes from the running bank (Deployment.Copies), marks the bank pending and
// reboots (unless NoReboot; it then returns nil with the bank pending). A journal entry of
// an earlier, interrupted InstallLocal of the same file and slot is resumed. After the
// reboot, Boot (aduagent run) health-checks and confirms the bank, or
// aduagent mark-good does it by hand. A DryRun returns the verdict the install would reach
// (nil: the bank would be pending) and changes nothing.
func (a *Agent) InstallLocal(ctx context.Context, li LocalInstall) (*Deployment, error) {
	a.booted = true
	active, err := a.activeBank()
	if err != nil {
		return nil, err
	}
	spare, err := a.spareBank(active)
	if err != nil {
		return nil, err
	}
	class := li.Class
	if class == "" {
		cs := a.classes()
		if len(cs) != 1 {
			return nil, fmt.Errorf("%w: the device has %d slot classes; name one", ErrConfig, len(cs))
		}
		class = cs[0]
	}
	slot, err := a.spareSlot(spare, class)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrSlotClass, err)
	}
	copies, err := a.planCopies(active, spare, map[string]bool{class: true})
	if err != nil {
		return nil, err
	}
	var busy *Deployment
	a.view(func(r *Record) {
		if r.Deployment != nil {
			d := *r.Deployment
			busy = &d
		}
	})
	dep := &Deployment{Local: true, Bank: spare, From: active, Phase: PhaseInstall, Started: a.o.Now().UTC(),
		Steps:  []StepState{{Class: class, Slot: slot.Name, FileName: li.Source.URL, Criteria: li.Criteria, Source: li.Source, Adaptive: li.Adaptive}},
		Copies: copies}
	if busy != nil {
		switch {
		case busy.Phase == PhasePending:
			return nil, fmt.Errorf("%w: bank %s is pending a reboot (deployment %q); reboot first", ErrBusy, busy.Bank, busy.WorkflowID)
		case busy.Phase == PhaseMCU:
			return nil, fmt.Errorf("%w: deployment %q is updating the attached MCUs; aduagent run finishes it", ErrBusy, busy.WorkflowID)
		case li.DryRun:
		case busy.Local && busy.Bank == spare && len(busy.Steps) == 1 && busy.Steps[0].Slot == slot.Name &&
			busy.Steps[0].Source.URL == li.Source.URL && busy.Steps[0].Source.Size == li.Source.Size:
			dep.Steps[0].Progress = busy.Steps[0].Progress
			dep.resumeCopies(busy)
			dep.Started = busy.Started
		}
	}
	if li.DryRun {
		return dep, a.dryRun(ctx, dep)
	}
	if err := a.save(func(r *Record) { r.Deployment = dep }); err != nil {
		return nil, err
	}
	if err := a.installBank(ctx, dep, false); err != nil {
		if errors.Is(err, errJournal) || errors.Is(err, context.Canceled) {
			return dep, err // resumable: the journal keeps the progress
		}
		uid := adu.UpdateID{Provider: "local", Name: class}
		if info := dep.Steps[0].Progress.Info; info != nil {
			uid.Version = info.Version
		}
		out := a.failure("", "", true, uid, 1, err)
		out.Bank = spare
		if serr := a.save(func(r *Record) { r.Last, r.Deployment = out, nil }); serr != nil {
			return dep, errors.Join(err, serr)
		}
		return dep, err
	}
	info := dep.Steps[0].Progress.Info
	version := ""
	if info != nil {
		version = info.Version
	}
	if dep.Steps[0].Criteria == "" {
		dep.Steps[0].Criteria = version
	}
	dep.UpdateID = adu.UpdateID{Provider: "local", Name: class, Version: version}
	if err := a.save(func(r *Record) {
		r.Deployment.UpdateID = dep.UpdateID
		r.Deployment.Steps[0].Criteria = dep.Steps[0].Criteria
	}); err != nil {
		return dep, err
	}
	if err := a.markPending(spare); err != nil {
		if errors.Is(err, errJournal) {
			return dep, err
		}
		out := a.failure("", "", true, dep.UpdateID, 1, err)
		a.save(func(r *Record) { r.Last, r.Deployment = out, nil })
		return dep, err
	}
	dep.Phase, dep.PendingMarked = PhasePending, true
	if li.NoReboot {
		return dep, nil
	}
	return dep, a.reboot(ctx, "the update is written; booting it")
}

// dryRun checks dep's file as installing it would, and reads and compares the slots it would
// copy, and fills in what the image is and what each copy would write; it saves nothing.
func (a *Agent) dryRun(ctx context.Context, dep *Deployment) error {
	if err := a.installBank(ctx, dep, true); err != nil {
		return err
	}
	version := ""
	if info := dep.Steps[0].Progress.Info; info != nil {
		version = info.Version
	}
	dep.UpdateID = adu.UpdateID{Provider: "local", Name: dep.Steps[0].Class, Version: version}
	return nil
}
