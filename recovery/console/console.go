// Package console drives a board's U-Boot over its serial console, as an engineer at a
// terminal would, but checking every answer: it interrupts autoboot (or finds a board that
// sits at its prompt, or is in the middle of a banner nobody saw, since a real console is a
// tty opened after the board powered on), types one command at a time, waits for U-Boot to
// echo what was typed before pressing Enter (a dropped character on a UART without flow
// control must not run a different command), and reads the command's output up to a marker
// that prints the command's exit status:
//
//	=> tftpboot ${loadaddr} rootfs-a.img; echo @@ADU9f3c.7 $?
//	...
//	@@ADU9f3c.7 0
//	=>
//
// The marker's token is random per Console, so output left over from an earlier run cannot
// end a command; the echoed input never matches it because U-Boot echoes "$?" literally.
//
// Every line the board prints goes to the log with a timestamp. ParseLine classifies U-Boot's
// output (TFTP errors, checksum mismatches, unknown commands, bad blocks, TFTP progress); Run
// stops a command at the first error it prints. Recover runs a whole recovery: network
// settings, steps, reset, and the boot watched until a given line proves the board is up.
//
// Open opens a serial line (Linux: termios raw mode, 8N1, no flow control); a pseudo-terminal
// (QEMU's -serial pty) works the same.
package console

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aduflash/aduflash/internal/errkind"
)

// Errors of the console itself (what U-Boot's output says is in line.go).
var (
	// ErrNoPrompt: no U-Boot prompt answered within Options.PromptTimeout.
	ErrNoPrompt = errkind.New(errkind.Environment, "console: no U-Boot prompt")
	// ErrEcho: U-Boot did not echo what was typed (characters lost on the line, or a line
	// longer than the board's CONFIG_SYS_CBSIZE).
	ErrEcho = errkind.New(errkind.Environment, "console: U-Boot did not echo the command")
	// ErrTimeout: a command printed nothing for Options.CommandTimeout, or the board did not
	// come up in time.
	ErrTimeout = errkind.New(errkind.Environment, "console: timed out")
	// ErrClosed: the console ended (the serial line went away, the board powered off).
	ErrClosed = errkind.New(errkind.Environment, "console: closed")
	// ErrBootFailed: after the reset the board came back to the U-Boot prompt instead of up.
	ErrBootFailed = errkind.New(errkind.Environment, "console: the board did not boot")
	// ErrBadCommand: a command holds a line break or another control character, or is
	// longer than MaxCommand.
	ErrBadCommand = errkind.New(errkind.Input, "console: command has a control character or is too long")
)

// MaxLine is the longest line typed at U-Boot's prompt: its console buffer
// (CONFIG_SYS_CBSIZE) is 256 bytes on many boards, the terminating NUL included. A longer line
// is refused (ErrBadCommand), never cut.
const MaxLine = 255

// MaxCommand is the longest command Run takes: MaxLine less the status marker it appends,
// "; echo @@ADU<token>.<n> $?" (the token tokenBytes in hex, n at most seqDigits digits).
// recovery/ubootscript writes no longer command.
const MaxCommand = MaxLine - (len("; echo @@ADU") + 2*tokenBytes + len(".") + seqDigits + len(" $?"))

// The status marker's random token (bytes), and the digits of its sequence number (which
// then starts at 1 again).
const (
	tokenBytes = 4
	seqDigits  = 6
)

// Options tune a Console; the zero value gives the defaults.
type Options struct {
	Prompt  string // U-Boot's prompt (CONFIG_SYS_PROMPT); default "=> "
	StopKey string // sent to stop autoboot and interrupt a command; default Ctrl-C
	// PromptTimeout bounds Attach (default 1 min): time to power the board on.
	PromptTimeout time.Duration
	// ProbeInterval is how often Attach sends StopKey until a prompt answers (default 200 ms).
	ProbeInterval time.Duration
	// EchoTimeout bounds the echo of a typed command (default 2 s).
	EchoTimeout time.Duration
	// CommandTimeout is the longest a command may print nothing (default 5 min).
	CommandTimeout time.Duration
	// Log receives every line the board prints, timestamped (nil: none).
	Log io.Writer
	// Now stamps log lines (default time.Now).
	Now func() time.Time
}

