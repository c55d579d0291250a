package app

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/aduflash/aduflash/bootloader"
	"github.com/aduflash/aduflash/cmd/internal/cliapp"
	"github.com/aduflash/aduflash/journal"
)

func (e *env) statusCommand() *cli.Command {
	return &cli.Command{
		Name:      "status",
		Usage:     "show the running bank, the bootloader state, the slots and the last deployment",
		ArgsUsage: " ",
		Description: `Reads the device config and shows:
  - the running (active) bank, found as the [slots] section says (kernel command line or
    bootloader state), or "unknown" with the reason;
  - the bootloader state: the primary bank, the pending bank with its attempts left and
    the bank it falls back to, the banks marked bad, and the anti-rollback floors (lowest
    security counter accepted per slot class) that u-boot and grub keep;
  - every slot: name, class, bank, storage, size (configured, or measured where the
    storage can be opened read-only), and which ones belong to the running bank;
  - the agent's last deployment record, from the journal in the [agent] section's
    state_dir ("none" when there is none; a corrupt journal is reported as such).
Nothing is written.

Exit codes: 0 shown (also when the running bank is unknown or the journal is corrupt);
1 invalid config or invalid bootloader state; 2 usage error; 3 the config file, the
bootloader storage or the journal cannot be read. With --json the object is printed in
every case but a config error.

EXAMPLE:
   aduagent status
   aduagent status --json`,
		Flags:  []cli.Flag{&cli.BoolFlag{Name: "json", Usage: "print the status as one JSON object"}},
		Action: e.status,
	}
}

type statusReport struct {
	Config      string         `json:"config"`
	Active      string         `json:"active"` // the bank, or "unknown"
	ActiveFrom  string         `json:"active_from"`
	ActiveError string         `json:"active_error,omitempty"`
	Bootloader  bootReport     `json:"bootloader"`
	Slots       []slotReport   `json:"slots"`
	Journal     *journalReport `json:"journal,omitempty"`
}

type bootReport struct {
	Type   string            `json:"type"`
	Preset string            `json:"preset,omitempty"`
	Banks  []string          `json:"banks"`
	State  *bootloader.State `json:"state,omitempty"`
	// Floors are the anti-rollback floors the bootloader keeps (nil: it keeps none).
	Floors bootloader.Floors `json:"security_floors,omitempty"`
	Error  string            `json:"error,omitempty"`
}

type slotReport struct {
	Name    string `json:"name"`
	Class   string `json:"class"`
	Bank    string `json:"bank"`
	Type    string `json:"type"`
	Storage string `json:"storage"`
	Device  string `json:"device,omitempty"`
	Size    int64  `json:"size,omitempty"` // 0: not known (e.g. a file slot without a size, which grows)
	Active  bool   `json:"active"`
}

type journalReport struct {
	StateDir string          `json:"state_dir"`
	Path     string          `json:"path"`
	Found    bool            `json:"found"`
	Record   json.RawMessage `json:"record,omitempty"`
	Corrupt  bool            `json:"corrupt,omitempty"`
	Error    string          `json:"error,omitempty"`
}

func (e *env) status(c *cli.Context) error {
	if err := cliapp.Args(c, 0, 0, "no arguments"); err != nil {
		return err
	}
	d, err := loadDevice(c)
	if err != nil {
		return err
	}
	defer d.close()
	rep, err := buildStatus(d)
	if err != nil && rep == nil {
		return err
	}
	if c.Bool("json") {
		if jerr := cliapp.WriteJSON(e.stdout, rep); jerr != nil && err == nil {
			return jerr
		}
		return cliapp.Silent(err)
	}
	printStatus(e.stdout, rep)
	return err
}

// buildStatus gathers the report. The error is the first failure that makes the status
// incomplete (bootloader storage, journal I/O); the report is still filled as far as it goes.
// A nil report comes with a config error.
func buildStatus(d *device) (*statusReport, error) {
	rep := &statusReport{Config: d.path, ActiveFrom: d.slots.Active, Bootloader: bootReport{Type: d.boot.Type, Banks: d.boot.Banks}}
	if d.boot.Type == bootloader.TypeUBoot {
		rep.Bootloader.Preset = d.boot.Preset
	}
	var fail error
	if d.bootErr != nil {
		rep.Bootloader.Error, fail = d.bootErr.Error(), d.bootErr
	} else if st, err := d.backend.State(); err != nil {
		err = classify(fmt.Errorf("reading the bootloader state: %w", err))
		rep.Bootloader.Error, fail = err.Error(), err
	} else {
		rep.Bootloader.State = &st
		if fk, ok := d.backend.(bootloader.FloorKeeper); ok {
			if rep.Bootloader.Floors, err = fk.Floors(); err != nil {
				err = classify(fmt.Errorf("reading the anti-rollback floors: %w", err))
				rep.Bootloader.Error, fail = err.Error(), err
			}
		}
	}

	active, err := d.layout.ActiveBank()
	switch {
	case err != nil:
		rep.Active, rep.ActiveError = "unknown", err.Error()
	case active == "":
		rep.Active, rep.ActiveError = "unknown", "no slots configured"
	default:
		rep.Active = active
	}

	for _, s := range d.layout.Slots() {
		sr := slotReport{Name: s.Name, Class: s.Class, Bank: s.Bank, Type: s.Type, Storage: storageOf(s.Type, s.Path, s.PartLabel, s.PartUUID, s.MTD, s.UBIVolume, int64(s.Offset)),
			Size: int64(s.Size), Active: err == nil && s.Bank == active}
		if p, rerr := d.layout.Resolve(s); rerr == nil {
			sr.Device = p
		}
		if sr.Size == 0 {
			if n, cerr := d.layout.Capacity(s); cerr == nil {
				sr.Size = n
			}
		}
		rep.Slots = append(rep.Slots, sr)
	}

	dir, err := stateDir(d.path)
	if err != nil {
		return nil, err
	}
	if dir != "" {
		jr := &journalReport{StateDir: dir, Path: filepath.Join(dir, journal.DefaultName)}
		rep.Journal = jr
		// journal.Open creates a missing folder; status writes nothing, so it only opens an
		// existing one.
		if exists(dir) {
			j, err := journal.Open(dir)
			if err == nil {
				jr.Path = j.Path()
				var raw json.RawMessage
				jr.Found, err = j.Load(&raw)
				if jr.Found && err == nil {
					jr.Record = raw
				}
			}
			switch {
			case errors.Is(err, journal.ErrCorrupt):
				jr.Corrupt, jr.Found, jr.Error = true, true, err.Error()
			case err != nil:
				jr.Error = err.Error()
				if fail == nil {
					fail = fmt.Errorf("reading the journal: %w", err)
				}
			}
		}
	}
	return rep, fail
}

