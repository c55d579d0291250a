package grubenv

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aduflash/aduflash/internal/peers"
)

const grubEditenv = "/usr/bin/grub-editenv"

func editenv(t *testing.T, args ...string) string {
	t.Helper()
	if _, err := os.Stat(grubEditenv); err != nil {
		peers.Missing(t, "%s (apt-get install grub-common)", grubEditenv)
	}
	out, err := exec.Command(grubEditenv, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("grub-editenv %q: %v: %s", args, err, out)
	}
	return string(out)
}

var interopVars = []Var{
	{"plain", "value"},
	{"backslash", `a\b\\c\`},
	{"newline", "line1\nline2\n"},
	{"equals", "x=y=z"},
	{"empty", ""},
	{"mixed", "\\\n=\\n"},
	{"mender_boot_part", "2"},
}

// grub-editenv reads what we write.
func TestInteropEditenvReadsOurs(t *testing.T) {
	path := filepath.Join(t.TempDir(), "grubenv")
	e := New()
	for _, v := range interopVars {
		if err := e.Set(v.Name, v.Value); err != nil {
			t.Fatal(err)
		}
	}
	if err := WriteFile(path, e); err != nil {
		t.Fatal(err)
	}
	got := editenv(t, path, "list")
	var want strings.Builder
	for _, v := range interopVars {
		want.WriteString(v.Name + "=" + v.Value + "\n")
	}
	if got != want.String() {
		t.Fatalf("grub-editenv list:\n%q\nwant\n%q", got, want.String())
	}
	// And it can still edit it.
	editenv(t, path, "set", "plain=other")
	e2, err := ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := e2.Get("plain"); v != "other" {
		t.Fatalf("got %q", v)
	}
}

// We read what grub-editenv writes (create, set, unset).
func TestInteropWeReadEditenv(t *testing.T) {
	path := filepath.Join(t.TempDir(), "grubenv")
	editenv(t, path, "create")
	args := []string{path, "set"}
	for _, v := range interopVars {
		args = append(args, v.Name+"="+v.Value)
	}
	editenv(t, args...)
	editenv(t, path, "unset", "equals")
	editenv(t, path, "set", "plain=longer value than before")
	e, err := ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{}
	for _, v := range interopVars {
		want[v.Name] = v.Value
	}
	delete(want, "equals")
	want["plain"] = "longer value than before"
	got := map[string]string{}
	var names []string
	for _, v := range e.Vars() {
		got[v.Name] = v.Value
		names = append(names, v.Name)
	}
	if len(got) != len(want) {
		t.Fatalf("got %q want %q", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: got %q want %q", k, got[k], v)
		}
	}
	if len(names) == 0 || names[0] != "plain" {
		t.Errorf("order not kept: %q", names)
	}
	// Re-encoding what grub-editenv wrote gives its bytes back (comments included).
	raw, _ := os.ReadFile(path)
	if b, err := e.Encode(); err != nil || !bytes.Equal(b, raw) {
		t.Fatalf("re-encoding differs (%v):\n%q\n%q", err, b, raw)
	}
}

// The same edits through both tools give byte-identical files.
func TestInteropByteIdentical(t *testing.T) {
	dir := t.TempDir()
	theirs := filepath.Join(dir, "theirs")
	editenv(t, theirs, "create")
	base, err := os.ReadFile(theirs)
	if err != nil {
		t.Fatal(err)
	}
	ours := filepath.Join(dir, "ours")
	if err := os.WriteFile(ours, base, 0o644); err != nil {
		t.Fatal(err)
	}
	steps := [][]string{
		{"set", "a=1", "b=two\\", "c=x\ny"},
		{"set", "a=much longer than before"},
		{"unset", "b"},
		{"set", "d=", "b=back"},
		{"set", "a=s"},
	}
	for _, s := range steps {
		editenv(t, append([]string{theirs}, s...)...)
		err := Update(ours, func(e *Env) error {
			for _, a := range s[1:] {
				if s[0] == "unset" {
					e.Unset(a)
					continue
				}
				n, v, _ := strings.Cut(a, "=")
				if err := e.Set(n, v); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		a, _ := os.ReadFile(theirs)
		b, _ := os.ReadFile(ours)
		if !bytes.Equal(a, b) {
			t.Fatalf("after %q:\ngrub-editenv %q\nours         %q", s, a, b)
		}
	}
	// Upstream create (no comment) matches New().
	up := mustEncode(t, New())
	e, err := Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	var onlyVars = New()
	for _, v := range e.Vars() {
		onlyVars.Set(v.Name, v.Value)
	}
	if !bytes.Equal(mustEncode(t, onlyVars), up) {
		t.Fatal("empty blocks differ")
	}
}
