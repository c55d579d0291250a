package mcusim_test

import (
	"context"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aduflash/aduflash/devicesim/mcusim"
	"github.com/aduflash/aduflash/internal/mcutest"
	"github.com/aduflash/aduflash/internal/peers"
)

// Apache's mcumgr CLI as a second client of the simulated MCU's SMP server on a pty, in
// 128-byte lines (mtu=128, the MCU keeping 128 bytes a line): echo, image list, upload, test,
// reset into the image, confirm.
func TestMCUmgrPeer(t *testing.T) {
	bin := peers.MCUmgr(t)
	s := mcutest.NewSigner(t)
	v1, v2 := s.Image(t, "1.0.0", 20000), s.Image(t, "2.0.0", 40000)
	m, err := mcusim.New(mcusim.Config{Primary: v1, Keyring: s.Keyring, MaxLine: 128})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	path, done, err := m.ServePTY(ctx)
	if err != nil {
		t.Skip(err)
	}
	t.Cleanup(func() { cancel(); <-done })
	mcumgr := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(bin, append([]string{"--conntype", "serial", "--connstring", "dev=" + path + ",baud=115200,mtu=128", "-t", "5"}, args...)...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("mcumgr %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	if out := mcumgr("echo", "hello"); strings.TrimSpace(out) != "hello" {
		t.Fatalf("echo: %q", out)
	}
	h1, h2 := hex.EncodeToString(mcutest.Hash(t, v1)), hex.EncodeToString(mcutest.Hash(t, v2))
	if out := mcumgr("image", "list"); !strings.Contains(out, "version: 1.0.0") || !strings.Contains(out, h1) {
		t.Fatalf("image list:\n%s", out)
	}
	file := filepath.Join(t.TempDir(), "v2.bin")
	if err := os.WriteFile(file, v2, 0o644); err != nil {
		t.Fatal(err)
	}
	mcumgr("image", "upload", file)
	if out := mcumgr("image", "list"); !strings.Contains(out, h2) {
		t.Fatalf("image list after the upload:\n%s", out)
	}
	if out := mcumgr("image", "test", h2); !strings.Contains(out, "pending") {
		t.Fatalf("image test:\n%s", out)
	}
	boots := m.Stats().Boots
	mcumgr("reset")
	for m.Stats().Boots == boots { // the MCU resets once its reply is out
		time.Sleep(time.Millisecond)
	}
	if img := m.Running(); img == nil || img.Header.Version.Major != 2 {
		t.Fatalf("running %v after the reset, want 2.0.0", img)
	}
	mcumgr("image", "confirm", h2)
	if err := m.Reset(); err != nil {
		t.Fatal(err)
	}
	if img := m.Running(); img == nil || img.Header.Version.Major != 2 {
		t.Fatalf("running %v after confirm and another reset, want 2.0.0", img)
	}
	if st := m.Stats(); st.BadBoots != 0 {
		t.Fatalf("%d bad boots", st.BadBoots)
	}
}
