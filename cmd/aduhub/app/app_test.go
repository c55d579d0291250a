package app

import (
	"io"
	"testing"

	"github.com/aduflash/aduflash/cmd/internal/clitest"
)

// TestProgram: demo, serve, device add|renew-key|list|remove, import, deploy, cancel, retry,
// status; --version; --help goldens.
func TestProgram(t *testing.T) { clitest.Program(t, Run, New(io.Discard, io.Discard), 18) }

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
