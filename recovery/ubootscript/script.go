package ubootscript

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash/crc32"
	"io"
	"maps"
	"regexp"
	"slices"
	"strings"

	"github.com/aduflash/aduflash/bootloader"
	"github.com/aduflash/aduflash/internal/gptdisk"
	"github.com/aduflash/aduflash/recovery/console"
	"github.com/aduflash/aduflash/slots"
)

// Image is one file as the board receives it over TFTP: the name it asks the server for and
// the facts the server computed of the bytes it sends.
type Image struct {
	Name   string   // the file name U-Boot asks the TFTP server for
	Size   int64    // the bytes U-Boot receives
	CRC32  uint32   // their IEEE CRC-32 (U-Boot's crc32)
	SHA256 [32]byte // their SHA-256
}

// ImageOf returns the facts of the bytes r yields, served as name.
func ImageOf(name string, r io.Reader) (Image, error) {
	h, c := sha256.New(), crc32.NewIEEE()
	n, err := io.Copy(io.MultiWriter(h, c), r)
	if err != nil {
		return Image{}, err
	}
	img := Image{Name: name, Size: n, CRC32: c.Sum32()}
	h.Sum(img.SHA256[:0])
	return img, nil
}

// Write puts an image into a slot.
type Write struct {
	Slot  string // a slot of the layout: "rootfs-a" or "A/rootfs"
	Image Image
}

// Check is how U-Boot checks an image in RAM before it writes it, and the slot after.
type Check string

// The checks, both with U-Boot's hash command.
const (
	CheckSHA256 Check = "sha256" // the default: what a signature covers, not forgeable
	CheckCRC32  Check = "crc32"  // faster on slow boards; catches corruption, not forgery
)

// Board is what the script needs to know of the board.
type Board struct {
	Slots *slots.Config // the [slots] section: the slots and banks
	UBoot *Config       // the [uboot] section: RAM and where U-Boot finds the slots
	// Env is the [bootloader] section (type u-boot): the variable preset of the fresh
	// environment. Needed unless Options.KeepEnv.
	Env *bootloader.Config
	// GPT is the partition table of the mmc disk, read from its image or the block device
	// (gptdisk.Read), named GPTName in messages; needed when a block slot is a GPT partition.
	GPT     *gptdisk.Table
	GPTName string
}

// Options adjust Generate.
type Options struct {
	// Bank is the bank made primary in the fresh environment (default: the first bank).
	Bank string
	// Check is how images are checked in U-Boot (default CheckSHA256).
	Check Check
	// KeepEnv leaves the board's environment as it is: no env step.
	KeepEnv bool
}

// Kind is what a step does.
type Kind string

// The step kinds, in the order a script runs them.
const (
	KindPrepare Kind = "prepare" // set the script's variables (netretry, mtdids, mtdparts)
	KindLocate  Kind = "locate"  // check that the board's GPT has a slot's partition where the disk did
	KindLoad    Kind = "load"    // TFTP an image into RAM, checking its size
	KindCheck   Kind = "check"   // hash the image in RAM, compare with the workstation's hash
	KindWrite   Kind = "write"   // write the image into its slot
	KindVerify  Kind = "verify"  // read the slot back, compare its hash
	KindEnv     Kind = "env"     // a fresh environment with the bank primary, saved to both copies
	KindReset   Kind = "reset"   // reset the board
)

// Step is one named group of U-Boot commands. A console driver types the commands in order
// at the prompt and waits for Done (ConsoleSteps); the script image runs them all. A step
// prints console.DonePrefix and its name once it succeeded, console.FailPrefix, its name and
// what failed when it did (and then nothing that loads, writes or resets runs any more).
type Step struct {
	Name     string   // the kind and the slot: "load rootfs-a"; "env"; "reset"
	Kind     Kind     //
	Slot     string   // the slot of locate, load, check, write and verify steps
	Image    *Image   // the image a load, check, write or verify step handles
	Commands []string // U-Boot commands, one a line
	Done     string   // the line U-Boot prints when the step succeeded; "" for reset
	Writes   bool     // the step changes the board's storage or environment
}