func (o *Options) defaults() {
	if o.Prompt == "" {
		o.Prompt = "=> "
	}
	if o.StopKey == "" {
		o.StopKey = "\x03"
	}
	if o.PromptTimeout <= 0 {
		o.PromptTimeout = time.Minute
	}
	if o.ProbeInterval <= 0 {
		o.ProbeInterval = 200 * time.Millisecond
	}
	if o.EchoTimeout <= 0 {
		o.EchoTimeout = 2 * time.Second
	}
	if o.CommandTimeout <= 0 {
		o.CommandTimeout = 5 * time.Minute
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

// Console is one U-Boot console. It is not safe for concurrent use.
type Console struct {
	port  io.Writer
	name  string
	opts  Options
	in    inbox
	rest  []byte // received, not yet handed to a handler
	line  []byte // the line being received
	last  string // the last non-empty complete line, for messages
	token string
	seq   int
}

// New starts reading port (a serial line, a pty, a socket) for the console named name (for
// messages). Close stops it; closing port is the caller's.
func New(port io.ReadWriter, name string, opts Options) *Console {
	opts.defaults()
	var tok [tokenBytes]byte
	rand.Read(tok[:])
	c := &Console{port: port, name: name, opts: opts, in: inbox{ready: make(chan struct{}, 1)}, token: hex.EncodeToString(tok[:])}
	go c.in.fill(port)
	return c
}

// Close stops keeping what arrives (the reader ends once the port is closed).
func (c *Console) Close() { c.in.close() }

// inbox holds what the port delivered until a wait takes it. It never blocks the reader, so
// a board echoing while a long line is written cannot stall the writer.
type inbox struct {
	mu     sync.Mutex
	buf    []byte
	err    error // why the reader ended
	ended  bool
	closed bool
	ready  chan struct{} // signalled after each change
}

func (in *inbox) fill(r io.Reader) {
	buf := make([]byte, 4096)
	for {
		n, err := r.Read(buf)
		in.mu.Lock()
		if !in.closed {
			in.buf = append(in.buf, buf[:n]...)
		}
		if err != nil {
			in.err, in.ended = err, true
		}
		in.mu.Unlock()
		select {
		case in.ready <- struct{}{}:
		default:
		}
		if err != nil {
			return
		}
	}
}

func (in *inbox) close() {
	in.mu.Lock()
	in.closed, in.buf = true, nil
	in.mu.Unlock()
}

// take returns what arrived so far, and whether the reader has ended (with its error).
func (in *inbox) take() ([]byte, bool, error) {
	in.mu.Lock()
	defer in.mu.Unlock()
	b := in.buf
	in.buf = nil
	return b, in.ended, in.err
}

// handler sees each complete line (complete) and the line being received after every chunk;
// it says when the wait is over.
type handler func(text string, complete bool) (done bool, err error)

// errWaitTimeout ends a wait whose time ran out; callers turn it into their own error.
var errWaitTimeout = errors.New("wait timed out")

// wait feeds what arrives to h until h is done or fails, ctx ends, the console closes, or the
// timeout passes: since the start, or (idle) since the last byte.
func (c *Console) wait(ctx context.Context, timeout time.Duration, idle bool, h handler) error {
	if done, err := h(string(c.line), false); done || err != nil {
		return err
	}
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		for len(c.rest) == 0 {
			b, ended, rerr := c.in.take()
			if len(b) > 0 {
				c.rest = b
				if idle {
					timer.Reset(timeout)
				}
				break
			}
			if ended {
				return c.closedError(rerr)
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-timer.C:
				return errWaitTimeout
			case <-c.in.ready:
			}
		}
		if done, err := c.feed(h); done || err != nil {
			return err
		}
	}
}

// feed hands c.rest to h byte by byte: lines as they complete, and the partial line at the
// end. Bytes after the one that ended the wait stay in c.rest.
func (c *Console) feed(h handler) (bool, error) {
	for len(c.rest) > 0 {
		b := c.rest[0]
		c.rest = c.rest[1:]
		switch {
		case b == '\n':
			text := string(c.line)
			c.line = c.line[:0]
			c.logLine(text)
			if strings.TrimSpace(text) != "" {
				c.last = text
			}
			if done, err := h(text, true); done || err != nil {
				return done, err
			}
		case b == '\b' || b == 0x7f:
			if len(c.line) > 0 {
				c.line = c.line[:len(c.line)-1]
			}
		case b == '\t' || b >= 0x20:
			c.line = append(c.line, b)
		}
		if len(c.rest) == 0 {
			return h(string(c.line), false)
		}
	}
	return false, nil
}

func (c *Console) closedError(rerr error) error {
	if rerr != nil && !errors.Is(rerr, io.EOF) {
		return fmt.Errorf("%w: %s: %w", ErrClosed, c.name, rerr)
	}
	return fmt.Errorf("%w: %s", ErrClosed, c.name)
}

func (c *Console) logLine(text string) {
	if c.opts.Log != nil {
		fmt.Fprintf(c.opts.Log, "%s  %s\n", c.opts.Now().Format("2006-01-02T15:04:05.000"), text)
	}
}

// Note writes a line of the tool's own into the log, set apart from the board's lines.
func (c *Console) Note(format string, args ...any) {
	if c.opts.Log != nil {
		fmt.Fprintf(c.opts.Log, "%s  # aduflash: %s\n", c.opts.Now().Format("2006-01-02T15:04:05.000"), fmt.Sprintf(format, args...))
	}
}

// seen describes what the console received last, for error messages.
func (c *Console) seen() string {
	switch {
	case c.last != "":
		return fmt.Sprintf("last line: %q", c.last)
	case len(c.line) > 0:
		return fmt.Sprintf("received: %q", c.line)
	}
	return "nothing received"
}

func (c *Console) send(s string) error {
	if _, err := io.WriteString(c.port, s); err != nil {
		return fmt.Errorf("%w: writing to %s: %w", ErrClosed, c.name, err)
	}
	return nil
}

// atPrompt reports whether the line being received is the bare prompt.
func (c *Console) atPrompt(text string) bool {
	return text == c.opts.Prompt || strings.TrimRight(text, " ") == strings.TrimRight(c.opts.Prompt, " ") && text != ""
}

// Attach gets the board to its prompt and proves it answers: it sends StopKey every
// ProbeInterval (which stops an autoboot countdown, interrupts a running bootcmd, or clears
// a half-typed line) until the prompt shows, then runs a marker echo. A board already at its
// prompt, one in the middle of a banner and one still powering up all end the same way.
func (c *Console) Attach(ctx context.Context) error {
	c.Note("looking for the prompt %q on %s", c.opts.Prompt, c.name)
	deadline := time.Now().Add(c.opts.PromptTimeout)
	for time.Now().Before(deadline) {
		if err := c.send(c.opts.StopKey); err != nil {
			return err
		}
		err := c.wait(ctx, c.opts.ProbeInterval, false, func(text string, complete bool) (bool, error) {
			return !complete && c.atPrompt(text), nil
		})
		if errors.Is(err, errWaitTimeout) {
			continue
		}
		if err != nil {
			return err
		}
		_, err = c.exec(ctx, "", c.opts.EchoTimeout, nil)
		if err == nil {
			c.Note("prompt found")
			return nil
		}
		if !errors.Is(err, ErrEcho) && !errors.Is(err, ErrTimeout) {
			return err
		}
	}
	return fmt.Errorf("%w %q on %s after %v (%s): is the board powered and the cable on its console UART, at the right baud rate?",
		ErrNoPrompt, c.opts.Prompt, c.name, c.opts.PromptTimeout, c.seen())
}

// Result is what one command printed.
type Result struct {
	Status int      // U-Boot's $? after the command
	Output []string // the lines between the echoed command and the status marker
}

// Run runs one command at the prompt (Attach first) and returns its output and status. A
// non-zero status is no error here: the caller decides. onLine, when set, sees each output
// line as it completes and the line being received as it grows; an error from it interrupts
// the command (StopKey) and Run returns that error once the prompt is back.
func (c *Console) Run(ctx context.Context, command string, onLine func(text string, complete bool) error) (Result, error) {
	return c.exec(ctx, command, c.opts.CommandTimeout, onLine)
}

var statusLine = regexp.MustCompile(`^@@ADU([0-9a-f]+)\.(\d+) (\d+)$`)

// exec types command followed by the status marker, waits for the echo, presses Enter and
// reads up to the marker and the prompt after it. An empty command only echoes the marker.
func (c *Console) exec(ctx context.Context, command string, timeout time.Duration, onLine func(string, bool) error) (Result, error) {
	if strings.IndexFunc(command, func(r rune) bool { return r < 0x20 && r != '\t' || r == 0x7f }) >= 0 {
		return Result{}, fmt.Errorf("%w: %q", ErrBadCommand, command)
	}
	if len(command) > MaxCommand {
		return Result{}, fmt.Errorf("%w: %d bytes, U-Boot's console takes %d with the status marker: %.40q...", ErrBadCommand, len(command), MaxCommand, command)
	}
	if c.seq++; len(strconv.Itoa(c.seq)) > seqDigits {
		c.seq = 1
	}
	marker := fmt.Sprintf("@@ADU%s.%d", c.token, c.seq)
	typed := "echo " + marker + " $?"
	if command != "" {
		typed = command + "; " + typed
	}
	if err := c.typeLine(ctx, typed); err != nil {
		return Result{}, err
	}
	res := Result{Status: -1}
	var failed error
	echoed := false
	err := c.wait(ctx, timeout, true, func(text string, complete bool) (bool, error) {
		if !echoed {
			echoed = complete && strings.HasSuffix(text, typed)
			return false, nil
		}
		if res.Status >= 0 {
			return !complete && c.atPrompt(text), nil
		}
		if complete {
			if m := statusLine.FindStringSubmatch(text); m != nil && m[1] == c.token && m[2] == strconv.Itoa(c.seq) {
				res.Status, _ = strconv.Atoi(m[3])
				return false, nil
			}
			res.Output = append(res.Output, text)
		}
		if onLine != nil && failed == nil {
			if failed = onLine(text, complete); failed != nil {
				return false, c.send(c.opts.StopKey)
			}
		}
		return false, nil
	})
	switch {
	case errors.Is(err, errWaitTimeout) && res.Status < 0:
		c.send(c.opts.StopKey)
		return res, fmt.Errorf("%w: %q printed nothing for %v on %s (%s)", ErrTimeout, command, timeout, c.name, c.seen())
	case errors.Is(err, errWaitTimeout):
		return res, fmt.Errorf("%w: no prompt after %q on %s (%s)", ErrTimeout, command, c.name, c.seen())
	case err != nil:
		return res, err
	}
	return res, failed
}

// typeLine types s and waits until the board echoed all of it, then presses Enter. When the
// echo does not come (a lost character), the line is cleared with StopKey and not run.
func (c *Console) typeLine(ctx context.Context, s string) error {
	if err := c.send(s); err != nil {
		return err
	}
	err := c.wait(ctx, c.opts.EchoTimeout, false, func(text string, complete bool) (bool, error) {
		return !complete && strings.HasSuffix(text, s), nil
	})
	if errors.Is(err, errWaitTimeout) {
		c.send(c.opts.StopKey)
		return fmt.Errorf("%w: typed %q on %s, the board echoed %q", ErrEcho, s, c.name, c.line)
	}
	if err != nil {
		return err
	}
	return c.send("\r")
}

// Boot resets the board and watches it boot until a line contains up. It fails when the
// board comes back to the U-Boot prompt (its bootcmd returned), when the console closes
// first, or after timeout.
func (c *Console) Boot(ctx context.Context, up string, timeout time.Duration) error {
	c.Note("reset; waiting for %q", up)
	if err := c.typeLine(ctx, "reset"); err != nil {
		return err
	}
	deadline := time.Now().Add(timeout)
	echoed := false
	for {
		prompt := false
		err := c.wait(ctx, time.Until(deadline), false, func(text string, complete bool) (bool, error) {
			switch {
			case complete && !echoed && strings.HasSuffix(text, "reset"):
				echoed = true
			case strings.Contains(text, up):
				if !complete {
					c.logLine(text) // a login prompt ends without a line break
				}
				return true, nil
			case !complete && c.atPrompt(text):
				prompt = true
				return true, nil
			}
			return false, nil
		})
		if err == nil && !prompt {
			c.Note("the board is up")
			return nil
		}
		if errors.Is(err, errWaitTimeout) {
			return fmt.Errorf("%w: no %q on %s within %v after the reset (%s)", ErrTimeout, up, c.name, timeout, c.seen())
		}
		if err != nil {
			return fmt.Errorf("waiting for %q after the reset: %w", up, err)
		}
		if c.quiet(ctx, time.Second) {
			return fmt.Errorf("%w: it came back to the U-Boot prompt on %s without printing %q (%s)", ErrBootFailed, c.name, up, c.seen())
		}
	}
}

// quiet reports whether nothing arrives for d.
func (c *Console) quiet(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		b, ended, _ := c.in.take()
		c.rest = append(c.rest, b...)
		if len(c.rest) > 0 || ended {
			return false
		}
		select {
		case <-c.in.ready:
		case <-t.C:
			return true
		case <-ctx.Done():
			return false
		}
	}
}
