package app

import (
	"bytes"
	"flag"
	"strings"
	"testing"

	"github.com/aduflash/aduflash/cmd/internal/clitest"
)

var updateGolden = flag.Bool("update", false, "rewrite golden files under testdata/")

func TestHelpGolden(t *testing.T) {
	a := New(&bytes.Buffer{}, &bytes.Buffer{})
	if n := len(clitest.CommandPaths(nil, a.Commands)); n != 12 {
		t.Fatalf("command tree changed (%d commands): demo, serve, device add|renew-key|list|remove, import, deploy, cancel, retry, status expected", n)
	}
	clitest.HelpGolden(t, a, func(args ...string) (int, string, string) { return runHub(t, args...) }, *updateGolden)
}

func TestVersion(t *testing.T) {
	code, out, _ := runHub(t, "--version")
	if code != 0 || !strings.Contains(out, "dev") {
		t.Fatalf("exit %d, %q", code, out)
	}
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"nosuch"},
		{"device"},
		{"device", "nosuch"},
		{"device", "add"},
		{"device", "add", "a", "b"},
		{"device", "list", "extra"},
		{"import", "--manifest", "m.json"},
		{"deploy"},
		{"deploy", "--update", "a/b/c", "extra"},
		{"cancel"},
		{"retry", "a", "b"},
		{"status", "a", "b"},
		{"serve", "extra"},
		{"serve", "--nosuch"},
		{"serve", "--file-url", "ftp://cache.example.com/adu"},
		{"serve", "--file-url", "http://cache.example.com/adu?x=1"},
	} {
		if code, _, e := runHub(t, args...); code != 2 {
			t.Errorf("%v: exit %d, %q", args, code, e)
		}
	}
}
