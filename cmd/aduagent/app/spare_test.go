package app

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// install fills bank B's slots of the other classes from bank A's: --dry-run tells what it
// would copy (or that the slot holds it already) and writes nothing, install copies.
func TestInstallCopiesTheOtherClasses(t *testing.T) {
	fx := newAgentFixture(t, "")
	kernelA, kernelB := filepath.Join(fx.dir, "kernel_a.img"), filepath.Join(fx.dir, "kernel_b.img")
	kernel := bytes.Repeat([]byte("kernel 6.6 "), 30000)
	mustWrite(t, kernelA, kernel)
	b, _ := os.ReadFile(fx.cfg)
	slotsDoc := "[[slots.slot]]\nclass = \"kernel\"\nbank = \"A\"\ntype = \"file\"\npath = \"" + filepath.ToSlash(kernelA) + "\"\n" +
		"[[slots.slot]]\nclass = \"kernel\"\nbank = \"B\"\ntype = \"file\"\npath = \"" + filepath.ToSlash(kernelB) + "\"\n\n[bootloader]"
	mustWrite(t, fx.cfg, []byte(strings.Replace(string(b), "\n[bootloader]", slotsDoc, 1)))

	// Bank B's kernel is bank A's already: nothing to write.
	mustWrite(t, kernelB, kernel)
	code, out, errOut := fx.run(t, "install", "--dry-run", "--json", "--class", "rootfs", fx.img)
	var res installResult
	if code != 0 || json.Unmarshal([]byte(out), &res) != nil || len(res.Copies) != 1 || !res.Copies[0].Identical || res.Copies[0].Bytes != 330000 {
		t.Fatalf("dry run, kernel in place: exit %d, %s\n%s", code, errOut, out)
	}
	// An older kernel in bank B: the dry run says it would copy, and writes nothing.
	old := bytes.Repeat([]byte("kernel 5.1 "), 20000)
	mustWrite(t, kernelB, old)
	code, out, errOut = fx.run(t, "install", "--dry-run", "--class", "rootfs", fx.img)
	want := "copy:    kernel-a → kernel-b (class kernel, not in the file): 330000 bytes would be copied"
	if code != 0 || !strings.Contains(out, want) {
		t.Fatalf("dry run: exit %d, %s\n%s\nwant %q", code, errOut, out, want)
	}
	if got, _ := os.ReadFile(kernelB); !bytes.Equal(got, old) {
		t.Fatal("the dry run wrote kernel B")
	}
	code, out, errOut = fx.run(t, "install", "--no-reboot", "--class", "rootfs", fx.img)
	if code != 0 || !strings.Contains(out, "330000 bytes copied") {
		t.Fatalf("install: exit %d, %s\n%s", code, errOut, out)
	}
	if got, _ := os.ReadFile(kernelB); !bytes.Equal(got[:len(kernel)], kernel) {
		t.Fatal("kernel B is not kernel A")
	}
}