// Script is a generated recovery: Steps in order.
type Script struct {
	Bank   string   // the bank made primary ("" with Options.KeepEnv)
	Header []string // what Text says first, as comment lines
	Steps  []Step
}

// Text returns the script as U-Boot's `source` reads it: the header and a comment naming
// each step, then its commands, one a line.
func (s *Script) Text() string {
	var b strings.Builder
	for _, h := range s.Header {
		b.WriteString(strings.TrimRight("# "+h, " ") + "\n")
	}
	for _, st := range s.Steps {
		fmt.Fprintf(&b, "\n# %s\n", st.Name)
		for _, c := range st.Commands {
			b.WriteString(c + "\n")
		}
	}
	return b.String()
}

// ConsoleSteps returns the steps as recovery/console runs them at the prompt, one command at
// a time, each step done once its last command printed Done. Locate, load and check steps
// check what the board received (console.Step.Checks: their failure is a failed check). The
// reset step is left out: the console resets the board itself and watches it boot.
func (s *Script) ConsoleSteps() []console.Step {
	var out []console.Step
	for _, st := range s.Steps {
		if st.Kind == KindReset {
			continue
		}
		cs := console.Step{Name: st.Name, Checks: st.Kind == KindLocate || st.Kind == KindLoad || st.Kind == KindCheck}
		if st.Image != nil {
			cs.Image, cs.Size = st.Image.Name, st.Image.Size
		}
		for _, c := range st.Commands {
			cs.Commands = append(cs.Commands, console.Command{Line: c})
		}
		cs.Commands[len(cs.Commands)-1].Expect = []string{st.Done}
		out = append(out, cs)
	}
	return out
}

// gen holds what Generate works from.
type gen struct {
	b     Board
	o     Options
	check Check
}

// plan is one write, resolved.
type plan struct {
	w Write
	t *target
}

// Generate returns the script that writes each image into its slot, checked in RAM before
// and read back after, then (unless KeepEnv) writes a fresh environment with the bank
// primary, and resets.
func Generate(b Board, writes []Write, o Options) (*Script, error) {
	g := &gen{b: b, o: o, check: o.Check}
	if g.check == "" {
		g.check = CheckSHA256
	}
	if g.check != CheckSHA256 && g.check != CheckCRC32 {
		return nil, fmt.Errorf("%w: check %q: want %q or %q", ErrCommand, o.Check, CheckSHA256, CheckCRC32)
	}
	if b.Slots == nil || b.UBoot == nil {
		return nil, fmt.Errorf("%w: Board needs the [slots] and [uboot] sections", ErrConfig)
	}
	plans, err := g.plan(writes)
	if err != nil {
		return nil, err
	}
	s := &Script{}
	s.Steps = append(s.Steps, g.prepare(plans))
	for _, p := range plans {
		if p.t.part != nil {
			s.Steps = append(s.Steps, g.locate(p))
		}
	}
	for _, p := range plans {
		s.Steps = append(s.Steps, g.load(p), g.checkStep(p), g.write(p), g.verify(p))
	}
	if !o.KeepEnv {
		env, bank, err := g.env()
		if err != nil {
			return nil, err
		}
		s.Steps, s.Bank = append(s.Steps, env), bank
	}
	s.Steps = append(s.Steps, Step{Name: string(KindReset), Kind: KindReset, Commands: []string{gate + "reset"}})
	s.Header = g.header(s, plans)
	return s, g.checkLines(s)
}

// nameRe is what a name passed to U-Boot may hold: its shell would interpret anything else.
// envName is what the name of a variable the script sets may hold.
var (
	nameRe  = regexp.MustCompile(`^[A-Za-z0-9_.+-]+$`)
	envName = regexp.MustCompile(`^[A-Za-z0-9_]+$`)
)

