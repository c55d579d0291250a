package hub

import (
	"bytes"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aduflash/aduflash/image"
	"github.com/aduflash/aduflash/image/imagetest"
	"github.com/aduflash/aduflash/manifestgen"
)

// aduimg returns an aduimg image signed for version 1.0, slot class rootfs and model.
func aduimg(t *testing.T, model string) []byte {
	t.Helper()
	key, err := image.GenerateKey(image.Ed25519, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p := payload(5000, 3)
	var out imagetest.Buffer
	if _, _, err := image.Sign(&out, bytes.NewReader(p), int64(len(p)), key, image.SignOptions{
		Version: "1.0", SlotClass: "rootfs", Compatibility: map[string]string{"manufacturer": "contoso", "model": model}}); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// An image signed for other devices than the manifest's is refused at import, not on the
// device (32000003), and leaves no file behind.
func TestImportChecksImageSteps(t *testing.T) {
	dir := t.TempDir()
	e := startEnv(t, dir)
	im, files := buildImport(t, "1.0", nil, aduimg(t, "blender"))
	_, err := e.svc.Import(im, files)
	if !errors.Is(err, manifestgen.ErrInvalid) || !strings.Contains(err.Error(), "$.compatibility[0]: model=toaster, but fw-1.0-0.bin is signed for model=blender") {
		t.Fatalf("Import of a blender image for toasters: %v", err)
	}
	if ents, _ := os.ReadDir(filepath.Join(dir, "files")); len(ents) != 0 {
		t.Errorf("files left behind: %v", ents)
	}
	im, files = buildImport(t, "1.0", nil, aduimg(t, "toaster"))
	if _, err := e.svc.Import(im, files); err != nil {
		t.Fatalf("Import of a toaster image for toasters: %v", err)
	}
}
