package app

import (
	"bytes"
	"context"
	"flag"
	"path/filepath"
	"testing"

	"github.com/aduflash/aduflash/cmd/internal/clitest"
	"github.com/aduflash/aduflash/cmd/internal/exitcode"
)

var update = flag.Bool("update", false, "rewrite golden files under testdata/")

// run drives aduimport in-process the way main does.
func run(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var o, e bytes.Buffer
	code = Run(context.Background(), append([]string{"aduimport"}, args...), &o, &e)
	return code, o.String(), e.String()
}

// golden compares got with testdata/NAME, or rewrites it under -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	clitest.Golden(t, filepath.Join("testdata", name), got, *update)
}

func TestHelpGolden(t *testing.T) {
	a := New(&bytes.Buffer{}, &bytes.Buffer{})
	if len(clitest.CommandPaths(nil, a.Commands)) < 7 {
		t.Fatal("command tree looks truncated")
	}
	clitest.HelpGolden(t, a, func(args ...string) (int, string, string) { return run(t, args...) }, *update)
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{},
		{"no-such-command"},
		{"keygen", "--no-such-flag"},
		{"keygen"},                             // missing -o
		{"keygen", "-o", "x.pem", "extra"},     // stray argument
		{"keygen", "-t", "dsa", "-o", "x.pem"}, // unknown key type
	} {
		code, _, _ := run(t, args...)
		if code != exitcode.Usage {
			t.Errorf("aduimport %q: exit %d, want %d", args, code, exitcode.Usage)
		}
	}
}