// plan resolves every write's slot and checks that its image fits the slot and the RAM.
func (g *gen) plan(writes []Write) ([]plan, error) {
	var out []plan
	seen := map[string]bool{}
	for _, w := range writes {
		sc, err := g.b.Slots.Slot(w.Slot)
		if err != nil {
			return nil, err
		}
		if seen[sc.Name] {
			return nil, fmt.Errorf("%w: slot %s is written twice", ErrCommand, sc.Name)
		}
		seen[sc.Name] = true
		for what, v := range map[string]string{"image name": w.Image.Name, "slot name": sc.Name} {
			if !nameRe.MatchString(v) {
				return nil, fmt.Errorf("%w: %s %q: only letters, digits and _.+- reach U-Boot unquoted", ErrCommand, what, v)
			}
		}
		t, err := g.resolve(sc)
		if err != nil {
			return nil, err
		}
		for what, v := range map[string]string{"partition name": t.partRef, "MTD partition or UBI volume": t.name} {
			if v != "" && !nameRe.MatchString(v) {
				return nil, fmt.Errorf("%w: slot %s: %s %q: only letters, digits and _.+- reach U-Boot unquoted", ErrCommand, sc.Name, what, v)
			}
		}
		if err := g.fits(w.Image, t); err != nil {
			return nil, err
		}
		out = append(out, plan{w: w, t: t})
	}
	return out, nil
}

// fits checks an image against its slot and the RAM it is loaded into (whole blocks on mmc).
func (g *gen) fits(img Image, t *target) error {
	ram := img.Size
	if t.kind == kindMMC {
		ram = blocks(img.Size) * gptdisk.BlockSize
	}
	switch {
	case img.Size <= 0:
		return fmt.Errorf("%w: image %s for slot %s is empty", ErrTooLarge, img.Name, t.slot.Name)
	case t.capacity > 0 && img.Size > t.capacity:
		return fmt.Errorf("%w: image %s has %d bytes, slot %s takes %d", ErrTooLarge, img.Name, img.Size, t.slot.Name, t.capacity)
	case ram > int64(g.b.UBoot.LoadSize):
		return fmt.Errorf("%w: image %s has %d bytes, the board loads at most uboot.load_size = %d", ErrTooLarge, img.Name, img.Size, g.b.UBoot.LoadSize)
	}
	return nil
}

func blocks(n int64) int64 { return (n + gptdisk.BlockSize - 1) / gptdisk.BlockSize }

// done is the line a step prints last.
func done(step string) string { return `echo "` + console.DonePrefix + step + `"` }

// gate prefixes every command that loads, writes or resets: it runs only while no check has
// failed. U-Boot's shell ignores `exit` in a sourced script (U-Boot 2023.01, seen on the real
// peer), so a failed check cannot end the script; it sets adu_failed instead.
const gate = `test -z "${adu_failed}" && `

// guard runs cond (gated) and then prints the step's done line, or, on the first failure,
// its failure line and sets adu_failed; after an earlier failure it prints nothing. The
// message, the condition and the verdict are separate lines so that each stays short; the
// condition's line ends with status 0 whatever cond does (the verdict is the next line's),
// which a console driver checks of every line.
func guard(cond, step, why string) []string {
	return []string{
		"setenv adu_why " + quote(step+": "+why),
		"if " + gate + cond + "; then setenv adu_ok 1; else setenv adu_ok; fi",
		fmt.Sprintf(`if test -n "${adu_ok}"; then %s; elif test -z "${adu_failed}"; then echo "%s${adu_why}"; setenv adu_failed 1; fi`,
			done(step), console.FailPrefix),
	}
}

func (g *gen) addr() string { return fmt.Sprintf("%#x", int64(g.b.UBoot.LoadAddr)) }

