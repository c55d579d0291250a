package bootloader_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aduflash/aduflash/bootloader"
	"github.com/aduflash/aduflash/internal/peers"
)

// realGRUB boots GRUB itself (grub-emu, GRUB's user-space build) with examples/grub's
// aduflash-select.cfg on a FAT file system image, as (hd0). GRUB's save_env writes the
// environment block inside the image; before each boot the host's grubenv (written by
// package bootloader) is copied in with mtools, and after it copied back out.
type realGRUB struct {
	img, devmap, host string
	tools             map[string]string
}

func newRealGRUB(t *testing.T, host string) *realGRUB {
	t.Helper()
	tools := map[string]string{}
	for _, name := range []string{"grub-emu", "mkfs.vfat", "mmd", "mcopy", "script"} {
		p, err := exec.LookPath(name)
		if err != nil {
			peers.Missing(t, "%s (apt-get install grub-emu dosfstools mtools bsdutils): %v", name, err)
		}
		tools[name] = p
	}
	dir := t.TempDir()
	r := &realGRUB{img: filepath.Join(dir, "esp.img"), devmap: filepath.Join(dir, "device.map"), host: host, tools: tools}
	if err := os.WriteFile(r.img, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(r.img, 8<<20); err != nil {
		t.Fatal(err)
	}
	r.run(t, "mkfs.vfat", "-n", "ADUGRUB", r.img)
	r.run(t, "mmd", "-i", r.img, "::/boot", "::/boot/grub")
	cfg := filepath.Join(dir, "grub.cfg")
	// The board part: source the selection, then report the bank and leave GRUB.
	if err := os.WriteFile(cfg, []byte("source $prefix/aduflash-select.cfg\necho \"ADU-GRUB slot=$adu_slot\"\nreboot\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r.run(t, "mcopy", "-i", r.img, cfg, "::/boot/grub/grub.cfg")
	r.run(t, "mcopy", "-i", r.img, filepath.Join("..", "examples", "grub", "aduflash-select.cfg"), "::/boot/grub/aduflash-select.cfg")
	if err := os.WriteFile(r.devmap, []byte("(hd0) "+r.img+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return r
}

func (r *realGRUB) run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(r.tools[name], args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
	return string(out)
}

func (r *realGRUB) boot(t *testing.T) bootloader.Bank {
	t.Helper()
	if _, err := os.Stat(r.host); err == nil {
		r.run(t, "mcopy", "-o", "-i", r.img, r.host, "::/boot/grub/grubenv")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// grub-emu wants a terminal: script(1) gives it one; its reboot command ends it.
	log := filepath.Join(t.TempDir(), "console")
	cmd := exec.CommandContext(ctx, r.tools["script"], "-qec",
		r.tools["grub-emu"]+" -d /boot/grub -m "+r.devmap+" -r hd0", log)
	cmd.Stdin = nil
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("grub-emu: %v\n%s", err, out)
	}
	b, _ := os.ReadFile(log)
	console := strings.ReplaceAll(string(b), "\r", "")
	if strings.Contains(console, "error:") {
		t.Fatalf("GRUB reported an error:\n%s", console)
	}
	i := strings.Index(console, "ADU-GRUB slot=")
	if i < 0 {
		t.Fatalf("GRUB did not run the script:\n%s", console)
	}
	slot := strings.Fields(console[i+len("ADU-GRUB slot="):])[0]
	r.run(t, "mcopy", "-o", "-i", r.img, "::/boot/grub/grubenv", r.host)
	return bootloader.Bank(slot)
}

// The GRUB cycle of TestGRUBCycle with GRUB itself running examples/grub/aduflash-select.cfg.
func TestRealGRUBCycle(t *testing.T) {
	g, path := grubBoard(t)
	testGRUBCycle(t, g, path, newRealGRUB(t, path))
}
