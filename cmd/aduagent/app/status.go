package app

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/aduflash/aduflash/adu"
	"github.com/aduflash/aduflash/agent"
	"github.com/aduflash/aduflash/bootloader"
	"github.com/aduflash/aduflash/cmd/internal/cliapp"
	"github.com/aduflash/aduflash/cmd/internal/exitcode"
	"github.com/aduflash/aduflash/journal"
)

func (e *env) statusCommand() *cli.Command {
	return &cli.Command{
		Name:      "status",
		Usage:     "show the running bank, the bootloader state, the slots, what is installed and the last deployment",
		ArgsUsage: " ",
		Description: `Reads the device config and shows:
  - the running (active) bank, found as the [slots] section says (kernel command line or
    bootloader state), or "unknown" with the reason;
  - the bootloader state: the primary bank, the pending bank with its attempts left and
    the bank it falls back to, the banks marked bad, and the anti-rollback floors (lowest
    security counter accepted per slot class) that u-boot and grub keep;
  - every slot: name, class, bank, storage, size (configured, or measured where the
    storage can be opened read-only), and which ones belong to the running bank;
  - from the agent's journal (in the [agent] section's state_dir): the update installed in
    the running bank, the deployment in progress, the last deployment and its outcome, and
    the security floor (the lowest image security counter still accepted). No journal
    means no deployment so far; a corrupt one is reported as such.
--json prints all of it as one object, with the journal's whole record. Nothing is written.

Exit codes: 0 shown (also when the running bank is unknown or the journal is corrupt);
1 invalid config (any section) or invalid bootloader state; 2 usage error; 3 the config
file, the bootloader storage or the journal cannot be read. With --json the object is
printed in every case but an invalid [slots] or [bootloader] section.

EXAMPLE:
   aduagent status
   aduagent status --json`,
		Flags:  []cli.Flag{&cli.BoolFlag{Name: "json", Usage: "print the status as one JSON object, with the journal's whole record"}},
		Action: e.status,
	}
}

type statusReport struct {
	Config      string       `json:"config"`
	Active      string       `json:"active"` // the bank, or "unknown"
	ActiveFrom  string       `json:"active_from"`
	ActiveError string       `json:"active_error,omitempty"`
	Bootloader  bootReport   `json:"bootloader"`
	Slots       []slotReport `json:"slots"`
	// AgentError is why the [agent] section could not be used (then there is no Journal).
	AgentError string         `json:"agent_error,omitempty"`
	Journal    *journalReport `json:"journal,omitempty"`
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
// incomplete (bootloader storage, an invalid [agent] section, journal I/O); the report is
// still filled as far as it goes.
func buildStatus(d *device) (*statusReport, error) {
	rep := &statusReport{Config: d.path, ActiveFrom: d.slots.Active}
	var bootErr, agentErr, journalErr error
	rep.Bootloader, bootErr = bootStatus(d)
	rep.Active, rep.ActiveError = activeStatus(d)
	running := rep.Active
	if rep.ActiveError != "" {
		running = ""
	}
	rep.Slots = slotsStatus(d, running)
	cfg, err := agent.LoadConfig(d.path)
	if err != nil {
		agentErr, rep.AgentError = err, err.Error()
	} else {
		rep.Journal, journalErr = journalStatus(cfg.StateDir)
	}
	return rep, cmp.Or(bootErr, agentErr, journalErr)
}

// bootStatus is the bootloader's part of the report, and why its state could not be read.
func bootStatus(d *device) (bootReport, error) {
	br := bootReport{Type: d.boot.Type, Banks: d.boot.Banks}
	if d.boot.Type == bootloader.TypeUBoot {
		br.Preset = d.boot.Preset
	}
	err := d.bootErr
	if err == nil {
		var st bootloader.State
		if st, err = d.backend.State(); err == nil {
			br.State = &st
			fk, ok := d.backend.(bootloader.FloorKeeper)
			if !ok {
				return br, nil
			}
			if br.Floors, err = fk.Floors(); err == nil {
				return br, nil
			}
			err = fmt.Errorf("reading the anti-rollback floors: %w", err)
		} else {
			err = fmt.Errorf("reading the bootloader state: %w", err)
		}
	}
	br.Error = err.Error()
	return br, err
}

// activeStatus is the running bank, or "unknown" and why.
func activeStatus(d *device) (bank, why string) {
	active, err := d.layout.ActiveBank()
	switch {
	case err != nil:
		return "unknown", err.Error()
	case active == "":
		return "unknown", "no slots configured"
	}
	return active, ""
}

// slotsStatus describes every slot, marking those of the active bank ("": unknown).
func slotsStatus(d *device, active string) []slotReport {
	var out []slotReport
	for _, s := range d.layout.Slots() {
		sr := slotReport{Name: s.Name, Class: s.Class, Bank: s.Bank, Type: s.Type, Storage: storageOf(s.Type, s.Path, s.PartLabel, s.PartUUID, s.MTD, s.UBIVolume, int64(s.Offset)),
			Size: int64(s.Size), Active: s.Bank == active}
		if p, rerr := d.layout.Resolve(s); rerr == nil {
			sr.Device = p
		}
		if sr.Size == 0 {
			if n, cerr := d.layout.Capacity(s); cerr == nil {
				sr.Size = n
			}
		}
		out = append(out, sr)
	}
	return out
}

// journalStatus reads the agent's journal in dir without writing: journal.Open creates a
// missing folder, so only an existing one is opened. A corrupt journal is reported, not an
// error; one that cannot be read is both.
func journalStatus(dir string) (*journalReport, error) {
	jr := &journalReport{StateDir: dir, Path: filepath.Join(dir, journal.DefaultName)}
	if !exists(dir) {
		return jr, nil
	}
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
		return jr, exitcode.WithCode(exitcode.IO, fmt.Errorf("reading the journal: %w", err))
	}
	return jr, nil
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
	printSlots(w, r.Slots)
	printJournal(w, r)
}

