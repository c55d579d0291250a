//go:build !windows

package health

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func needSh(t *testing.T) {
	t.Helper()
	for _, p := range []string{"/bin/sh", "/bin/true", "/bin/false"} {
		if _, err := os.Stat(p); err != nil {
			t.Skipf("%s not available: %v", p, err)
		}
	}
}

func TestRealTrueFalse(t *testing.T) {
	needSh(t)
	checks := []Check{
		{Name: "true", Command: []string{"/bin/true"}, Timeout: 5 * time.Second},
		{Name: "false", Command: []string{"/bin/false"}, Timeout: 5 * time.Second},
		{Name: "missing", Command: []string{"/nonexistent/health-check"}},
		{Name: "env", Command: []string{"/bin/sh", "-c", `echo "$HC_VALUE"; echo oops >&2; exit 7`}, Env: []string{"HC_VALUE=from-check"}},
	}
	rep, err := Run(context.Background(), checks, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Healthy || rep.Interrupted {
		t.Fatalf("report = %+v", rep)
	}
	r := rep.Results
	if !r[0].OK || r[0].ExitCode != 0 || r[0].Attempts != 1 {
		t.Errorf("true = %+v", r[0])
	}
	if r[1].OK || r[1].ExitCode != 1 || r[1].TimedOut {
		t.Errorf("false = %+v", r[1])
	}
	if r[2].OK || r[2].ExitCode != -1 || !strings.Contains(r[2].Error, "/nonexistent/health-check") {
		t.Errorf("missing = %+v", r[2])
	}
	if r[3].OK || r[3].ExitCode != 7 || r[3].Output != "from-check\noops\n" {
		t.Errorf("env = %+v", r[3])
	}
}

func TestRealTimeout(t *testing.T) {
	needSh(t)
	start := time.Now()
	rep, err := Run(context.Background(), []Check{
		{Name: "sleep", Command: []string{"/bin/sh", "-c", "echo started; sleep 5"}, Timeout: 200 * time.Millisecond},
	}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el > 3*time.Second {
		t.Fatalf("timeout took %v", el)
	}
	r := rep.Results[0]
	if rep.Healthy || rep.Interrupted || !r.TimedOut || r.OK || r.ExitCode != -1 || r.Output != "started\n" {
		t.Errorf("report = %+v", rep)
	}
	if r.Duration < 200*time.Millisecond {
		t.Errorf("Duration = %v, want >= the timeout", r.Duration)
	}
}

func TestRealRetrySucceedsSecondTime(t *testing.T) {
	needSh(t)
	marker := filepath.Join(t.TempDir(), "marker")
	script := `if [ -e "$MARKER" ]; then echo second; exit 0; fi; touch "$MARKER"; echo first; exit 1`
	rep, err := Run(context.Background(), []Check{{
		Name: "flaky", Command: []string{"/bin/sh", "-c", script}, Env: []string{"MARKER=" + marker},
		Retries: 3, RetryDelay: 20 * time.Millisecond, Timeout: 5 * time.Second,
	}}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	r := rep.Results[0]
	if !rep.Healthy || !r.OK || r.Attempts != 2 || r.Output != "second\n" {
		t.Errorf("report = %+v", rep)
	}
	if r.Duration < 20*time.Millisecond {
		t.Errorf("Duration %v does not include the retry delay", r.Duration)
	}
}

func TestRealOutputBounded(t *testing.T) {
	needSh(t)
	script := `i=0; while [ $i -lt 3000 ]; do echo "line $i"; i=$((i+1)); done; echo END >&2`
	rep, err := Run(context.Background(), []Check{{Name: "loud", Command: []string{"/bin/sh", "-c", script}}}, Options{OutputLimit: 100})
	if err != nil {
		t.Fatal(err)
	}
	r := rep.Results[0]
	if !r.OK || len(r.Output) > 100 || !r.OutputTruncated || !strings.HasSuffix(r.Output, "line 2999\nEND\n") {
		t.Errorf("len %d truncated %v output %q", len(r.Output), r.OutputTruncated, r.Output)
	}
	// Default limit is 4 KiB.
	rep, _ = Run(context.Background(), []Check{{Name: "loud", Command: []string{"/bin/sh", "-c", script}}}, Options{})
	if n := len(rep.Results[0].Output); n != DefaultOutputLimit {
		t.Errorf("default limit kept %d bytes", n)
	}
}

func TestRealContextCancel(t *testing.T) {
	needSh(t)
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
	defer cancel()
	start := time.Now()
	rep, err := Run(ctx, []Check{
		{Name: "slow", Command: []string{"/bin/sh", "-c", "sleep 5"}, Timeout: 10 * time.Second},
		{Name: "after", Command: []string{"/bin/true"}},
	}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el > 3*time.Second {
		t.Fatalf("cancellation took %v", el)
	}
	if rep.Healthy || !rep.Interrupted || rep.Results[0].TimedOut || !rep.Results[1].Skipped {
		t.Errorf("report = %+v", rep)
	}
	if ctx.Err() != context.DeadlineExceeded {
		t.Errorf("ctx.Err() = %v", ctx.Err())
	}
}
