package app

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aduflash/aduflash/agent"
	"github.com/aduflash/aduflash/cmd/internal/exitcode"
)

// install --dry-run downloads and checks the image as install does and exits as it would,
// but writes nothing: no slot byte (the slot's file is not even created), no journal entry,
// no bootloader change, no reboot. A tampered image and a bank already pending are refused
// as install refuses them.
func TestInstallDryRun(t *testing.T) {
	fx := newAgentFixture(t, "")
	marker := fx.rebootMarker(t)
	tampered := filepath.Join(fx.dir, "tampered.aduimg")
	img, _ := os.ReadFile(fx.img)
	img[len(img)-1000] ^= 0x01
	mustWrite(t, tampered, img)
	slotB := filepath.Join(fx.dir, "rootfs_b.img")
	os.Remove(slotB)
	env := fx.envBytes(t)
	nothingWritten := func(what string) {
		t.Helper()
		if _, err := os.Stat(slotB); err == nil {
			t.Errorf("%s: slot B was written", what)
		}
		if !bytes.Equal(env, fx.envBytes(t)) {
			t.Errorf("%s: the bootloader env changed", what)
		}
		if r := statusJSON(t, fx.fixture); r.Journal != nil && r.Journal.Found {
			t.Errorf("%s: the journal holds %s", what, r.Journal.Record)
		}
		if _, err := os.Stat(marker); err == nil {
			t.Errorf("%s: the device rebooted", what)
		}
	}

	code, out, errOut := fx.run(t, "install", "--dry-run", fx.img)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, want := range []string{"checked file://", "dry run: nothing written", "version: 1.2.0", "bytes:   716923 would be written", "bank B would be marked pending"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	nothingWritten("good image")
	code, out, _ = fx.run(t, "install", "--dry-run", "--json", fx.img)
	var res installResult
	if code != 0 || json.Unmarshal([]byte(out), &res) != nil || !res.OK || !res.DryRun || res.Pending || res.Rebooting ||
		res.Format != agent.FormatAduimg || res.Version != "1.2.0" || res.Slot != "rootfs-b" {
		t.Errorf("JSON: exit %d %s", code, out)
	}
	code, _, errOut = fx.run(t, "install", "--dry-run", tampered)
	if code != exitcode.Invalid || !strings.Contains(errOut, "chunk") {
		t.Errorf("tampered: exit %d %q", code, errOut)
	}
	nothingWritten("tampered image")

	// With bank B pending, a dry run is refused as an install is.
	if code, _, errOut := fx.run(t, "install", "--no-reboot", fx.img); code != 0 {
		t.Fatalf("install: exit %d %s", code, errOut)
	}
	code, _, errOut = fx.run(t, "install", "--dry-run", fx.img)
	if code != exitcode.Invalid || !strings.Contains(errOut, "pending a reboot") {
		t.Errorf("B pending: exit %d %q", code, errOut)
	}
}