// printSlots prints the slots as a table.
func printSlots(w io.Writer, slots []slotReport) {
	fmt.Fprintln(w, "slots:")
	var tab bytes.Buffer
	tw := tabwriter.NewWriter(&tab, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  NAME\tCLASS\tBANK\tSTORAGE\tSIZE\t")
	for _, s := range slots {
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
		bank := s.Bank
		if bank == "" {
			bank = "shared" // one slot for every bank ([slots.class.NAME] spare = "shared")
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\n", s.Name, s.Class, bank, st, size, mark)
	}
	tw.Flush()
	for _, l := range strings.SplitAfter(tab.String(), "\n") {
		if l != "" {
			fmt.Fprintln(w, strings.TrimRight(l, " \n"))
		}
	}
}

// printJournal summarizes the agent's journal: what the running bank holds, the deployment
// in progress, the last one and the security floor (--json has the whole record).
func printJournal(w io.Writer, r *statusReport) {
	j := r.Journal
	var rec agent.Record
	switch {
	case j == nil:
		fmt.Fprintf(w, "agent:       unknown (%s)\n", r.AgentError)
		return
	case j.Corrupt:
		fmt.Fprintf(w, "agent:       CORRUPT journal %s, record not trusted: %s\n", j.Path, j.Error)
		return
	case j.Error != "":
		fmt.Fprintf(w, "agent:       journal unreadable: %s\n", j.Error)
		return
	case !j.Found:
		fmt.Fprintf(w, "agent:       no journal yet (%s): no deployment so far\n", j.Path)
		return
	}
	if err := json.Unmarshal(j.Record, &rec); err != nil {
		fmt.Fprintf(w, "agent:       journal %s holds no agent record (%v); see --json\n", j.Path, err)
		return
	}
	fmt.Fprintf(w, "agent:       journal %s (--json shows the whole record)\n", j.Path)
	fmt.Fprintf(w, "  installed:      %s\n", installedString(rec, r.Active, r.ActiveError == ""))
	fmt.Fprintf(w, "  in progress:    %s\n", deploymentString(rec.Deployment))
	fmt.Fprintf(w, "  last:           %s\n", outcomeString(rec.Last))
	for _, class := range slices.Sorted(maps.Keys(rec.MCUs)) {
		m := rec.MCUs[class]
		fmt.Fprintf(w, "  MCU %-10s  %s (installedCriteria %q, image %x…)\n", class+":", m.Version, m.Criteria, m.Hash[:min(len(m.Hash), 8)])
	}
	floor := bootloader.Floors(rec.SecurityFloors).String()
	switch {
	case floor != "":
		floor += " (lowest security counter accepted, by slot class)"
	case rec.MinSecurityCounter > 0: // a journal of layout 2 or older
		floor = fmt.Sprintf("security counter %d (images with a lower one are refused)", rec.MinSecurityCounter)
	default:
		floor = "none"
	}
	fmt.Fprintf(w, "  security floor: %s\n", floor)
}

// installedString is what the journal says the running bank holds.
func installedString(rec agent.Record, active string, known bool) string {
	bi := rec.Banks[active]
	switch {
	case !known:
		return "unknown (the running bank is unknown)"
	case bi == nil:
		return "nothing recorded for bank " + active + " (an image the agent did not install, e.g. the factory one)"
	}
	s := "bank " + active
	if bi.UpdateID != nil {
		s += ": " + bi.UpdateID.String()
	}
	if len(bi.Versions) > 0 {
		var vs []string
		for class, v := range bi.Versions {
			vs = append(vs, class+" "+v)
		}
		sort.Strings(vs)
		s += " (" + strings.Join(vs, ", ") + ")"
	}
	return s
}

// deploymentString describes the deployment in progress.
func deploymentString(d *agent.Deployment) string {
	if d == nil {
		return "none"
	}
	done := 0
	for _, st := range d.Steps {
		if st.Progress.Done {
			done++
		}
	}
	s := fmt.Sprintf("%s into bank %s (from %s), started %s: ", updateName(d.UpdateID, d.Local), d.Bank, d.From, d.Started.UTC().Format(time.DateTime+" UTC"))
	switch {
	case d.Phase == agent.PhasePending && d.PendingMarked:
		s += "pending in the bootloader, waiting for the reboot into it"
		if d.Reboots > 0 {
			s += fmt.Sprintf(" (%d trial reboot(s) came back in bank %s)", d.Reboots, d.From)
		}
	case d.Phase == agent.PhasePending:
		s += "written and verified, being marked pending"
	case d.Phase == agent.PhaseMCU:
		s += "updating the attached MCUs:"
		for _, st := range d.Steps {
			if st.MCU != nil && !st.Installed {
				s += " " + st.MCU.Name + " " + mcuPhase(st.MCU)
			}
		}
	default:
		s += fmt.Sprintf("writing, %d of %d file(s) written and verified", done, len(d.Steps))
	}
	return s
}

// updateName names the update of a deployment, which a local install says it was.
func updateName(id adu.UpdateID, local bool) string {
	if local {
		return "local install of " + id.String()
	}
	return id.String()
}

// mcuPhase names where an MCU's step stands.
func mcuPhase(m *agent.MCUStep) string {
	switch {
	case m.Result != nil && m.Result.ExtendedResultCode != 0:
		return "(failed " + m.Result.ExtendedResultCode.String() + ")"
	case m.Result != nil:
		return "(done)"
	case m.Phase == agent.MCUPhaseUpload:
		return "(upload)"
	}
	return "(" + m.Phase + ")"
}

// outcomeString describes the last finished deployment.
func outcomeString(o *agent.Outcome) string {
	if o == nil {
		return "none"
	}
	what := updateName(o.UpdateID, o.Local)
	if o.Bank != "" {
		what += " into bank " + o.Bank
	}
	verdict := "succeeded"
	if !o.Succeeded {
		verdict = "FAILED"
	}
	s := fmt.Sprintf("%s: %s, %s (result code %d", verdict, what, o.Finished.UTC().Format(time.DateTime+" UTC"), o.ResultCode)
	if o.ExtendedResultCode != 0 {
		s += ", extended " + o.ExtendedResultCode.String()
	}
	s += ")"
	if o.Details != "" && !o.Succeeded {
		s += ": " + o.Details
	}
	return s
}

// printState prints a bootloader state, one fact a line.
func printState(w io.Writer, st bootloader.State) {
	fmt.Fprintf(w, "  primary:   %s\n", st.Primary)
	if st.Pending == "" {
		fmt.Fprintln(w, "  pending:   none")
	} else {
		fmt.Fprintf(w, "  pending:   %s, %s\n", st.Pending, trialString(st))
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

// trialString describes the trial of st's pending bank: "3 attempt(s) left, then falls back to A".
func trialString(st bootloader.State) string {
	fallback := "nothing (no fallback)"
	if st.Fallback != "" {
		fallback = string(st.Fallback)
	}
	return fmt.Sprintf("%d attempt(s) left, then falls back to %s", st.AttemptsLeft, fallback)
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
