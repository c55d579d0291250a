package console

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/aduflash/aduflash/internal/errkind"
)

// Step is one named part of a recovery, as recovery/ubootscript generates them from the
// device config: the commands that load an image over TFTP, check it in U-Boot, write it, or
// write a fresh environment. It is all this package needs of a script.
type Step struct {
	Name string
	// Image is the file the step loads over TFTP, or checks or writes ("" for none): errors
	// name it, and its transfer gets a progress bar.
	Image string
	// Size is Image's size in bytes (0: unknown): the progress bar's total, and the count
	// U-Boot's "Bytes transferred = N" must report.
	Size int64
	// Commands run in order; the step stops at the first that fails.
	Commands []Command
	// Checks says the step checks what the board received (an image's size or hash, the
	// board's partition table) and changes nothing: when it prints FailPrefix, the check
	// failed (ErrCheck: a damaged transfer, a board other than the one described). Any other
	// step that prints it failed to do its job (ErrCommand).
	Checks bool
}

// What a step prints for a driver to follow it (recovery/ubootscript's do): DonePrefix and
// its name once it succeeded; FailPrefix, its name and why when it failed.
const (
	DonePrefix = "aduflash: ok: "
	FailPrefix = "aduflash: FAILED: "
)

// Command is one U-Boot command line and the values that prove it did its job.
type Command struct {
	Line string
	// Expect holds texts that must each appear in the command's output, e.g. the CRC-32 the
	// workstation computed: "==> 1c291ca3".
	Expect []string
}

// Network is how U-Boot reaches the TFTP server.
type Network struct {
	IPAddr   string // the board's IPv4 address, or "dhcp"
	ServerIP string // the TFTP server's IPv4 address as the board sees it
	Port     int    // the server's UDP port; 0 or 69: U-Boot's default. Others need CONFIG_TFTP_PORT (env tftpdstp)
	// Window is how many blocks U-Boot asks the server to send per acknowledgement (RFC
	// 7440, env tftpwindowsize; a U-Boot without windowsize support ignores it); 0 or 1:
	// lock-step.
	Window int
}

// ErrPlan: a recovery plan that cannot be run (a bad address, a step with no commands).
var ErrPlan = errkind.New(errkind.Usage, "console: invalid recovery plan")

// Step returns the commands that set the board's network up: its address (static, or DHCP
// without autoload), the server's address and port, the TFTP window.
func (n Network) Step() (Step, error) {
	var cmds []string
	if n.IPAddr == "dhcp" {
		cmds = append(cmds, "setenv autoload no", "dhcp")
	} else if a, err := netip.ParseAddr(n.IPAddr); err != nil || !a.Is4() {
		return Step{}, fmt.Errorf("%w: board address %q is not an IPv4 address or \"dhcp\"", ErrPlan, n.IPAddr)
	} else {
		cmds = append(cmds, "setenv ipaddr "+a.String())
	}
	a, err := netip.ParseAddr(n.ServerIP)
	if err != nil || !a.Is4() {
		return Step{}, fmt.Errorf("%w: server address %q is not an IPv4 address", ErrPlan, n.ServerIP)
	}
	cmds = append(cmds, "setenv serverip "+a.String())
	if n.Port < 0 || n.Port > 65535 {
		return Step{}, fmt.Errorf("%w: TFTP port %d", ErrPlan, n.Port)
	}
	if n.Port != 0 && n.Port != 69 {
		cmds = append(cmds, fmt.Sprintf("setenv tftpdstp %d", n.Port))
	}
	if n.Window < 0 || n.Window > 65535 {
		return Step{}, fmt.Errorf("%w: TFTP window %d", ErrPlan, n.Window)
	}
	if n.Window > 1 {
		cmds = append(cmds, fmt.Sprintf("setenv tftpwindowsize %d", n.Window))
	}
	s := Step{Name: "network"}
	for _, l := range cmds {
		s.Commands = append(s.Commands, Command{Line: l})
	}
	return s, nil
}

// Plan is a whole recovery.
type Plan struct {
	Network Network
	Steps   []Step
	// Up is the text of a line that proves the board is up after the reset (e.g. "login:");
	// "" leaves the board at the prompt: no reset.
	Up string
	// BootTimeout bounds the wait for Up (default 5 min).
	BootTimeout time.Duration
}

// Script returns every step the plan runs, the network's first, checked.
func (p Plan) Script() ([]Step, error) {
	ns, err := p.Network.Step()
	if err != nil {
		return nil, err
	}
	for i, s := range p.Steps {
		if s.Name == "" || len(s.Commands) == 0 {
			return nil, fmt.Errorf("%w: step %d (%q) has no name or no command", ErrPlan, i+1, s.Name)
		}
	}
	return append([]Step{ns}, p.Steps...), nil
}

// Meter counts the bytes of one TFTP transfer; cmd/internal/progress.Bar is one.
type Meter interface {
	Add(n int64)
	End(err error)
}

// Observer hears how a recovery goes. Either method may be nil-safe no-ops.
type Observer interface {
	// Transfer is called when U-Boot starts loading a step's image.
	Transfer(image string, size int64) Meter
	// StepDone is called after each step.
	StepDone(s Step, took time.Duration, err error)
}

