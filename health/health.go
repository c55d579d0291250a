package health

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/aduflash/aduflash/internal/clock"
)

// Sentinel errors. Every error Run and Validate return wraps one of them.
var (
	// ErrNoCommand: a check has an empty Command or an empty Command[0].
	ErrNoCommand = errors.New("health: check has no command")
	// ErrNoName: a check has an empty Name.
	ErrNoName = errors.New("health: check has no name")
	// ErrDuplicateName: two checks share a Name (results are reported by name).
	ErrDuplicateName = errors.New("health: duplicate check name")
	// ErrInvalid: a negative Timeout, Retries or RetryDelay, or an invalid Options value.
	ErrInvalid = errors.New("health: invalid configuration")
)

// Defaults applied when the corresponding Options field is zero.
const (
	DefaultTimeout     = 30 * time.Second
	DefaultOutputLimit = 4 << 10
	DefaultWaitDelay   = 2 * time.Second
)

// Check is one configured health check.
type Check struct {
	// Name identifies the check in the Report; it must be unique and non-empty.
	Name string
	// Command is the argv to run; no shell is involved. Command[0] is looked up in
	// the agent's own PATH (not Env's) when it contains no path separator.
	Command []string
	// Timeout bounds each attempt; zero means Options.DefaultTimeout.
	Timeout time.Duration
	// Retries is the number of further attempts after a failed one (0: run once).
	Retries int
	// RetryDelay is the pause between attempts.
	RetryDelay time.Duration
	// Env holds extra "KEY=value" entries appended to Options.BaseEnv; a later entry
	// for the same key wins.
	Env []string
}

// Attempt is what an ExecFunc is asked to run.
type Attempt struct {
	Argv []string
	// Env is the complete environment of the command.
	Env []string
	// Output receives the command's stdout and stderr.
	Output io.Writer
}

// ExecFunc runs one attempt until the command exits or ctx is done. When ctx is done
// it must kill the command (and whatever it started) and return. It returns the exit
// code (-1 when there is none, e.g. killed by a signal) and an error when the command
// could not be started or waited for; a non-zero exit is not an error.
type ExecFunc func(ctx context.Context, a Attempt) (exitCode int, err error)

// Clock is the time source Run uses for durations, timeouts and retry delays.
type Clock = clock.Clock

// SystemClock is the Clock backed by package time.
type SystemClock = clock.System

// Options tune Run. The zero value is usable.
type Options struct {
	// StopOnFailure skips the remaining checks after the first failed one.
	StopOnFailure bool
	// DefaultTimeout applies to checks without a Timeout; zero means DefaultTimeout.
	DefaultTimeout time.Duration
	// OutputLimit is how many trailing bytes of output are kept per check; zero means
	// DefaultOutputLimit.
	OutputLimit int
	// WaitDelay bounds how long ExecCommand waits for the output pipe to close after
	// the command exited or was killed (a descendant may hold it); zero means
	// DefaultWaitDelay. Only used when Exec is nil.
	WaitDelay time.Duration
	// BaseEnv is the environment every check starts from; nil means os.Environ().
	BaseEnv []string
	// Exec runs one attempt; nil means ExecCommand with WaitDelay.
	Exec ExecFunc
	// Clock is the time source; nil means SystemClock.
	Clock Clock
}

// Result is the outcome of one check.
type Result struct {
	Name string
	// OK is true when the last attempt exited 0 within its timeout.
	OK bool
	// ExitCode of the last attempt; -1 when it did not exit on its own (killed,
	// not started).
	ExitCode int
	// TimedOut is true when the last attempt was killed by its own Timeout.
	TimedOut bool
	// Skipped is true when the check was not run (StopOnFailure, or ctx ended first).
	Skipped bool
	// Attempts is the number of attempts made.
	Attempts int
	// Duration is the time from the first attempt's start to the last one's end,
	// retry delays included.
	Duration time.Duration
	// Output is the tail of the last attempt's combined stdout and stderr, at most
	// Options.OutputLimit bytes (invalid UTF-8 replaced).
	Output string
	// OutputTruncated is true when earlier output was dropped.
	OutputTruncated bool
	// Error describes why the last attempt could not run or was interrupted; empty
	// otherwise.
	Error string
}

// Report is the outcome of Run.
type Report struct {
	// Healthy is true when every check is OK (vacuously true with no checks).
	Healthy bool
	// Interrupted is true when ctx ended before every check had a verdict.
	Interrupted bool
	// Results holds one entry per configured check, in order.
	Results []Result
}

// Validate checks the configuration without running anything.
func Validate(checks []Check) error {
	seen := make(map[string]bool, len(checks))
	for i, c := range checks {
		if c.Name == "" {
			return fmt.Errorf("health: check %d: %w", i, ErrNoName)
		}
		if seen[c.Name] {
			return fmt.Errorf("health: check %d %q: %w", i, c.Name, ErrDuplicateName)
		}
		seen[c.Name] = true
		if len(c.Command) == 0 || c.Command[0] == "" {
			return fmt.Errorf("health: check %q: %w", c.Name, ErrNoCommand)
		}
		switch {
		case c.Timeout < 0:
			return fmt.Errorf("health: check %q: negative timeout %v: %w", c.Name, c.Timeout, ErrInvalid)
		case c.Retries < 0:
			return fmt.Errorf("health: check %q: negative retries %d: %w", c.Name, c.Retries, ErrInvalid)
		case c.RetryDelay < 0:
			return fmt.Errorf("health: check %q: negative retry delay %v: %w", c.Name, c.RetryDelay, ErrInvalid)
		}
	}
	return nil
}

