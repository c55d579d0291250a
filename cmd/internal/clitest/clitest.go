// Package clitest is what the CLIs' tests share: golden files, and a check that every command
// of a tree answers --help with an example that matches its golden file.
package clitest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"
)

// Golden compares got with the file at path, or rewrites the file when update is set.
func Golden(t testing.TB, path, got string, update bool) {
	t.Helper()
	if update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs from the golden file (go test -update rewrites it)\n--- got:\n%s\n--- want:\n%s", path, got, want)
	}
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

// Runner runs a binary's command line in-process and returns its exit code and output.
type Runner func(args ...string) (code int, stdout, stderr string)

// HelpGolden checks that the program and every command of app answer --help with exit 0,
// show an EXAMPLE, and match testdata/help/<program>[_<command>...].golden.
func HelpGolden(t *testing.T, app *cli.App, run Runner, update bool) {
	paths := append([][]string{nil}, CommandPaths(nil, app.Commands)...)
	for _, p := range paths {
		name := strings.Join(append([]string{app.Name}, p...), "_")
		t.Run(name, func(t *testing.T) {
			code, out, errOut := run(append(append([]string{}, p...), "--help")...)
			if code != 0 {
				t.Fatalf("exit %d, stderr %q", code, errOut)
			}
			if !strings.Contains(out, "EXAMPLE") {
				t.Errorf("help of %q shows no example:\n%s", name, out)
			}
			Golden(t, filepath.Join("testdata", "help", name+".golden"), out, update)
		})
	}
}
