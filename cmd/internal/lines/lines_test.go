package lines

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"time"
)

func TestPlainLines(t *testing.T) {
	var out bytes.Buffer
	b := New(&out, 1000, "sign")
	t0 := b.start
	b.now = func() time.Time { return t0.Add(2 * time.Second) }
	if _, err := io.Copy(io.Discard, io.TeeReader(io.LimitReader(zeros{}, 1000), adder{b})); err != nil {
		t.Fatal(err)
	}
	b.End(nil)
	b.End(nil) // idempotent
	got := out.String()
	lines := strings.Split(strings.TrimSpace(got), "\n")
	// 10 % … 90 % and the summary; io.Copy reads in one go, so at least the summary and one step.
	if !strings.Contains(got, "sign: done, 1000 B in 2s, 500 B/s") {
		t.Fatalf("summary missing:\n%s", got)
	}
	if strings.Count(got, "done") != 1 {
		t.Fatalf("summary printed more than once:\n%s", got)
	}
	for _, l := range lines[:len(lines)-1] {
		if !strings.HasPrefix(l, "sign: ") || !strings.Contains(l, "%") {
			t.Errorf("unexpected line %q", l)
		}
	}
}

// A failed operation gets no "done" summary.
func TestPlainEndAfterFailure(t *testing.T) {
	var out bytes.Buffer
	b := New(&out, 1000, "verify")
	b.Add(500)
	b.End(errors.New("chunk 3: hash mismatch"))
	b.End(nil) // already ended
	if got := out.String(); strings.Contains(got, "done") || !strings.Contains(got, "verify: 50%") {
		t.Fatalf("after a failure:\n%s", got)
	}
}

func TestPlainStepsEveryTenPercent(t *testing.T) {
	var out bytes.Buffer
	b := New(&out, 100, "w")
	for i := 0; i < 100; i++ {
		b.Add(1)
	}
	if n := strings.Count(out.String(), "%"); n != 9 {
		t.Fatalf("want 9 progress lines (10..90 %%), got %d:\n%s", n, out.String())
	}
}

func TestSize(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 1536: "1.5 KiB", 1 << 30: "1.0 GiB", 5 << 40: "5.0 TiB"} {
		if got := Size(n); got != want {
			t.Errorf("Size(%d) = %q, want %q", n, got, want)
		}
	}
}

// An install's stages get a bar each; an adaptive install's write also says what it fetched
// and what it reused, and the read-back does not.
func TestStagesAdaptive(t *testing.T) {
	var out bytes.Buffer
	s := NewStages(func(total int64, label string) Bar { return New(&out, total, label) }, false)
	s.Stage("write", 100)
	s.Fetched(2048)
	s.Reused(60 << 10)
	s.Add(50)
	s.Fetched(1024)
	s.Add(50)
	s.Stage("verify", 100)
	s.Add(50)
	s.Add(50)
	s.End(nil)
	got := out.String()
	for _, want := range []string{
		"write: 50% (50 B of 100 B; fetched 2.0 KiB, reused 60.0 KiB)\n",
		"; fetched 3.0 KiB, reused 60.0 KiB\n", // the write's summary
		"verify: 50% (50 B of 100 B)\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("no %q in:\n%s", want, got)
		}
	}
	if strings.Count(got, "fetched") != 2 {
		t.Errorf("fetched shown on other lines than the write's two:\n%s", got)
	}
}

// A plain install's bars say nothing of fetching; a dry run's are named check.
func TestStagesPlain(t *testing.T) {
	var out bytes.Buffer
	s := NewStages(func(total int64, label string) Bar { return New(&out, total, label) }, true)
	s.Stage("write", 10)
	s.Add(10)
	s.End(nil)
	if got := out.String(); strings.Contains(got, "fetched") || !strings.HasPrefix(got, "check: ") {
		t.Errorf("got:\n%s", got)
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// adder counts what is written to it into a Counter.
type adder struct{ c *Counter }

func (a adder) Write(p []byte) (int, error) {
	a.c.Add(int64(len(p)))
	return len(p), nil
}