func (o Options) validate() error {
	switch {
	case o.DefaultTimeout < 0:
		return fmt.Errorf("health: negative default timeout %v: %w", o.DefaultTimeout, ErrInvalid)
	case o.OutputLimit < 0:
		return fmt.Errorf("health: negative output limit %d: %w", o.OutputLimit, ErrInvalid)
	case o.WaitDelay < 0:
		return fmt.Errorf("health: negative wait delay %v: %w", o.WaitDelay, ErrInvalid)
	}
	return nil
}

// errCheckTimeout is the cancellation cause of an attempt that ran out of time.
var errCheckTimeout = errors.New("health: check timed out")

// Run runs the checks in order and reports their outcome. See the package
// documentation for the behaviour; the error is non-nil only for misconfiguration,
// in which case nothing was run.
func Run(ctx context.Context, checks []Check, opts Options) (Report, error) {
	if err := Validate(checks); err != nil {
		return Report{}, err
	}
	if err := opts.validate(); err != nil {
		return Report{}, err
	}
	r := runner{opts: opts}
	if r.opts.DefaultTimeout == 0 {
		r.opts.DefaultTimeout = DefaultTimeout
	}
	if r.opts.OutputLimit == 0 {
		r.opts.OutputLimit = DefaultOutputLimit
	}
	if r.opts.WaitDelay == 0 {
		r.opts.WaitDelay = DefaultWaitDelay
	}
	if r.opts.BaseEnv == nil {
		r.opts.BaseEnv = os.Environ()
	}
	if r.opts.Exec == nil {
		r.opts.Exec = ExecCommand(r.opts.WaitDelay)
	}
	if r.opts.Clock == nil {
		r.opts.Clock = SystemClock{}
	}

	rep := Report{Healthy: true, Results: make([]Result, 0, len(checks))}
	stop := false
	for _, c := range checks {
		if stop || ctx.Err() != nil {
			if ctx.Err() != nil {
				rep.Interrupted = true
			}
			rep.Healthy = false
			rep.Results = append(rep.Results, Result{Name: c.Name, ExitCode: -1, Skipped: true})
			continue
		}
		res, interrupted := r.runCheck(ctx, c)
		rep.Results = append(rep.Results, res)
		if interrupted {
			rep.Interrupted = true
		}
		if !res.OK {
			rep.Healthy = false
			stop = opts.StopOnFailure
		}
	}
	return rep, nil
}

type runner struct {
	opts Options
}

// runCheck runs one check with its retries. interrupted reports that ctx ended
// before the check had a verdict.
func (r runner) runCheck(ctx context.Context, c Check) (res Result, interrupted bool) {
	res = Result{Name: c.Name, ExitCode: -1}
	timeout := c.Timeout
	if timeout == 0 {
		timeout = r.opts.DefaultTimeout
	}
	env := make([]string, 0, len(r.opts.BaseEnv)+len(c.Env))
	env = append(append(env, r.opts.BaseEnv...), c.Env...)

	start := r.opts.Clock.Now()
	defer func() { res.Duration = r.opts.Clock.Now().Sub(start) }()
	for attempt := 0; attempt <= c.Retries; attempt++ {
		if attempt > 0 && c.RetryDelay > 0 {
			select {
			case <-ctx.Done():
				res.Error = fmt.Sprintf("interrupted before attempt %d: %v", attempt+1, context.Cause(ctx))
				return res, true
			case <-r.opts.Clock.After(c.RetryDelay):
			}
		}
		if ctx.Err() != nil {
			res.Error = fmt.Sprintf("interrupted before attempt %d: %v", attempt+1, context.Cause(ctx))
			return res, true
		}
		res.Attempts++
		out := newTail(r.opts.OutputLimit)
		code, timedOut, err := r.attempt(ctx, c.Command, env, timeout, out)
		res.ExitCode, res.TimedOut = code, timedOut
		res.Output, res.OutputTruncated = out.String(), out.Truncated()
		res.Error = ""
		switch {
		case timedOut:
			res.Error = fmt.Sprintf("timed out after %v", timeout)
		case ctx.Err() != nil:
			res.OK = false
			res.Error = fmt.Sprintf("interrupted: %v", context.Cause(ctx))
			return res, true
		case err != nil:
			res.Error = err.Error()
		}
		res.OK = !timedOut && err == nil && code == 0
		if res.OK {
			return res, false
		}
	}
	return res, false
}

// attempt runs the command once under its own timeout.
func (r runner) attempt(ctx context.Context, argv, env []string, timeout time.Duration, out io.Writer) (code int, timedOut bool, err error) {
	actx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-r.opts.Clock.After(timeout):
			cancel(errCheckTimeout)
		case <-done:
		}
	}()
	code, err = r.opts.Exec(actx, Attempt{Argv: argv, Env: env, Output: out})
	timedOut = errors.Is(context.Cause(actx), errCheckTimeout)
	return code, timedOut, err
}
