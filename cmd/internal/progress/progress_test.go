package progress

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
	if _, err := io.Copy(io.Discard, b.Reader(io.LimitReader(zeros{}, 1000))); err != nil {
		t.Fatal(err)
	}
	b.Finish()
	b.Finish() // idempotent
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
	b.Finish() // already ended
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

func TestSilent(t *testing.T) {
	b := New(nil, 10, "x")
	b.Add(10)
	b.Finish()
	var nb *Bar
	nb.Add(1)
	nb.Finish()
}

func TestSize(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 1536: "1.5 KiB", 1 << 30: "1.0 GiB", 5 << 40: "5.0 TiB"} {
		if got := Size(n); got != want {
			t.Errorf("Size(%d) = %q, want %q", n, got, want)
		}
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

func TestOutput(t *testing.T) {
	var buf bytes.Buffer
	if Output(&buf, false) != io.Writer(&buf) {
		t.Error("without --json progress goes to stderr")
	}
	if Output(&buf, true) != nil {
		t.Error("with --json and no terminal, no progress")
	}
}
