package app

import (
	"context"
	"io"
	"path/filepath"
	"testing"

	"github.com/aduflash/aduflash/cmd/internal/clitest"
	"github.com/aduflash/aduflash/cmd/internal/exitcode"
)

// run drives aduimport in-process the way main does.
func run(t *testing.T, args ...string) (code int, stdout, stderr string) {
	return clitest.Run(context.Background(), Run, "aduimport", args...)
}

// golden compares got with testdata/NAME, or rewrites it under go test -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	clitest.Golden(t, filepath.Join("testdata", name), got)
}

// TestProgram: keygen, sign, verify, inspect, index, mcuboot and manifest with their subcommands,
// check-fit; --version; --help goldens.
func TestProgram(t *testing.T) { clitest.Program(t, Run, New(io.Discard, io.Discard), 14) }

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
