package app

import (
	"bytes"
	"context"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aduflash/aduflash/devicesim/mcusim"
	"github.com/aduflash/aduflash/internal/mcutest"
	"github.com/aduflash/aduflash/internal/peers"
)

// aduflash mcu on a serial line: the simulated MCU on a pty, keeping 128 bytes of each line
// as a real MCU's line buffer does.
func TestMCUSerial(t *testing.T) {
	fx := newMCUFixture(t, mcusim.Config{MaxLine: 128})
	ctx, cancel := context.WithCancel(context.Background())
	path, done, err := fx.mcu.ServePTY(ctx)
	if err != nil {
		t.Skip(err)
	}
	t.Cleanup(func() { cancel(); <-done })
	code, out, errOut := run(t, "mcu", "upload", "--port", path, "--baud", "115200", "--pub", fx.pub, fx.img)
	if code != 0 || !strings.Contains(out, "verified and uploaded") {
		t.Fatalf("upload: exit %d, %q, %q", code, out, errOut)
	}
	code, out, errOut = run(t, "mcu", "list", "--port", path)
	if code != 0 || !strings.Contains(out, fx.hash) || !strings.Contains(out, "2.0.0") {
		t.Fatalf("list: exit %d, %q, %q", code, out, errOut)
	}
}

// An MCU in MCUboot's serial recovery (v2.4.0's boot_serial as a host program, 128-byte line
// buffer): aduflash mcu uploads a verified image into it (slot size from its slot info, the
// packet size falling back to 256 since it does not answer mcumgr params) and lists it.
func TestMCUBootSerialRecovery(t *testing.T) {
	bin, key := peers.BootSerial(t)
	s := mcutest.LoadSigner(t, key)
	dir := t.TempDir()
	_, pub := s.WriteKeys(t, dir)
	img := s.Image(t, "1.4.0", 60<<10)
	file := filepath.Join(dir, "app.signed.bin")
	mustWrite(t, file, img)
	pty := mcutest.StartBootSerial(t, bin, dir, "-L", "128")
	code, out, errOut := run(t, "mcu", "upload", "--port", pty, "--pub", pub, file)
	if code != 0 || !strings.Contains(out, "verified and uploaded") {
		t.Fatalf("upload: exit %d, %q, %q", code, out, errOut)
	}
	slot, err := os.ReadFile(filepath.Join(dir, "primary.bin"))
	if err != nil || !bytes.Equal(slot[:len(img)], img) {
		t.Fatalf("MCUboot's primary slot does not hold the image (%v)", err)
	}
	code, out, errOut = run(t, "mcu", "list", "--port", pty)
	if code != 0 || !strings.Contains(out, "1.4.0") || !strings.Contains(out, hex.EncodeToString(mcutest.Hash(t, img))) {
		t.Fatalf("list: exit %d, %q, %q", code, out, errOut)
	}
}
