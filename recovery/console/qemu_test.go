package console

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aduflash/aduflash/internal/syncbuf"
	"github.com/aduflash/aduflash/internal/ubootqemu"
)

// realBoard boots the peer's u-boot-net.bin on a blank SD card (no environment: U-Boot's
// default one, whose bootcmd tries a network boot) and returns its console's pty.
func realBoard(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("QEMU test; skipped under -short")
	}
	ub := ubootqemu.RequireNet(t)
	disk := filepath.Join(t.TempDir(), "sd.img")
	if err := ubootqemu.CreateDisk(disk, ubootqemu.DefaultDiskSize); err != nil {
		t.Fatal(err)
	}
	b, err := ubootqemu.Start(context.Background(), ubootqemu.Config{UBoot: ub, Disk: disk, Network: true, ConsolePTY: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	return b.PTY
}

// openConsole opens the pty as aduflash opens a serial line; close ends it (or the test).
func openConsole(t *testing.T, pty string, log *syncbuf.Buffer) (c *Console, close func()) {
	t.Helper()
	f, err := Open(pty, 115200)
	if err != nil {
		t.Fatal(err)
	}
	c = New(f, pty, Options{PromptTimeout: 30 * time.Second, Log: log})
	close = func() { c.Close(); f.Close() }
	t.Cleanup(close)
	return c, close
}

// The real U-Boot: interrupted while its default bootcmd runs (or counts down), then, on a
// console opened again long after the banner went by, found at its prompt; its answers
// classified as they should be.
func TestRealUBootConsole(t *testing.T) {
	pty := realBoard(t)
	ctx := context.Background()
	log := &syncbuf.Buffer{}
	c, closeFirst := openConsole(t, pty, log)
	if err := c.Attach(ctx); err != nil {
		t.Fatalf("Attach: %v\n%s", err, log)
	}
	res, err := c.Run(ctx, "version", nil)
	if err != nil || res.Status != 0 || len(res.Output) == 0 || !strings.HasPrefix(res.Output[0], "U-Boot 20") {
		t.Fatalf("version: %+v, %v", res, err)
	}
	closeFirst()

	log2 := &syncbuf.Buffer{}
	c, _ = openConsole(t, pty, log2)
	if err := c.Attach(ctx); err != nil {
		t.Fatalf("second Attach (banner long gone): %v\n%s", err, log2)
	}
	if strings.Contains(log2.String(), "DRAM:") {
		t.Fatalf("the second console saw a banner; the test wants a board already at its prompt:\n%s", log2)
	}
	step := Step{Name: "probe", Commands: []Command{
		{Line: "setenv x 1"},
		{Line: "hash crc32 ${loadaddr} 0x100", Expect: []string{"==> "}},
		{Line: "nosuchcommand"},
	}}
	err = c.RunStep(ctx, step, nil)
	if !errors.Is(err, ErrUnknownCommand) {
		t.Fatalf("RunStep = %v, want ErrUnknownCommand", err)
	}
	step = Step{Name: "mmc", Commands: []Command{{Line: "mmc dev 0"}, {Line: "mmc write ${loadaddr} 0x7fff 0x10"}}}
	if err := c.RunStep(ctx, step, nil); !errors.Is(err, ErrCommand) || !strings.Contains(err.Error(), "blocks written: ERROR") {
		t.Fatalf("mmc write past the end = %v, want ErrCommand quoting U-Boot", err)
	}
}
