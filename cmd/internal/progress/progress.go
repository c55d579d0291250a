// Package progress shows how far a long byte stream has come: a cheggaaa/pb bar with
// throughput and ETA when the output is a terminal, and a few plain lines (every 10 % and a
// summary) when it is a log or a pipe. It belongs to the host CLIs; the device agent does not
// import it.
package progress

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/cheggaaa/pb/v3"
	"github.com/cheggaaa/pb/v3/termutil"
	"github.com/mattn/go-isatty"
)

// Bar counts bytes of one operation.
type Bar struct {
	mu       sync.Mutex
	out      io.Writer
	label    string
	total    int64
	done     int64
	lastTen  int64
	start    time.Time
	now      func() time.Time
	bar      *pb.ProgressBar
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
// terminal it draws a bar; otherwise it prints plain lines. A nil out gives a silent bar.
func New(out io.Writer, total int64, label string) *Bar {
	b := &Bar{out: out, label: label, total: total, now: time.Now}
	b.start = b.now()
	if out != nil && IsTerminal(out) {
		b.bar = pb.New64(total).SetTemplate(pb.Full).SetWriter(out).
			Set(pb.Bytes, true).Set(pb.SIBytesPrefix, false).Set("prefix", label+" ").
			SetRefreshRate(200 * time.Millisecond)
		// A terminal that reports no size (a serial console, `script` without a window)
		// would get a zero-width, invisible bar.
		if w, err := termutil.TerminalWidth(); err != nil || w <= 0 {
			b.bar.SetWidth(80)
		}
		b.bar.Start()
	}
	return b
}

// Add records n more bytes.
func (b *Bar) Add(n int64) {
	if b == nil || n == 0 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.done += n
	if b.bar != nil {
		b.bar.Add64(n)
		return
	}
	if b.out == nil || b.total <= 0 {
		return
	}
	ten := b.done * 10 / b.total
	if ten > b.lastTen && ten < 10 {
		b.lastTen = ten
		fmt.Fprintf(b.out, "%s: %d%% (%s of %s)\n", b.label, ten*10, Size(b.done), Size(b.total))
	}
}

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
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.finished {
		return
	}
	b.finished = true
	if b.bar != nil {
		b.bar.Finish()
		return
	}
	if b.out == nil || err != nil {
		return
	}
	el := b.now().Sub(b.start)
	rate := ""
	if s := el.Seconds(); s > 0 {
		rate = fmt.Sprintf(", %s/s", Size(int64(float64(b.done)/s)))
	}
	fmt.Fprintf(b.out, "%s: done, %s in %s%s\n", b.label, Size(b.done), el.Round(time.Millisecond), rate)
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
func Size(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 3; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGT"[exp])
}
