package health

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeExec answers attempts from a script keyed by argv[0].
type fakeExec struct {
	mu    sync.Mutex
	calls []Attempt
	// answer returns exit code, error, and whether to block until ctx is done.
	answer func(call int, a Attempt) (code int, err error, block bool)
}

func (f *fakeExec) exec(ctx context.Context, a Attempt) (int, error) {
	f.mu.Lock()
	n := len(f.calls)
	f.calls = append(f.calls, a)
	f.mu.Unlock()
	code, err, block := f.answer(n, a)
	if block {
		<-ctx.Done()
		return -1, nil
	}
	return code, err
}

func TestValidate(t *testing.T) {
	ok := Check{Name: "a", Command: []string{"/bin/true"}}
	cases := []struct {
		name   string
		checks []Check
		want   error
	}{
		{"no name", []Check{{Command: []string{"x"}}}, ErrNoName},
		{"no command", []Check{{Name: "a"}}, ErrNoCommand},
		{"empty argv0", []Check{{Name: "a", Command: []string{""}}}, ErrNoCommand},
		{"duplicate", []Check{ok, ok}, ErrDuplicateName},
		{"neg timeout", []Check{{Name: "a", Command: []string{"x"}, Timeout: -1}}, ErrInvalid},
		{"neg retries", []Check{{Name: "a", Command: []string{"x"}, Retries: -1}}, ErrInvalid},
		{"neg delay", []Check{{Name: "a", Command: []string{"x"}, RetryDelay: -1}}, ErrInvalid},
	}
	for _, tc := range cases {
		err := Validate(tc.checks)
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: Validate = %v, want %v", tc.name, err, tc.want)
		}
		f := &fakeExec{answer: func(int, Attempt) (int, error, bool) { return 0, nil, false }}
		if _, err := Run(context.Background(), tc.checks, Options{Exec: f.exec}); !errors.Is(err, tc.want) {
			t.Errorf("%s: Run = %v, want %v", tc.name, err, tc.want)
		}
		if len(f.calls) != 0 {
			t.Errorf("%s: Run ran %d commands despite misconfiguration", tc.name, len(f.calls))
		}
	}
	if err := Validate([]Check{ok}); err != nil {
		t.Errorf("Validate(valid) = %v", err)
	}
	if _, err := Run(context.Background(), nil, Options{OutputLimit: -1}); !errors.Is(err, ErrInvalid) {
		t.Errorf("Run with negative OutputLimit = %v, want ErrInvalid", err)
	}
}

func TestRunEmptyIsHealthy(t *testing.T) {
	rep, err := Run(context.Background(), nil, Options{})
	if err != nil || !rep.Healthy || len(rep.Results) != 0 {
		t.Fatalf("Run(nil) = %+v, %v", rep, err)
	}
}

func TestRunOrderContinueAndStop(t *testing.T) {
	checks := []Check{
		{Name: "one", Command: []string{"one"}},
		{Name: "two", Command: []string{"two"}},
		{Name: "three", Command: []string{"three"}},
	}
	answer := func(_ int, a Attempt) (int, error, bool) {
		if a.Argv[0] == "two" {
			fmt.Fprint(a.Output, "two failed")
			return 3, nil, false
		}
		return 0, nil, false
	}
	f := &fakeExec{answer: answer}
	rep, err := Run(context.Background(), checks, Options{Exec: f.exec})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Healthy || rep.Interrupted || len(rep.Results) != 3 {
		t.Fatalf("report = %+v", rep)
	}
	var order []string
	for _, c := range f.calls {
		order = append(order, c.Argv[0])
	}
	if got := strings.Join(order, ","); got != "one,two,three" {
		t.Errorf("order = %s", got)
	}
	two := rep.Results[1]
	if two.OK || two.ExitCode != 3 || two.Output != "two failed" || two.Attempts != 1 {
		t.Errorf("two = %+v", two)
	}
	if !rep.Results[0].OK || !rep.Results[2].OK {
		t.Errorf("one/three not OK: %+v", rep.Results)
	}

	f = &fakeExec{answer: answer}
	rep, _ = Run(context.Background(), checks, Options{Exec: f.exec, StopOnFailure: true})
	if len(f.calls) != 2 || !rep.Results[2].Skipped || rep.Results[2].Attempts != 0 || rep.Healthy || rep.Interrupted {
		t.Errorf("StopOnFailure: calls=%d report=%+v", len(f.calls), rep)
	}
}

