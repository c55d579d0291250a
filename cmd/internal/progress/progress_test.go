package progress

import (
	"bytes"
	"io"
	"strings"
	"testing"
)

func TestSilent(t *testing.T) {
	b := New(nil, 10, "x")
	b.Add(10)
	b.Finish()
	var nb *Bar
	nb.Add(1)
	nb.Finish()
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

// Off a terminal, a bar prints plain lines, with its detail, and its Reader counts.
func TestPlainOffTerminal(t *testing.T) {
	var out bytes.Buffer
	b := New(&out, 1000, "sign")
	b.SetDetail(func() string { return "from somewhere" })
	if _, err := io.Copy(io.Discard, b.Reader(io.LimitReader(strings.NewReader(strings.Repeat("x", 2000)), 1000))); err != nil {
		t.Fatal(err)
	}
	b.Finish()
	if got := out.String(); !strings.HasPrefix(got, "sign: done, 1000 B in ") || !strings.HasSuffix(got, "; from somewhere\n") {
		t.Errorf("got %q", got)
	}
}
