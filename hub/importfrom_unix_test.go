//go:build unix

package hub

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// ImportFrom reads only regular files inside its folder: a FIFO, a device, a folder, a path
// that leaves the folder (.., absolute, a symbolic link out) are refused without reading,
// and the refusals say nothing about what lies outside.
func TestImportFromConfined(t *testing.T) {
	e := startEnv(t, t.TempDir())
	im, files := buildImport(t, "1.0", nil, payload(4096, 1))
	name := "fw-1.0-0.bin"
	dir := filepath.Dir(files[name])
	root, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()

	if err := syscall.Mkfifo(filepath.Join(dir, "fifo"), 0o600); err != nil {
		t.Fatal(err)
	}
	os.Mkdir(filepath.Join(dir, "sub"), 0o700)
	outside := t.TempDir()
	secret := filepath.Join(outside, "secret")
	os.WriteFile(secret, payload(4096, 1), 0o600) // the right bytes, but outside
	for link, target := range map[string]string{"zero": "/dev/zero", "out": secret, "nothing": filepath.Join(outside, "nope"), "up": "../" + filepath.Base(outside) + "/secret"} {
		if err := os.Symlink(target, filepath.Join(dir, link)); err != nil {
			t.Fatal(err)
		}
	}

	for path, want := range map[string]error{"fifo": ErrNotRegular, "sub": ErrNotRegular} {
		if _, err := e.svc.ImportFrom(im, root, map[string]string{name: path}); !errors.Is(err, want) || !errors.Is(err, ErrImportFiles) {
			t.Errorf("%s: %v, want %v", path, err, want)
		}
	}
	// Out of the folder: the same answer whether the target exists or not.
	msgs := map[string]bool{}
	for _, path := range []string{"out", "nothing", "zero", "up", "../" + filepath.Base(outside) + "/secret", secret, "/dev/zero"} {
		_, err := e.svc.ImportFrom(im, root, map[string]string{name: path})
		if !errors.Is(err, ErrImportFiles) || strings.Contains(err.Error(), "no such file") {
			t.Errorf("%s: %v", path, err)
			continue
		}
		msgs[strings.ReplaceAll(err.Error(), path, "PATH")] = true
	}
	if len(msgs) != 1 {
		t.Errorf("the refusals differ by what lies outside: %v", msgs)
	}
	// Trusted paths (Import) are still only regular files.
	if _, err := e.svc.Import(im, map[string]string{name: "/dev/zero"}); !errors.Is(err, ErrNotRegular) {
		t.Errorf("Import of /dev/zero: %v", err)
	}
	if _, err := e.svc.Import(im, map[string]string{name: filepath.Join(dir, "fifo")}); !errors.Is(err, ErrNotRegular) {
		t.Errorf("Import of a FIFO: %v", err)
	}
	if len(e.svc.Updates()) != 0 {
		t.Fatal("imported from a refused file")
	}
	// The file itself, by its path in the folder.
	if _, err := e.svc.ImportFrom(im, root, map[string]string{name: name}); err != nil {
		t.Fatal(err)
	}
}
