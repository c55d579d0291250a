// Package clitest is what the CLIs' tests share: running a binary's entry point in-process,
// golden files (rewritten under go test -update), and a check of a whole command tree:
// --version, and --help of every command with an example that matches its golden file.
package clitest

import (
	"bytes"
	"context"
	"io"
	"path/filepath"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"

	"github.com/aduflash/aduflash/cmd/internal/cliapp"
	"github.com/aduflash/aduflash/internal/golden"
)

// Golden compares got with the golden file at path, or rewrites it under go test -update
// (golden.Check).
func Golden(t testing.TB, path, got string) { golden.Check(t, path, got) }

// Main is a binary's testable entry point: its app.Run.
type Main func(ctx context.Context, args []string, stdout, stderr io.Writer) int

// Run runs main in-process as program with args, the way the binary's main does, and returns
// the exit code and what it wrote.
func Run(ctx context.Context, main Main, program string, args ...string) (code int, stdout, stderr string) {
	var o, e bytes.Buffer
	code = main(ctx, append([]string{program}, args...), &o, &e)
	return code, o.String(), e.String()
}

// CommandPaths lists every visible command of a tree as its words, e.g. ["env", "set"].
func CommandPaths(prefix []string, cmds []*cli.Command) [][]string {
	var out [][]string
	for _, c := range cmds {
		if c.Hidden {
			continue
		}
		p := append(append([]string{}, prefix...), c.Name)
		out = append(out, p)
		out = append(out, CommandPaths(p, c.Subcommands)...)
	}
	return out
}

// Program checks the command tree app of the binary whose entry point is main: it has
// commands visible commands (subcommands count), it answers --version with cliapp.Version,
// and the program and every command answer --help with exit 0, show an EXAMPLE, and match
// testdata/help/<program>[_<command>...].golden.
func Program(t *testing.T, main Main, app *cli.App, commands int) {
	paths := append([][]string{nil}, CommandPaths(nil, app.Commands)...)
	if len(paths)-1 != commands {
		t.Fatalf("command tree changed: %d commands, want %d: %v", len(paths)-1, commands, paths[1:])
	}
	t.Run("version", func(t *testing.T) {
		code, out, errOut := Run(context.Background(), main, app.Name, "--version")
		if code != 0 || !strings.Contains(out, cliapp.Version) {
			t.Fatalf("--version: exit %d, %q, stderr %q; want version %q", code, out, errOut, cliapp.Version)
		}
	})
	for _, p := range paths {
		name := strings.Join(append([]string{app.Name}, p...), "_")
		t.Run(name, func(t *testing.T) {
			code, out, errOut := Run(context.Background(), main, app.Name, append(append([]string{}, p...), "--help")...)
			if code != 0 {
				t.Fatalf("exit %d, stderr %q", code, errOut)
			}
			if !strings.Contains(out, "EXAMPLE") {
				t.Errorf("help of %q shows no example:\n%s", name, out)
			}
			Golden(t, filepath.Join("testdata", "help", name+".golden"), out)
		})
	}
}