// storageOf describes where a slot's storage is, as configured.
func storageOf(typ, path, label, uuid, mtdName, vol string, offset int64) string {
	var s string
	switch {
	case path != "":
		s = path
	case label != "":
		s = "PARTLABEL=" + label
	case uuid != "":
		s = "PARTUUID=" + uuid
	case mtdName != "":
		s = "mtd:" + mtdName
	case vol != "":
		s = "ubi:" + vol
	default:
		s = "?"
	}
	if offset != 0 {
		s += fmt.Sprintf("@%#x", offset)
	}
	return typ + " " + s
}

func printStatus(w io.Writer, r *statusReport) {
	fmt.Fprintf(w, "config:      %s\n", r.Config)
	if r.ActiveError != "" {
		fmt.Fprintf(w, "active bank: unknown (%s)\n", r.ActiveError)
	} else {
		fmt.Fprintf(w, "active bank: %s (from %s)\n", r.Active, r.ActiveFrom)
	}
	b := r.Bootloader
	kind := b.Type
	if b.Preset != "" {
		kind += ", preset " + b.Preset
	}
	fmt.Fprintf(w, "bootloader:  %s, banks %s\n", kind, strings.Join(b.Banks, " "))
	if b.Error != "" {
		fmt.Fprintf(w, "  state:     unreadable: %s\n", b.Error)
	} else {
		printState(w, *b.State)
		if b.Floors != nil {
			floors := b.Floors.String()
			if floors == "" {
				floors = "none"
			}
			fmt.Fprintf(w, "  floors:    %s (lowest security counter accepted, by slot class)\n", floors)
		}
	}
	fmt.Fprintln(w, "slots:")
	var tab bytes.Buffer
	tw := tabwriter.NewWriter(&tab, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  NAME\tCLASS\tBANK\tSTORAGE\tSIZE\t")
	for _, s := range r.Slots {
		st := s.Storage
		if s.Device != "" && !strings.HasSuffix(st, " "+s.Device) {
			st += " (" + s.Device + ")"
		}
		size := "?"
		if s.Size > 0 {
			size = sizeString(s.Size)
		}
		mark := ""
		if s.Active {
			mark = "active"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\n", s.Name, s.Class, s.Bank, st, size, mark)
	}
	tw.Flush()
	for _, l := range strings.SplitAfter(tab.String(), "\n") {
		if l != "" {
			fmt.Fprintln(w, strings.TrimRight(l, " \n"))
		}
	}
	j := r.Journal
	switch {
	case j == nil:
		fmt.Fprintln(w, "last deployment: unknown (no state_dir in the [agent] section)")
	case j.Corrupt:
		fmt.Fprintf(w, "last deployment: CORRUPT journal, record not trusted: %s\n", j.Error)
	case j.Error != "":
		fmt.Fprintf(w, "last deployment: unreadable: %s\n", j.Error)
	case !j.Found:
		fmt.Fprintf(w, "last deployment: none (%s)\n", j.Path)
	default:
		var buf bytes.Buffer
		if err := json.Indent(&buf, j.Record, "  ", "  "); err != nil {
			buf.Reset()
			buf.Write(j.Record)
		}
		fmt.Fprintf(w, "last deployment (%s):\n  %s\n", j.Path, buf.String())
	}
}

// printState prints a bootloader state, one fact a line.
func printState(w io.Writer, st bootloader.State) {
	fmt.Fprintf(w, "  primary:   %s\n", st.Primary)
	if st.Pending == "" {
		fmt.Fprintln(w, "  pending:   none")
	} else {
		fallback := "nothing (no fallback)"
		if st.Fallback != "" {
			fallback = string(st.Fallback)
		}
		fmt.Fprintf(w, "  pending:   %s, %d attempt(s) left, then falls back to %s\n", st.Pending, st.AttemptsLeft, fallback)
	}
	bad := "none"
	if len(st.Bad) > 0 {
		parts := make([]string, len(st.Bad))
		for i, s := range st.Bad {
			parts[i] = string(s)
		}
		bad = strings.Join(parts, " ")
	}
	fmt.Fprintf(w, "  bad:       %s\n", bad)
}

// sizeString prints a size with a binary suffix when it is a whole number of units.
func sizeString(n int64) string {
	for _, u := range []struct {
		name string
		size int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if n >= u.size && n%u.size == 0 {
			return fmt.Sprintf("%d %s", n/u.size, u.name)
		}
	}
	return fmt.Sprintf("%d B", n)
}
