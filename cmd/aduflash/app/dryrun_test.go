package app

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aduflash/aduflash/image"
)

// write --dry-run reads and checks everything a write does and exits as the write would,
// but the target keeps its bytes (a file target is not even created): a good image passes
// (with what it is in the JSON), a bad one, one for the running bank, one too large and an
// MCUboot image signed by another key are refused with a write's exit code.
func TestWriteDryRun(t *testing.T) {
	fx := newFixture(t)
	sda3 := filepath.Join(fx.dev, "sda3")
	before, err := os.ReadFile(sda3)
	if err != nil {
		t.Fatal(err)
	}
	img, err := os.ReadFile(fx.img)
	if err != nil {
		t.Fatal(err)
	}
	h, err := image.ParseHeader(bytes.NewReader(img))
	if err != nil {
		t.Fatal(err)
	}
	bad := bytes.Clone(img)
	bad[h.Chunks[len(h.Chunks)-1].Offset+5] ^= 1
	badImg := filepath.Join(fx.dir, "bad.aduimg")
	mustWrite(t, badImg, bad)

	code, stdout, stderr := run(t, fx.sys("--dry-run", "--json", "--pub", fx.pub, fx.img, "rootfs-b")...)
	var res writeResult
	if err := json.Unmarshal([]byte(stdout), &res); err != nil || code != 0 {
		t.Fatalf("exit %d, %v: %s %s", code, err, stdout, stderr)
	}
	if !res.OK || !res.DryRun || res.Verified || res.Format != "aduimg" || res.Version != "1.2.0" || res.Size != int64(len(fx.payload)) || res.Stats.BytesWritten != 0 {
		t.Errorf("result %+v", res)
	}
	code, stdout, _ = run(t, fx.sys("--dry-run", "--pub", fx.pub, fx.img, "rootfs-b")...)
	if code != 0 || !strings.Contains(stdout, "dry run") || !strings.Contains(stdout, "nothing written") {
		t.Errorf("exit %d, %q", code, stdout)
	}
	for _, tc := range []struct {
		name string
		args []string
		code int
		msg  string
	}{
		{"changed chunk", fx.sys("--dry-run", "--pub", fx.pub, badImg, "rootfs-b"), 1, "chunk"},
		{"running bank", fx.sys("--dry-run", "--pub", fx.pub, fx.img, "rootfs-a"), 1, "active bank"},
		{"too large", fx.sys("--dry-run", "--raw", fx.raw, "firmware-b"), 1, "too large"},
		{"MCUboot, other key", fx.sys("--dry-run", "--pub", fx.otherPub, fx.mcu, "rootfs-b"), 1, "signature"},
	} {
		code, _, stderr := run(t, tc.args...)
		if code != tc.code || !strings.Contains(stderr, tc.msg) {
			t.Errorf("%s: exit %d (want %d), stderr %q (want %q)", tc.name, code, tc.code, stderr, tc.msg)
		}
	}
	if after, _ := os.ReadFile(sda3); !bytes.Equal(after, before) {
		t.Fatal("a dry run changed the slot")
	}
	for _, f := range []string{fx.img, fx.mcu, fx.raw} {
		out := filepath.Join(fx.dir, "new-"+filepath.Base(f))
		args := []string{"write", "--dry-run", "--pub", fx.pub, f, out}
		if f == fx.raw {
			args = []string{"write", "--dry-run", "--raw", f, out}
		}
		if code, _, stderr := run(t, args...); code != 0 {
			t.Errorf("%s: exit %d %s", f, code, stderr)
		}
		if _, err := os.Stat(out); err == nil {
			t.Errorf("%s: a dry run created %s", f, out)
		}
	}
}