// prepare sets what the other steps rely on: TFTP gives up after one retry instead of
// starting again forever, and U-Boot knows the MTD partitions.
func (g *gen) prepare(plans []plan) Step {
	cmds := []string{"setenv adu_failed", "setenv netretry once"}
	for _, p := range plans {
		if (p.t.kind == kindNAND || p.t.kind == kindSF) && g.b.UBoot.MTDParts != "" {
			cmds = append(cmds, "setenv mtdids "+quote(g.b.UBoot.MTDIDs), "setenv mtdparts "+quote(g.b.UBoot.MTDParts))
			break
		}
	}
	name := string(KindPrepare)
	return Step{Name: name, Kind: KindPrepare, Commands: append(cmds, done(name)), Done: console.DonePrefix + name}
}

// locate checks, before anything is loaded, that the board's own GPT has the slot's
// partition where the workstation's disk has it. A partition the board lacks leaves the
// variables empty (part fails without a word), which the comparison reports.
func (g *gen) locate(p plan) Step {
	t, name := p.t, string(KindLocate)+" "+p.t.slot.Name
	dev := fmt.Sprint(t.dev)
	cmds := []string{"mmc dev " + dev,
		"part start mmc " + dev + " " + t.partRef + " adu_start || setenv adu_start",
		"part size mmc " + dev + " " + t.partRef + " adu_blocks || setenv adu_blocks"}
	got, want := "${adu_start}:${adu_blocks}", fmt.Sprintf("%x:%x", t.part.FirstLBA, t.part.Blocks())
	if t.checkUUID {
		cmds = append(cmds, fmt.Sprintf("part uuid mmc %s:%d adu_uuid || setenv adu_uuid", dev, t.part.Number))
		got, want = got+":${adu_uuid}", want+":"+t.part.UUID
	}
	cmds = append(cmds, guard(`test "`+got+`" = "`+want+`"`, name, "the GPT of the board differs from "+g.gptName())...)
	return Step{Name: name, Kind: KindLocate, Slot: t.slot.Name, Commands: cmds, Done: console.DonePrefix + name}
}

