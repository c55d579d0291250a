package publish

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aduflash/aduflash/internal/publishtest"
	"github.com/aduflash/aduflash/manifestgen"
)

func TestCheckAcceptsTheManifestsFiles(t *testing.T) {
	dir := t.TempDir()
	w := publishtest.Write(t, dir, "1.0", publishtest.Payload{Name: "a.bin", Data: []byte("aaaa")}, publishtest.Payload{Name: "b.bin", Size: 5000, Seed: 2})
	u, err := Check(context.Background(), w.Manifest, w.Files, nil)
	if err != nil {
		t.Fatal(err)
	}
	if u.ID != w.ID || len(u.Files) != 2 || u.Files[1].Size != 5000 || len(u.Files[0].MD5) != 16 || u.Manifest.Name != filepath.Base(w.Manifest) {
		t.Fatalf("checked %+v", u)
	}
}

// Each way the files can disagree with the manifest is refused with ErrFiles before
// anything is sent (Check is the first step of Publish), naming the file.
func TestCheckRefusesFilesThatDoNotMatch(t *testing.T) {
	dir := t.TempDir()
	w := publishtest.Write(t, dir, "1.0", publishtest.Payload{Name: "a.bin", Data: []byte("aaaa")}, publishtest.Payload{Name: "b.bin", Data: []byte("bbbb")})
	other := filepath.Join(t.TempDir(), "b.bin")
	if err := os.WriteFile(other, []byte("bbbB"), 0o644); err != nil { // same size, other bytes
		t.Fatal(err)
	}
	longer := filepath.Join(t.TempDir(), "b.bin")
	if err := os.WriteFile(longer, []byte("bbbbb"), 0o644); err != nil {
		t.Fatal(err)
	}
	extra := filepath.Join(dir, "c.bin")
	if err := os.WriteFile(extra, []byte("c"), 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name  string
		files []string
		want  string
	}{
		{"hash", []string{w.Files[0], other}, "SHA-256"},
		{"size", []string{w.Files[0], longer}, "5 bytes, the import manifest says 4"},
		{"missing", []string{w.Files[0]}, "b.bin: named in the import manifest, not given"},
		{"extra", append([]string{extra}, w.Files...), "c.bin: not in the import manifest"},
		{"twice", []string{w.Files[0], w.Files[1], other}, "have the same name"},
	}
	for _, c := range cases {
		_, err := Check(context.Background(), w.Manifest, c.files, nil)
		if !errors.Is(err, ErrFiles) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want ErrFiles saying %q", c.name, err, c.want)
		}
	}
}

func TestCheckRefusesAnInvalidManifest(t *testing.T) {
	dir := t.TempDir()
	w := publishtest.Write(t, dir, "1.0", publishtest.Payload{Name: "a.bin", Data: []byte("aaaa")})
	data, _ := os.ReadFile(w.Manifest)
	bad := strings.Replace(string(data), `"version": "1.0"`, `"version": "1"`, 1)
	if err := os.WriteFile(w.Manifest, []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Check(context.Background(), w.Manifest, w.Files, nil)
	if !errors.Is(err, manifestgen.ErrInvalid) || !strings.Contains(err.Error(), "$.updateId.version") {
		t.Fatalf("%v, want the validator's violation", err)
	}
}
