package console

import (
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeUBoot plays U-Boot's console on one end of a pipe: a banner with an autoboot countdown
// that any key stops, a prompt that echoes what is typed, Ctrl-C, "cmd; cmd" lists, "echo"
// with $?, and the commands of cmds. It is a model of the behaviour the real U-Boot (see the
// QEMU tests) shows, for fast tests of the edge cases.
type fakeUBoot struct {
	t    *testing.T
	conn net.Conn
	// cmds: name → output lines and exit status.
	cmds map[string]func(args []string) ([]string, int)

	mu       sync.Mutex
	atPrompt bool
	line     []byte
	status   int
	// dropChar, when > 0, loses the Nth character typed (a UART overrun).
	dropChar int
	typed    int
	ran      []string // command lines run, in order
}

// Where a fake U-Boot is when the console opens.
type fakeStart int

const (
	inCountdown   fakeStart = iota // banner, then "Hit any key to stop autoboot", waiting for a key
	promptShown                    // banner, then its prompt
	promptUnshown                  // at its prompt already: the banner and the prompt went by unseen
)

// newFake returns the console end of a pipe to a fake U-Boot that starts as start says.
func newFake(t *testing.T, banner string, start fakeStart) (*fakeUBoot, net.Conn) {
	ours, theirs := net.Pipe()
	f := &fakeUBoot{t: t, conn: theirs, cmds: map[string]func([]string) ([]string, int){
		"true":  func([]string) ([]string, int) { return nil, 0 },
		"false": func([]string) ([]string, int) { return nil, 1 },
	}}
	t.Cleanup(func() { ours.Close(); theirs.Close() })
	go f.serve(banner, start)
	return f, ours
}

func (f *fakeUBoot) write(s string) {
	f.conn.Write([]byte(strings.ReplaceAll(s, "\n", "\r\n")))
}

func (f *fakeUBoot) serve(banner string, start fakeStart) {
	switch start {
	case inCountdown:
		f.write(banner + "Hit any key to stop autoboot:  3 ")
	case promptShown:
		f.write(banner)
		f.prompt()
	case promptUnshown:
		f.mu.Lock()
		f.atPrompt = true
		f.mu.Unlock()
	}
	// The UART: what is typed is kept while a command runs.
	input := make(chan byte, 1<<16)
	go func() {
		defer close(input)
		b := make([]byte, 256)
		for {
			n, err := f.conn.Read(b)
			for _, c := range b[:n] {
				input <- c
			}
			if err != nil {
				return
			}
		}
	}()
	buf := make([]byte, 1)
	for c := range input {
		buf[0] = c
		f.mu.Lock()
		at := f.atPrompt
		f.mu.Unlock()
		switch {
		case !at:
			f.write("\b\b\b 0 \n")
			f.prompt()
		case buf[0] == 3:
			f.write("<INTERRUPT>\n")
			f.prompt()
		case buf[0] == '\r':
			f.write("\n")
			f.execLine()
		default:
			f.mu.Lock()
			f.typed++
			drop := f.typed == f.dropChar
			if !drop {
				f.line = append(f.line, buf[0])
			}
			f.mu.Unlock()
			if !drop {
				f.conn.Write(buf)
			}
		}
	}
}

func (f *fakeUBoot) prompt() {
	f.mu.Lock()
	f.atPrompt, f.line = true, nil
	f.mu.Unlock()
	f.write("=> ")
}

func (f *fakeUBoot) execLine() {
	f.mu.Lock()
	line := string(f.line)
	f.line = nil
	f.atPrompt = false
	f.ran = append(f.ran, line)
	f.mu.Unlock()
	for _, part := range strings.Split(line, ";") {
		args := strings.Fields(part)
		if len(args) == 0 {
			continue
		}
		if args[0] == "echo" {
			out := strings.Join(args[1:], " ")
			f.write(strings.ReplaceAll(out, "$?", fmt.Sprint(f.status)) + "\n")
			f.status = 0
			continue
		}
		run, ok := f.cmds[args[0]]
		if !ok {
			f.write(fmt.Sprintf("Unknown command '%s' - try 'help'\n", args[0]))
			f.status = 1
			continue
		}
		out, st := run(args[1:])
		for _, l := range out {
			f.write(l)
		}
		f.status = st
	}
	f.prompt()
}

// commandsRun returns the lines the fake ran, without the status markers.
func (f *fakeUBoot) commandsRun() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, l := range f.ran {
		if i := strings.Index(l, "echo @@ADU"); i >= 0 {
			l = strings.TrimSuffix(l[:i], "; ")
		}
		out = append(out, l)
	}
	return out
}

// silentPort is a console that prints what write says (garbage or nothing) and ignores input.
type silentPort struct {
	r *io.PipeReader
	w *io.PipeWriter
}

func newSilent(t *testing.T, garbage string, every time.Duration) io.ReadWriter {
	r, w := io.Pipe()
	done := make(chan struct{})
	t.Cleanup(func() { close(done); r.Close() })
	if garbage != "" {
		go func() {
			tick := time.NewTicker(every)
			defer tick.Stop()
			for {
				select {
				case <-done:
					return
				case <-tick.C:
					if _, err := w.Write([]byte(garbage)); err != nil {
						return
					}
				}
			}
		}()
	}
	return &silentPort{r: r, w: w}
}

func (s *silentPort) Read(p []byte) (int, error)  { return s.r.Read(p) }
func (s *silentPort) Write(p []byte) (int, error) { return len(p), nil }
