package app

import (
	"bytes"
	"context"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"

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
	path := filepath.Join("testdata", name)
	if *update {
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

// commandPaths lists every command of the tree as its words, e.g. ["mcuboot", "sign"].
func commandPaths(prefix []string, cmds []*cli.Command) [][]string {
	var out [][]string
	for _, c := range cmds {
		if c.Hidden {
			continue
		}
		p := append(append([]string{}, prefix...), c.Name)
		out = append(out, p)
		out = append(out, commandPaths(p, c.Subcommands)...)
	}
	return out
}

// Every command answers --help with exit 0, shows an example, and matches its golden file.
func TestHelpGolden(t *testing.T) {
	a := New(&bytes.Buffer{}, &bytes.Buffer{})
	paths := append([][]string{nil}, commandPaths(nil, a.Commands)...)
	if len(paths) < 7 {
		t.Fatalf("command tree looks truncated: %v", paths)
	}
	for _, p := range paths {
		name := "aduimport"
		if len(p) > 0 {
			name += "_" + strings.Join(p, "_")
		}
		t.Run(name, func(t *testing.T) {
			code, out, errOut := run(t, append(append([]string{}, p...), "--help")...)
			if code != 0 {
				t.Fatalf("exit %d, stderr %q", code, errOut)
			}
			if !strings.Contains(out, "EXAMPLE") {
				t.Errorf("help of %q shows no example:\n%s", name, out)
			}
			golden(t, filepath.Join("help", name+".golden"), out)
		})
	}
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