func (g *gen) gptName() string {
	if g.b.GPTName == "" {
		return "the disk"
	}
	return strings.NewReplacer(`"`, "", "'", "", `$`, "", `\`, "", ";", "").Replace(g.b.GPTName)
}

// load fetches the image over TFTP and checks that all of it arrived.
func (g *gen) load(p plan) Step {
	img, name := p.w.Image, string(KindLoad)+" "+p.t.slot.Name
	cmds := append([]string{"setenv filesize"}, guard(
		fmt.Sprintf(`tftpboot %s %s && test "${filesize}" = "%x"`, g.addr(), img.Name, img.Size),
		name, fmt.Sprintf("%s did not arrive whole (%d bytes)", img.Name, img.Size))...)
	return Step{Name: name, Kind: KindLoad, Slot: p.t.slot.Name, Image: &p.w.Image, Commands: cmds, Done: console.DonePrefix + name}
}

// want is the image's hash as U-Boot's hash command prints it.
func (g *gen) want(img Image) string {
	if g.check == CheckCRC32 {
		return fmt.Sprintf("%08x", img.CRC32)
	}
	return hex.EncodeToString(img.SHA256[:])
}

// hash is the command that hashes the image's bytes at the load address into adu_sum.
func (g *gen) hash(img Image) string {
	return fmt.Sprintf("hash %s %s %#x adu_sum", g.check, g.addr(), img.Size)
}

// checkStep compares the hash of the image in RAM with the workstation's.
func (g *gen) checkStep(p plan) Step {
	img, name := p.w.Image, string(KindCheck)+" "+p.t.slot.Name
	cmds := append([]string{"setenv adu_want " + g.want(img), "setenv adu_sum"},
		guard(g.hash(img)+` && test "${adu_sum}" = "${adu_want}"`, name,
			fmt.Sprintf("%s differs from what the workstation serves (%s); nothing written", img.Name, g.check))...)
	return Step{Name: name, Kind: KindCheck, Slot: p.t.slot.Name, Image: &p.w.Image, Commands: cmds, Done: console.DonePrefix + name}
}

// write writes the image in RAM into its slot.
func (g *gen) write(p plan) Step {
	t, img, name := p.t, p.w.Image, string(KindWrite)+" "+p.t.slot.Name
	var cmds []string
	var cond, why string
	switch t.kind {
	case kindMMC:
		n := blocks(img.Size)
		if pad := n*gptdisk.BlockSize - img.Size; pad > 0 {
			// The last block's tail is zeros, not whatever the RAM held.
			cmds = append(cmds, gate+fmt.Sprintf("mw.b %#x 0 %#x", int64(g.b.UBoot.LoadAddr)+img.Size, pad))
		}
		cond = fmt.Sprintf("mmc dev %d %d && mmc write %s %#x %#x", t.dev, t.hwpart, g.addr(), t.block, n)
		why = fmt.Sprintf("mmc %d (hardware partition %d) blocks %#x+%#x", t.dev, t.hwpart, t.block, n)
	case kindNAND:
		cond = fmt.Sprintf("nand erase.part %s && nand write %s %s %#x", t.name, g.addr(), t.name, img.Size)
		why = fmt.Sprintf("NAND partition %s (erase failed or too many bad blocks)", t.name)
	case kindUBI:
		cond = fmt.Sprintf("ubi part %s && ubi write %s %s %#x", g.b.UBoot.UBIPart, g.addr(), t.name, img.Size)
		why = fmt.Sprintf("UBI volume %s on %s", t.name, g.b.UBoot.UBIPart)
	case kindSF:
		cond = fmt.Sprintf("sf probe %s && sf update %s %#x %#x", g.b.UBoot.SFProbe, g.addr(), t.offset, img.Size)
		why = fmt.Sprintf("SPI flash %s at %#x", g.b.UBoot.SFProbe, t.offset)
	}
	cmds = append(cmds, guard(cond, name, "could not write "+why)...)
	return Step{Name: name, Kind: KindWrite, Slot: t.slot.Name, Image: &p.w.Image, Commands: cmds, Done: console.DonePrefix + name, Writes: true}
}

// verify reads the slot back into RAM and compares its hash with the workstation's.
func (g *gen) verify(p plan) Step {
	t, img, name := p.t, p.w.Image, string(KindVerify)+" "+p.t.slot.Name
	var read string
	switch t.kind {
	case kindMMC:
		read = fmt.Sprintf("mmc read %s %#x %#x", g.addr(), t.block, blocks(img.Size))
	case kindNAND:
		read = fmt.Sprintf("nand read %s %s %#x", g.addr(), t.name, img.Size)
	case kindUBI:
		read = fmt.Sprintf("ubi read %s %s %#x", g.addr(), t.name, img.Size)
	case kindSF:
		read = fmt.Sprintf("sf read %s %#x %#x", g.addr(), t.offset, img.Size)
	}
	cmds := append([]string{"setenv adu_sum"}, guard(read+" && "+g.hash(img)+` && test "${adu_sum}" = "${adu_want}"`, name,
		fmt.Sprintf("slot %s reads back different from %s", t.slot.Name, img.Name))...)
	return Step{Name: name, Kind: KindVerify, Slot: t.slot.Name, Image: &p.w.Image, Commands: cmds, Done: console.DonePrefix + name}
}

// env replaces the environment with U-Boot's default one plus the board's variables
// (uboot.env) and the preset's for the bank, and saves it twice, so that both copies of a
// redundant environment hold it.
func (g *gen) env() (Step, string, error) {
	if g.b.Env == nil {
		return Step{}, "", fmt.Errorf("%w: a fresh environment needs the [bootloader] section (type u-boot)", ErrConfig)
	}
	bank := g.o.Bank
	if bank == "" && len(g.b.Slots.Banks) > 0 {
		bank = g.b.Slots.Banks[0]
	}
	if !slices.Contains(g.b.Slots.Banks, bank) {
		return Step{}, "", fmt.Errorf("%w: bank %q is not one of %v", slots.ErrUnknownSlot, bank, g.b.Slots.Banks)
	}
	vars, err := g.b.Env.FreshVars(bootloader.Bank(bank))
	if err != nil {
		return Step{}, "", err
	}
	for k := range g.b.UBoot.Env {
		if _, ok := vars[k]; ok {
			return Step{}, "", fmt.Errorf("%w: uboot.env.%s: the [bootloader] preset sets it for the bank", ErrConfig, k)
		}
	}
	cmds := []string{gate + "env default -a"}
	for _, set := range []map[string]string{g.b.UBoot.Env, vars} {
		for _, k := range slices.Sorted(maps.Keys(set)) {
			if !envName.MatchString(k) || strings.ContainsAny(set[k], "'\n") {
				return Step{}, "", fmt.Errorf("%w: variable %s=%q", ErrCommand, k, set[k])
			}
			cmds = append(cmds, gate+"setenv "+k+" "+quote(set[k]))
		}
	}
	name := string(KindEnv)
	cmds = append(cmds, guard("saveenv && saveenv", name, "saveenv failed")...)
	return Step{Name: name, Kind: KindEnv, Commands: cmds, Done: console.DonePrefix + name, Writes: true}, bank, nil
}

// quote makes v one word of U-Boot's shell: as it is when it holds nothing the shell reads,
// else in single quotes (nothing is expanded inside them; callers refuse values with a
// single quote).
func quote(v string) string {
	if nameRe.MatchString(v) {
		return v
	}
	return "'" + v + "'"
}

// header says what the script does and how to run it.
func (g *gen) header(s *Script, plans []plan) []string {
	var names []string
	for _, p := range plans {
		names = append(names, fmt.Sprintf("%s into %s", p.w.Image.Name, p.t.slot.Name))
	}
	h := []string{"aduflash recovery script, generated by aduflash script."}
	if len(names) > 0 {
		h = append(h, "Writes "+strings.Join(names, ", ")+";", fmt.Sprintf("each image is checked in RAM (%s) before it is written and read back after.", g.check))
	}
	if s.Bank != "" {
		h = append(h, fmt.Sprintf("Then a fresh environment (the default one) with bank %s primary, saved twice.", s.Bank))
	}
	return append(h, "",
		"Before: network up (dhcp, or ipaddr), serverip, and tftpdstp when the TFTP server",
		"does not listen on port 69; tftpwindowsize 16 loads faster from aduflash serve.",
		"Run it: tftpboot ${scriptaddr} FILE.scr; source ${scriptaddr}",
		"Each step prints \""+console.DonePrefix+"STEP\"; a failed step prints \""+console.FailPrefix+"...\",",
		"and nothing after it loads, writes or resets.")
}

// quotedSetenv is a setenv whose value is in single quotes (quote), the only place a single
// quote may be.
var quotedSetenv = regexp.MustCompile(`^(` + regexp.QuoteMeta(gate) + `)?setenv [A-Za-z0-9_]+ '[^']*'$`)

// checkLines refuses a script with a command U-Boot would cut or misread.
func (g *gen) checkLines(s *Script) error {
	for _, st := range s.Steps {
		for _, c := range st.Commands {
			if len(c) > console.MaxCommand {
				return fmt.Errorf("%w: step %s: a command of %d bytes (U-Boot takes %d with the console's status marker): %.60s...", ErrCommand, st.Name, len(c), console.MaxCommand, c)
			}
			// U-Boot's shell reads a single quote even inside double quotes.
			if strings.ContainsAny(c, "\n\r\x00") || strings.Contains(c, "'") && !quotedSetenv.MatchString(c) {
				return fmt.Errorf("%w: step %s: %q", ErrCommand, st.Name, c)
			}
		}
	}
	return nil
}