// Recover runs plan on the board behind c: it finds the prompt (Attach), runs each step and
// stops at the first that fails, then resets the board and waits for plan.Up. obs may be nil.
func Recover(ctx context.Context, c *Console, plan Plan, obs Observer) error {
	steps, err := plan.Script()
	if err != nil {
		return err
	}
	if err := c.Attach(ctx); err != nil {
		return err
	}
	for _, s := range steps {
		start := time.Now()
		err := c.RunStep(ctx, s, obs)
		if obs != nil {
			obs.StepDone(s, time.Since(start), err)
		}
		if err != nil {
			return err
		}
	}
	if plan.Up == "" {
		return nil
	}
	timeout := plan.BootTimeout
	if timeout <= 0 {
		timeout = 5 * time.Minute
	}
	return c.Boot(ctx, plan.Up, timeout)
}

// StepError says which step failed, on which image and command, and what U-Boot printed.
// Command is "" when the step's own failure line (FailPrefix) says what failed.
type StepError struct {
	Step, Image, Command string
	Err                  error // what went wrong: one of this package's errors, wrapped
}

func (e *StepError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "step %q", e.Step)
	if e.Image != "" {
		fmt.Fprintf(&b, " (image %s)", e.Image)
	}
	if e.Command != "" {
		fmt.Fprintf(&b, ", command %q", e.Command)
	}
	fmt.Fprintf(&b, ": %v", e.Err)
	return b.String()
}

func (e *StepError) Unwrap() error { return e.Err }

// ErrorKind: the kind is the wrapped error's.
func (e *StepError) ErrorKind() errkind.Kind { return errkind.Cause }

// RunStep runs the commands of one step and checks each: its exit status, the lines it
// printed (the first error U-Boot prints, or the step's own failure line, interrupts it),
// the values it must print and the byte count of a transfer. obs may be nil.
func (c *Console) RunStep(ctx context.Context, s Step, obs Observer) error {
	c.Note("step %q", s.Name)
	w := &stepWatch{step: s, obs: obs}
	for _, cmd := range s.Commands {
		res, err := c.Run(ctx, cmd.Line, w.line)
		if err == nil {
			err = verdict(res, cmd)
		}
		w.endTransfer(err)
		if err != nil {
			se := &StepError{Step: s.Name, Image: s.Image, Command: cmd.Line, Err: err}
			if w.failedLine {
				se.Command = ""
			}
			return se
		}
	}
	return nil
}

// verdict checks a finished command: its status, then the values it had to print.
func verdict(res Result, cmd Command) error {
	last := ""
	for _, l := range res.Output {
		if strings.TrimSpace(l) != "" {
			last = l
		}
	}
	if res.Status != 0 {
		return fmt.Errorf("%w: exit status %d (last line: %q)", ErrCommand, res.Status, last)
	}
	out := strings.Join(res.Output, "\n")
	for _, want := range cmd.Expect {
		if !strings.Contains(out, want) {
			return fmt.Errorf("%w: the output lacks %q (last line: %q)", ErrCheck, want, last)
		}
	}
	return nil
}

// stepWatch follows the output of a step's commands as it arrives.
type stepWatch struct {
	step      Step
	obs       Observer
	meter     Meter
	counted   int64 // bytes added to meter
	lineMarks int   // hash marks of the current line already counted
	// failedLine: the step printed its own failure line (FailPrefix).
	failedLine bool
}

// blockSize is U-Boot's default TFTP block size (CONFIG_TFTP_BLOCKSIZE): it prints a hash
// mark every ten blocks. The bar is an estimate on boards built otherwise (or with
// CONFIG_TFTP_TSIZE: 50 marks a file); U-Boot's final byte count sets it right.
const blockSize = 1468

// line is Run's onLine: progress from hash marks, and an error for the first failure line.
func (w *stepWatch) line(text string, complete bool) error {
	l := ParseLine(text)
	if l.Kind == Progress {
		w.progress(l.Marks)
	}
	if !complete {
		return nil
	}
	w.lineMarks = 0
	switch l.Kind {
	case Failure:
		return fmt.Errorf("%w: U-Boot printed %q", l.Err, strings.TrimSpace(text))
	case StepFailed:
		w.failedLine = true
		if w.step.Checks {
			return fmt.Errorf("%w: %s", ErrCheck, strings.TrimSpace(text))
		}
		return fmt.Errorf("%w: %s", ErrCommand, strings.TrimSpace(text))
	case Transferred:
		if w.step.Size > 0 && l.Bytes != w.step.Size {
			return fmt.Errorf("%w: U-Boot received %d bytes, the image has %d", ErrCheck, l.Bytes, w.step.Size)
		}
		if w.meter != nil {
			w.meter.Add(l.Bytes - w.counted)
			w.counted = l.Bytes
		}
	}
	return nil
}

// progress counts the marks of the current line (seen again as it grows) into the meter:
// one mark per ten blocks, never past the image's size before U-Boot reports the count.
func (w *stepWatch) progress(marks int) {
	if w.obs == nil || w.step.Image == "" {
		return
	}
	if w.meter == nil {
		w.meter = w.obs.Transfer(w.step.Image, w.step.Size)
	}
	delta := marks - w.lineMarks
	w.lineMarks = marks
	if delta <= 0 {
		return
	}
	n := int64(delta) * 10 * blockSize
	if w.step.Size > 0 {
		n = min(n, w.step.Size-1-w.counted)
	}
	if n > 0 {
		w.meter.Add(n)
		w.counted += n
	}
}

// endTransfer ends the meter of a transfer once its command finished.
func (w *stepWatch) endTransfer(err error) {
	if w.meter == nil {
		return
	}
	w.meter.End(err)
	w.meter, w.counted = nil, 0
}
