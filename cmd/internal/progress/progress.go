// Package progress shows how far a long byte stream has come: a cheggaaa/pb bar with
// throughput and ETA when the output is a terminal, and a few plain lines (package lines:
// every 10 % and a summary) when it is a log or a pipe. It belongs to the host CLIs; the
// device agent does not import it (it uses package lines).
package progress

import (
	"io"
	"os"
	"sync"
	"time"

	"github.com/cheggaaa/pb/v3"
	"github.com/cheggaaa/pb/v3/termutil"
	"github.com/mattn/go-isatty"

	"github.com/aduflash/aduflash/cmd/internal/lines"
)

// Bar counts bytes of one operation.
type Bar struct {
	mu       sync.Mutex
	bar      *pb.ProgressBar // on a terminal
	lines    *lines.Counter  // elsewhere
	finished bool
}

// IsTerminal reports whether w is a terminal.
func IsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && (isatty.IsTerminal(f.Fd()) || isatty.IsCygwinTerminal(f.Fd()))
}

// Output is where a command's progress goes: stderr, unless the command prints JSON to a
// script (then only a terminal still gets a bar, and a pipe gets nothing).
func Output(stderr io.Writer, json bool) io.Writer {
	if json && !IsTerminal(stderr) {
		return nil
	}
	return stderr
}

// New starts a bar for an operation of total bytes (≤ 0: unknown) that writes to out. On a
// terminal it draws a bar; otherwise it prints plain lines (package lines). A nil out gives
// a silent bar.
func New(out io.Writer, total int64, label string) *Bar {
	if out == nil || !IsTerminal(out) {
		return &Bar{lines: lines.New(out, total, label)}
	}
	b := &Bar{bar: pb.New64(total).SetTemplate(pb.Full).SetWriter(out).
		Set(pb.Bytes, true).Set(pb.SIBytesPrefix, false).Set("prefix", label+" ").
		SetRefreshRate(200 * time.Millisecond)}
	// A terminal that reports no size (a serial console, `script` without a window) would
	// get a zero-width, invisible bar.
	if w, err := termutil.TerminalWidth(); err != nil || w <= 0 {
		b.bar.SetWidth(80)
	}
	b.bar.Start()
	return b
}

// Add records n more bytes.
func (b *Bar) Add(n int64) {
	if b == nil || n == 0 {
		return
	}
	if b.bar == nil {
		b.lines.Add(n)
		return
	}
	b.bar.Add64(n)
}

// SetDetail makes the bar show detail's text after its figures, read at every redraw (a
// terminal) or plain line: what the count alone does not say, such as where the bytes
// came from. detail must be safe to call from any goroutine.
func (b *Bar) SetDetail(detail func() string) {
	if b == nil {
		return
	}
	if b.bar == nil {
		b.lines.SetDetail(detail)
		return
	}
	b.bar.Set("suffix", lazy(detail))
}

// lazy is a detail that pb formats (fmt.Stringer) each time it draws.
type lazy func() string

func (l lazy) String() string { return l() }

// Reader counts what is read through it.
func (b *Bar) Reader(r io.Reader) io.Reader { return io.TeeReader(r, counter{b}) }

// Writer counts what is written through it.
func (b *Bar) Writer(w io.Writer) io.Writer { return &countingWriter{w: w, b: b} }

// counter is a Writer that only counts: where a Reader's bytes are teed to.
type counter struct{ b *Bar }

func (c counter) Write(p []byte) (int, error) {
	c.b.Add(int64(len(p)))
	return len(p), nil
}

// Finish ends the bar and, in plain mode, prints a summary with the throughput.
func (b *Bar) Finish() { b.End(nil) }

// End ends the bar of an operation that returned err. After a success it is Finish; after a
// failure a terminal bar stays where it stopped and plain mode prints no summary, so that no
// line claims "done" before the command reports the error.
func (b *Bar) End(err error) {
	if b == nil {
		return
	}
	if b.bar == nil {
		b.lines.End(err)
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.finished {
		b.finished = true
		b.bar.Finish()
	}
}

type countingWriter struct {
	w io.Writer
	b *Bar
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.b.Add(int64(n))
	return n, err
}

// Size formats a byte count with binary units (B, KiB, MiB, GiB, TiB).
func Size(n int64) string { return lines.Size(n) }

// NewStages shows the stages of an install on out (nil: nowhere), a bar each (see
// lines.Stages).
func NewStages(out io.Writer, dryRun bool) *lines.Stages {
	return lines.NewStages(func(total int64, label string) lines.Bar { return New(out, total, label) }, dryRun)
}
