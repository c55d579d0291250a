package agent

import (
	"context"
	"fmt"

	"github.com/aduflash/aduflash/install"
	"github.com/aduflash/aduflash/slots"
)

// A bank switches as a whole, so a deployment leaves none of the spare bank's slots with what
// an earlier bank held: the slots of the classes its steps do not write are filled from the
// running bank's (CopyState), through package install like a step's file, resumable and read
// back, before the bank is marked pending. The config may say otherwise per class
// ([slots.class.NAME] spare: "keep" leaves the slot alone, "shared" has one slot for every
// bank and nothing to copy).

// planCopies lists the slots of the spare bank whose class no step writes (written) and is
// copied (slots.class.NAME.spare, default "copy"), each with what the journal knows of the
// running bank's slot of its class.
func (a *Agent) planCopies(active, spare string, written map[string]bool) ([]CopyState, error) {
	var running BankInfo
	a.view(func(r *Record) {
		if b := a.bank(r, active); b != nil {
			running = *b
		}
	})
	cfg := a.o.Layout.Config
	var out []CopyState
	for _, class := range cfg.BankedClasses() {
		if written[class] || cfg.Spare(class) != slots.SpareCopy {
			continue
		}
		from, err := a.o.Layout.Slot(active + "/" + class)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrSlotCopy, err)
		}
		to, err := a.o.Layout.Slot(spare + "/" + class)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrSlotCopy, err)
		}
		out = append(out, CopyState{Class: class, From: from.Name, Slot: to.Name, Size: running.Sizes[class],
			Criteria: running.Criteria[class], Version: running.Versions[class]})
	}
	return out, nil
}

// resumeCopies takes over the size and progress of resume's copies between the same slots.
func (d *Deployment) resumeCopies(resume *Deployment) {
	for i := range d.Copies {
		c := &d.Copies[i]
		for _, rc := range resume.Copies {
			if rc.Slot == c.Slot && rc.From == c.From && rc.Size != 0 {
				c.Size, c.Progress = rc.Size, rc.Progress
			}
		}
	}
}

// copySlots fills the spare bank's slots that no step writes from the running bank's, in
// order, saving progress in the journal; a dry run reads and compares what a copy would,
// writing nothing.
func (a *Agent) copySlots(ctx context.Context, dep *Deployment, dryRun bool) error {
	for i := range dep.Copies {
		c := &dep.Copies[i]
		if c.Progress.Done {
			continue // copied and read back before a restart
		}
		if err := a.copySlot(ctx, i, c, dryRun); err != nil {
			return fmt.Errorf("%w: %s into %s (class %s, not written by the update): %w", ErrSlotCopy, c.From, c.Slot, c.Class, err)
		}
		a.log.Info("slot copied from the running bank", "from", c.From, "slot", c.Slot, "size", c.Size,
			"written", c.Progress.Stats.BytesWritten, "skipped", c.Progress.Stats.BytesSkipped, "dry_run", dryRun)
	}
	return nil
}

// copySlot copies c.From into c.Slot: the spare slot prepared for writing, the running one
// opened read-only, the size decided (and kept in the journal) when nothing told it before.
func (a *Agent) copySlot(ctx context.Context, i int, c *CopyState, dryRun bool) error {
	from, err := a.o.Layout.Slot(c.From)
	if err != nil {
		return err
	}
	to, err := a.o.Layout.Slot(c.Slot)
	if err != nil {
		return err
	}
	target, err := a.o.Layout.Prepare(to)
	if err != nil {
		return err
	}
	src, err := a.o.Layout.OpenReader(from)
	if err != nil {
		return err
	}
	defer src.Close()
	if c.Size == 0 {
		if c.Size, err = install.CopySize(src, target.Capacity()); err != nil {
			return err
		}
		if !dryRun {
			if err := a.save(func(r *Record) {
				if r.Deployment != nil && i < len(r.Deployment.Copies) {
					r.Deployment.Copies[i].Size = c.Size
				}
			}); err != nil {
				return fmt.Errorf("%w: %w", errJournal, err)
			}
		}
	}
	in := &install.Installer{WriterOptions: a.o.WriterOptions, DryRun: dryRun}
	var resume *install.Record
	if !dryRun {
		in.Save = func(p install.Record) error { return a.saveProgress(p, copyProgress(i)) }
		if c.Progress.Cursor != nil {
			p := c.Progress
			resume = &p
		}
	}
	a.log.Info("copying a slot from the running bank", "from", c.From, "slot", c.Slot, "size", c.Size,
		"resume_at", c.Progress.Download.Offset, "dry_run", dryRun)
	c.Progress, err = in.Install(ctx, install.Source{Size: c.Size, Copy: src}, target, resume)
	return err
}

// copyProgress picks copy i's resume record in a deployment.
func copyProgress(i int) func(*Deployment) *install.Record {
	return func(d *Deployment) *install.Record {
		if i < len(d.Copies) {
			return &d.Copies[i].Progress
		}
		return nil
	}
}
