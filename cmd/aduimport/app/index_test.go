package app

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aduflash/aduflash/image/adaptive"
)

// aduimport index --base writes delta frames for the chunks that changed a little, and
// manifest create names the index and the store as the agent needs them without being told.
func TestIndexWithBaseAndManifest(t *testing.T) {
	dir, priv, pub, oldImg, payload := signed(t)
	raw, err := os.ReadFile(payload)
	if err != nil {
		t.Fatal(err)
	}
	for i := 1000; i < len(raw); i += 10 << 10 {
		raw[i] ^= 0x5a
	}
	newPayload, img := filepath.Join(dir, "new.img"), filepath.Join(dir, "rootfs-2.2.0.aduimg")
	if err := os.WriteFile(newPayload, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	if code, _, e := run(t, "sign", "--key", priv, "--version", "2.2.0", "--slot-class", "rootfs", "--compat", "manufacturer=contoso,model=toaster", "-o", img, newPayload); code != 0 {
		t.Fatalf("sign: %d %s", code, e)
	}
	code, out, e := run(t, "index", "--pub", pub, "--base", oldImg, img)
	if code != 0 || !strings.Contains(out, "rootfs-2.2.0.aduidx") {
		t.Fatalf("index: exit %d: %s %s", code, out, e)
	}
	b, err := os.ReadFile(filepath.Join(dir, "rootfs-2.2.0.aduidx"))
	if err != nil {
		t.Fatal(err)
	}
	x, err := adaptive.ParseIndex(b)
	if err != nil {
		t.Fatal(err)
	}
	deltas := 0
	for _, e := range x.Entries {
		if e.Delta != nil {
			deltas++
		}
	}
	if deltas == 0 {
		t.Fatalf("no delta frame among %d chunks", len(x.Entries))
	}
	if x.Base == nil || len(x.Base.At) == 0 || !strings.Contains(out, fmt.Sprintf("base map: %d distinct chunks", len(x.Base.At))) {
		t.Fatalf("the index maps no chunk of the base, or does not say how many: %s", out)
	}
	if code, _, e := run(t, "index", "--pub", pub, "--base", filepath.Join(dir, "k.pem"), img); code == 0 {
		t.Fatalf("a base that is no image was taken: %s", e)
	}

	code, out, e = run(t, "manifest", "create", "--provider", "Contoso", "--name", "Toaster", "--version", "2.2.0",
		"--compat", "manufacturer=contoso,model=toaster", "--step", "handler=aduflash/image:1", "--file", img,
		"--related-file", filepath.Join(dir, "rootfs-2.2.0.aduidx"), "--related-file", filepath.Join(dir, "rootfs-2.2.0.aduchunks"), "-o", "-")
	if code != 0 {
		t.Fatalf("manifest create: exit %d: %s", code, e)
	}
	for _, want := range []string{`"aduflash.adaptive": "index"`, `"aduflash.adaptive": "store"`, `"id": "aduflash/adaptive:1"`} {
		if !strings.Contains(out, want) {
			t.Errorf("the manifest lacks %s:\n%s", want, out)
		}
	}
}
