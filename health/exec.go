package health

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"time"
)

// ExecCommand returns the ExecFunc Run uses by default: it runs the argv with
// os/exec, stdout and stderr sharing one pipe into Attempt.Output. When ctx is done
// the command is killed: on Linux its whole process group (the command is started
// with Setpgid), elsewhere the process alone. waitDelay bounds how long to wait for
// the output pipe to close once the command has exited or been killed (a surviving
// descendant can hold it open); zero means no bound.
func ExecCommand(waitDelay time.Duration) ExecFunc {
	return func(ctx context.Context, a Attempt) (int, error) {
		if len(a.Argv) == 0 || a.Argv[0] == "" {
			return -1, ErrNoCommand
		}
		cmd := exec.CommandContext(ctx, a.Argv[0], a.Argv[1:]...)
		cmd.Env = a.Env
		cmd.Stdout = a.Output
		cmd.Stderr = a.Output
		cmd.WaitDelay = waitDelay
		setProcessGroup(cmd)
		cmd.Cancel = func() error { return killProcessGroup(cmd) }
		if err := cmd.Start(); err != nil {
			return -1, fmt.Errorf("health: start %s: %w", a.Argv[0], err)
		}
		err := cmd.Wait()
		code := -1
		if cmd.ProcessState != nil {
			code = cmd.ProcessState.ExitCode()
		}
		var exitErr *exec.ExitError
		if errors.As(err, &exitErr) || ctx.Err() != nil {
			// A non-zero exit, or a kill we asked for, is an outcome, not an error.
			err = nil
		}
		if err != nil {
			return code, fmt.Errorf("health: wait %s: %w", a.Argv[0], err)
		}
		return code, nil
	}
}

// tail is an io.Writer that keeps only the last limit bytes written to it.
type tail struct {
	mu        sync.Mutex
	limit     int
	buf       []byte
	truncated bool
}

func newTail(limit int) *tail { return &tail{limit: limit} }

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := len(p)
	if n >= t.limit {
		t.truncated = t.truncated || n > t.limit || len(t.buf) > 0
		t.buf = append(t.buf[:0], p[n-t.limit:]...)
		return n, nil
	}
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - t.limit; over > 0 {
		t.truncated = true
		t.buf = t.buf[:copy(t.buf, t.buf[over:])]
	}
	return n, nil
}

// String returns the kept bytes with invalid UTF-8 (e.g. a rune cut by truncation)
// replaced by U+FFFD.
func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.ToValidUTF8(string(t.buf), "\uFFFD")
}

func (t *tail) Truncated() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.truncated
}
