package ubootqemu

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"time"
)

// Prompt is what U-Boot prints when it waits for a command.
const Prompt = "=> "

// Session is a running U-Boot whose console a test reads and types into (QEMU's serial
// console on its standard input and output), as a person at the bench would; or, with
// Config.ConsolePTY, whose console is a pseudo-terminal (PTY) that the program under test opens
// as it would open a board's serial line.
type Session struct {
	// PTY is the console's pseudo-terminal (/dev/pts/N) with Config.ConsolePTY, else "". The
	// session's own console (Console, WaitFor, Send) then holds only what QEMU prints.
	PTY string

	cmd   *exec.Cmd
	stdin io.WriteCloser
	log   io.Writer

	mu      sync.Mutex
	console bytes.Buffer
	grew    chan struct{} // closed and replaced whenever the console grows
	exited  chan struct{} // closed once QEMU has exited
	waitErr error
}

// Start boots U-Boot (cfg as for Boot; Marker is not used) and returns the session; Close
// ends it. QEMU stops on its own when U-Boot powers off, and when it resets unless the
// console is on a pty (Config.ConsolePTY: a reset reboots the board, as on the bench).
func Start(ctx context.Context, cfg Config) (*Session, error) {
	if cfg.UBoot == "" || cfg.Disk == "" {
		return nil, errors.New("ubootqemu: Config.UBoot and Config.Disk are required")
	}
	cmd := exec.CommandContext(ctx, QEMUBinary, Args(cfg)...)
	cmd.WaitDelay = 5 * time.Second
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("ubootqemu: start %s: %w", QEMUBinary, err)
	}
	s := &Session{cmd: cmd, stdin: stdin, log: cfg.Log, grew: make(chan struct{}), exited: make(chan struct{})}
	go s.read(pr)
	go func() {
		err := cmd.Wait()
		pw.Close()
		s.mu.Lock()
		s.waitErr = err
		s.mu.Unlock()
		close(s.exited)
	}()
	if cfg.ConsolePTY {
		if err := s.findPTY(ctx); err != nil {
			s.Close()
			return nil, err
		}
	}
	return s, nil
}

var ptyLine = regexp.MustCompile(`char device redirected to (/dev/pts/\d+)`)

// findPTY waits until QEMU names the console's pty (it does before the board starts).
func (s *Session) findPTY(ctx context.Context) error {
	end, err := s.WaitFor(ctx, "char device redirected to ", 0)
	if err == nil {
		_, err = s.WaitFor(ctx, "\n", end)
	}
	if err != nil {
		return fmt.Errorf("ubootqemu: QEMU named no console pty: %w: %q", err, s.Console())
	}
	m := ptyLine.FindStringSubmatch(s.Console())
	if m == nil {
		return fmt.Errorf("ubootqemu: QEMU named no console pty: %q", s.Console())
	}
	s.PTY = m[1]
	return nil
}

// read copies the console into the session's buffer, without carriage returns.
func (s *Session) read(r io.Reader) {
	readConsole(r, s.log, func(chunk []byte) {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.console.Write(chunk)
		close(s.grew)
		s.grew = make(chan struct{})
	})
}

// readConsole reads QEMU's console output from r until it ends, and passes each chunk,
// without carriage returns, to log (when not nil) and to got.
func readConsole(r io.Reader, log io.Writer, got func(chunk []byte)) {
	buf := make([]byte, 4096)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			chunk := bytes.ReplaceAll(buf[:n], []byte("\r"), nil)
			if log != nil {
				log.Write(chunk)
			}
			got(chunk)
		}
		if err != nil {
			return
		}
	}
}

// Console returns everything U-Boot printed so far.
func (s *Session) Console() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.console.String()
}

// Len returns how many bytes the console holds: a position for WaitFor.
func (s *Session) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.console.Len()
}

// ErrExited is returned (wrapped) by WaitFor when QEMU exited before the text appeared.
var ErrExited = errors.New("ubootqemu: QEMU exited")

// WaitFor waits until the console holds text after position from, and returns the position
// after it. It fails when ctx ends or QEMU exits first.
func (s *Session) WaitFor(ctx context.Context, text string, from int) (int, error) {
	for {
		s.mu.Lock()
		b := s.console.Bytes()
		from = min(from, len(b))
		i := bytes.Index(b[from:], []byte(text))
		grew := s.grew
		s.mu.Unlock()
		if i >= 0 {
			return from + i + len(text), nil
		}
		select {
		case <-grew:
		case <-s.exited:
			// The reader may still be copying what QEMU wrote last.
			if strings.Contains(s.Console()[from:], text) {
				continue
			}
			return 0, fmt.Errorf("%w before %q appeared", ErrExited, text)
		case <-ctx.Done():
			return 0, fmt.Errorf("ubootqemu: waiting for %q: %w", text, ctx.Err())
		}
	}
}

// Send types line and Enter.
func (s *Session) Send(line string) error {
	_, err := io.WriteString(s.stdin, line+"\n")
	return err
}

// Run types a command and waits for the prompt after it; it returns what the command
// printed. It waits for U-Boot's echo of the line first, so that a prompt printed for an
// earlier Enter (Interrupt's) is not taken for the end of the command: what is typed while a
// command runs may be read by its Ctrl-C checks and lost.
func (s *Session) Run(ctx context.Context, line string) (string, error) {
	from := s.Len()
	if err := s.Send(line); err != nil {
		return "", err
	}
	echoed, err := s.WaitFor(ctx, line+"\n", from)
	if err != nil {
		return "", err
	}
	end, err := s.WaitFor(ctx, "\n"+Prompt, echoed-1)
	if err != nil {
		return "", err
	}
	return s.Console()[echoed:end], nil
}

// Interrupt stops autoboot: it presses Enter until U-Boot shows its prompt (the build's
// bootdelay is 0, so a key must be waiting when U-Boot looks), and returns the position after
// that prompt.
func (s *Session) Interrupt(ctx context.Context) (int, error) {
	for {
		from := s.Len()
		if err := s.Send(""); err != nil {
			return 0, err
		}
		attempt, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		end, err := s.WaitFor(attempt, Prompt, from)
		cancel()
		if err == nil || ctx.Err() != nil || errors.Is(err, ErrExited) {
			return end, err
		}
	}
}

// Exited is closed once QEMU has exited (poweroff, Close, or a failure).
func (s *Session) Exited() <-chan struct{} { return s.exited }

// Wait waits until QEMU exits (U-Boot reset or powered off) and returns its error.
func (s *Session) Wait(ctx context.Context) error {
	select {
	case <-s.exited:
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.waitErr
	case <-ctx.Done():
		return fmt.Errorf("ubootqemu: waiting for QEMU to exit: %w", ctx.Err())
	}
}

// Close stops QEMU (if it still runs) and waits for it.
func (s *Session) Close() {
	s.stdin.Close()
	if s.cmd.Process != nil {
		s.cmd.Process.Kill()
	}
	<-s.exited
}
