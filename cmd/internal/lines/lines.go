// Package lines tells how far a long byte stream has come in plain lines (every 10 % and a
// summary with the throughput), for logs, pipes and device consoles, and follows the stages
// of an install with one counter each. It draws nothing and needs no terminal library, so
// the device agent's CLI uses it as it is; the host CLIs' bars (package progress) use it
// when their output is not a terminal.
package lines

import (
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"
)

// Counter counts the bytes of one operation and prints its progress to out.
type Counter struct {
	mu       sync.Mutex
	out      io.Writer
	label    string
	total    int64
	done     int64
	lastTen  int64
	start    time.Time
	now      func() time.Time
	finished bool
	detail   func() string
}

// New starts a counter of an operation of total bytes (≤ 0: unknown, then only the summary
// is printed) that writes to out (nil: nowhere).
func New(out io.Writer, total int64, label string) *Counter {
	c := &Counter{out: out, label: label, total: total, now: time.Now}
	c.start = c.now()
	return c
}

// Add records n more bytes, and prints a line at each further tenth of the total.
func (c *Counter) Add(n int64) {
	if c == nil || n == 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.done += n
	if c.out == nil || c.total <= 0 {
		return
	}
	ten := c.done * 10 / c.total
	if ten > c.lastTen && ten < 10 {
		c.lastTen = ten
		fmt.Fprintf(c.out, "%s: %d%% (%s of %s%s)\n", c.label, ten*10, Size(c.done), Size(c.total), c.details())
	}
}

// SetDetail adds detail's text to every later line: what the count alone does not say, such
// as where the bytes came from. detail must be safe to call from any goroutine.
func (c *Counter) SetDetail(detail func() string) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.detail = detail
}

// details is the detail's text as a line's tail ("" without one); c.mu is held.
func (c *Counter) details() string {
	if c.detail == nil {
		return ""
	}
	if d := c.detail(); d != "" {
		return "; " + d
	}
	return ""
}

// End ends the operation, which returned err: after a success it prints a summary with the
// throughput; after a failure nothing, so that no line claims "done" before the command
// reports the error. Later calls do nothing.
func (c *Counter) End(err error) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.finished {
		return
	}
	c.finished = true
	if c.out == nil || err != nil {
		return
	}
	el := c.now().Sub(c.start)
	rate := ""
	if s := el.Seconds(); s > 0 {
		rate = fmt.Sprintf(", %s/s", Size(int64(float64(c.done)/s)))
	}
	fmt.Fprintf(c.out, "%s: done, %s in %s%s%s\n", c.label, Size(c.done), el.Round(time.Millisecond), rate, c.details())
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

// Bar is what shows one stage: a Counter, or a terminal's bar (package progress).
type Bar interface {
	Add(n int64)
	SetDetail(detail func() string)
	End(err error)
}

// Stages shows one Bar per stage of an install (an install.Meter): the write, then the
// read-back. An adaptive install also says, on the write's bar, how many bytes it fetched
// and how many it took from what the device holds (install.AdaptiveMeter). Its methods may
// be called from any goroutine.
type Stages struct {
	newBar  func(total int64, label string) Bar
	dryRun  bool
	fetched atomic.Int64
	reused  atomic.Int64

	mu       sync.Mutex
	bar      Bar
	writing  bool // the current stage is the write (install.StageWrite)
	adaptive bool // Fetched or Reused was called
}

// NewStages shows the stages with bars from newBar, each named by its stage, or "check" in
// a dry run (which only checks what it would write).
func NewStages(newBar func(total int64, label string) Bar, dryRun bool) *Stages {
	return &Stages{newBar: newBar, dryRun: dryRun}
}

// Stage ends the current bar and starts one for the stage.
func (s *Stages) Stage(name string, total int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.end(nil)
	label := name
	if s.dryRun {
		label = "check"
	}
	s.bar, s.writing = s.newBar(total, label), name == "write"
	s.showAdaptive()
}

// Add counts n more bytes of the current stage.
func (s *Stages) Add(n int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.bar != nil {
		s.bar.Add(n)
	}
}

// Fetched counts n more bytes fetched by an adaptive install.
func (s *Stages) Fetched(n int64) { s.fetched.Add(n); s.markAdaptive() }

// Reused counts n more payload bytes an adaptive install took from the device.
func (s *Stages) Reused(n int64) { s.reused.Add(n); s.markAdaptive() }

func (s *Stages) markAdaptive() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.adaptive {
		s.adaptive = true
		s.showAdaptive()
	}
}

// showAdaptive puts the fetched and reused counts on the write's bar; s.mu is held.
func (s *Stages) showAdaptive() {
	if s.adaptive && s.writing && s.bar != nil {
		s.bar.SetDetail(func() string {
			return fmt.Sprintf("fetched %s, reused %s", Size(s.fetched.Load()), Size(s.reused.Load()))
		})
	}
}

// End ends the current stage's bar, for an install that returned err (see Counter.End).
func (s *Stages) End(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.end(err)
}

func (s *Stages) end(err error) {
	if s.bar != nil {
		s.bar.End(err)
		s.bar = nil
	}
}