func TestRunRetriesAndEnv(t *testing.T) {
	f := &fakeExec{answer: func(n int, a Attempt) (int, error, bool) {
		if n < 2 {
			return 1, nil, false
		}
		return 0, nil, false
	}}
	checks := []Check{{Name: "r", Command: []string{"r"}, Retries: 5, RetryDelay: time.Millisecond, Env: []string{"B=2", "A=3"}}}
	rep, err := Run(context.Background(), checks, Options{Exec: f.exec, BaseEnv: []string{"A=1"}})
	if err != nil {
		t.Fatal(err)
	}
	if r := rep.Results[0]; !rep.Healthy || !r.OK || r.Attempts != 3 || r.ExitCode != 0 {
		t.Errorf("report = %+v", rep)
	}
	if got := strings.Join(f.calls[0].Env, " "); got != "A=1 B=2 A=3" {
		t.Errorf("env = %q", got)
	}

	// Exhausted retries: the last attempt's outcome is reported.
	f = &fakeExec{answer: func(n int, a Attempt) (int, error, bool) { return 10 + n, nil, false }}
	checks[0].Retries = 2
	rep, _ = Run(context.Background(), checks, Options{Exec: f.exec})
	if r := rep.Results[0]; rep.Healthy || r.Attempts != 3 || r.ExitCode != 12 {
		t.Errorf("report = %+v", rep)
	}
}

func TestRunStartErrorIsFailureNotError(t *testing.T) {
	f := &fakeExec{answer: func(int, Attempt) (int, error, bool) { return -1, errors.New("no such file"), false }}
	rep, err := Run(context.Background(), []Check{{Name: "x", Command: []string{"x"}}}, Options{Exec: f.exec})
	if err != nil {
		t.Fatal(err)
	}
	if r := rep.Results[0]; rep.Healthy || r.OK || !strings.Contains(r.Error, "no such file") {
		t.Errorf("report = %+v", rep)
	}
}

// stepClock advances by step on every Now and fires After immediately.
type stepClock struct {
	mu   sync.Mutex
	now  time.Time
	step time.Duration
	// never makes After never fire.
	never bool
}

func (c *stepClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(c.step)
	return c.now
}

func (c *stepClock) After(time.Duration) <-chan time.Time {
	ch := make(chan time.Time, 1)
	if !c.never {
		ch <- time.Time{}
	}
	return ch
}

func TestRunTimeoutWithFakeClock(t *testing.T) {
	// The fake clock's After fires at once, so a blocking attempt times out.
	f := &fakeExec{answer: func(int, Attempt) (int, error, bool) { return 0, nil, true }}
	clk := &stepClock{step: time.Second}
	rep, err := Run(context.Background(), []Check{{Name: "hang", Command: []string{"hang"}, Retries: 1}}, Options{Exec: f.exec, Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	r := rep.Results[0]
	if rep.Healthy || rep.Interrupted || !r.TimedOut || r.OK || r.Attempts != 2 || r.ExitCode != -1 {
		t.Errorf("report = %+v", rep)
	}
	if r.Duration != time.Second {
		t.Errorf("Duration = %v, want 1s from the fake clock", r.Duration)
	}
}

func TestRunContextCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	f := &fakeExec{answer: func(n int, a Attempt) (int, error, bool) {
		if n == 0 {
			cancel()
			return 0, nil, true
		}
		return 0, nil, false
	}}
	checks := []Check{{Name: "a", Command: []string{"a"}, Retries: 3}, {Name: "b", Command: []string{"b"}}}
	rep, err := Run(ctx, checks, Options{Exec: f.exec, Clock: &stepClock{never: true}})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Healthy || !rep.Interrupted || len(f.calls) != 1 {
		t.Fatalf("report = %+v, calls %d", rep, len(f.calls))
	}
	if a := rep.Results[0]; a.TimedOut || a.OK || a.Attempts != 1 || !strings.Contains(a.Error, "interrupted") {
		t.Errorf("a = %+v", a)
	}
	if b := rep.Results[1]; !b.Skipped {
		t.Errorf("b = %+v", b)
	}
}

func TestTail(t *testing.T) {
	tl := newTail(8)
	fmt.Fprint(tl, "abc")
	if tl.String() != "abc" || tl.Truncated() {
		t.Fatalf("tail = %q %v", tl.String(), tl.Truncated())
	}
	fmt.Fprint(tl, "defghij")
	if tl.String() != "cdefghij" || !tl.Truncated() {
		t.Fatalf("tail = %q %v", tl.String(), tl.Truncated())
	}
	fmt.Fprint(tl, strings.Repeat("x", 100)+"12345678")
	if tl.String() != "12345678" {
		t.Fatalf("tail = %q", tl.String())
	}
	exact := newTail(4)
	fmt.Fprint(exact, "abcd")
	if exact.String() != "abcd" || exact.Truncated() {
		t.Fatalf("exact = %q %v", exact.String(), exact.Truncated())
	}
	// A rune cut by truncation is replaced, not passed on as invalid UTF-8.
	u := newTail(4)
	fmt.Fprint(u, "zé123")
	if u.String() != "\uFFFD123" {
		t.Fatalf("utf8 tail = %q", u.String())
	}
}
