package app

import (
	"context"
	"strings"
	"testing"

	"github.com/aduflash/aduflash/devicesim/mcusim"
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
