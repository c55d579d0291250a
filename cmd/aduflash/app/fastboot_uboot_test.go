package app

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aduflash/aduflash/cmd/internal/exitcode"
	"github.com/aduflash/aduflash/image"
	"github.com/aduflash/aduflash/internal/peers"
	"github.com/aduflash/aduflash/internal/ubootqemu"
)

// TestFastbootRealUBoot flashes GPT partitions of the SD card of U-Boot 2023.01 under QEMU
// through its `fastboot udp`, with aduflash (a signed aduimg, its payload) and with Debian's
// fastboot (the same payload as a file), reads both back from the card's image file, and
// checks that a corrupted aduimg is refused before anything is flashed.
func TestFastbootRealUBoot(t *testing.T) {
	if testing.Short() {
		t.Skip("boots U-Boot under QEMU")
	}
	tool, err := exec.LookPath("fastboot")
	if err != nil {
		peers.Missing(t, "fastboot not found (apt-get install fastboot)")
	}
	fx := newFixture(t)
	a := ubootqemu.Partition{Name: "rootfs_a", Start: 4096, Sectors: 8192}
	b := ubootqemu.Partition{Name: "rootfs_b", Start: 12288, Sectors: 8192}
	board := ubootqemu.StartFastboot(t, filepath.Join(fx.dir, "sd.img"), []ubootqemu.Partition{a, b})
	debian := func(args ...string) string {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		out, err := exec.CommandContext(ctx, tool, append([]string{"-s", "udp:" + board.Addr}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("fastboot %q: %v: %s", args, err, out)
		}
		return string(out)
	}
	partition := func(p ubootqemu.Partition) []byte {
		f, err := os.Open(board.Disk)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		got := make([]byte, len(fx.payload))
		if _, err := f.ReadAt(got, p.Offset()); err != nil {
			t.Fatal(err)
		}
		return got
	}

	// The same answer to both clients.
	if out := debian("getvar", "version"); !strings.Contains(out, "version: 0.4") {
		t.Fatalf("Debian's fastboot: %q", out)
	}
	if code, out, errOut := run(t, "fastboot", "--udp", board.Addr, "getvar", "version"); code != 0 || out != "0.4\n" {
		t.Fatalf("aduflash fastboot getvar: exit %d, %q, %q", code, out, errOut)
	}

	// The signed image's payload with ours, the payload itself with Debian's.
	if code, out, errOut := run(t, "fastboot", "--udp", board.Addr, "--pub", fx.pub, "flash", a.Name, fx.img); code != 0 {
		t.Fatalf("aduflash fastboot flash: exit %d, %q, %q", code, out, errOut)
	}
	if !bytes.Equal(partition(a), fx.payload) {
		t.Fatal("rootfs_a on the card does not hold the image's payload")
	}
	plain := filepath.Join(fx.dir, "payload.bin")
	mustWrite(t, plain, fx.payload)
	debian("flash", b.Name, plain)
	if !bytes.Equal(partition(b), fx.payload) {
		t.Fatal("rootfs_b on the card does not hold what Debian's fastboot flashed")
	}

	// A corrupted image: refused, rootfs_b keeps what it held, U-Boot flashed nothing more.
	img, _ := os.ReadFile(fx.img)
	h, err := image.ParseHeader(bytes.NewReader(img))
	if err != nil {
		t.Fatal(err)
	}
	img[h.Chunks[len(h.Chunks)-1].Offset+7] ^= 1
	bad := filepath.Join(fx.dir, "corrupt.aduimg")
	mustWrite(t, bad, img)
	flashes := strings.Count(board.Console(), "Flashing Raw Image")
	code, _, errOut := run(t, "fastboot", "--udp", board.Addr, "--pub", fx.pub, "flash", b.Name, bad)
	if code != exitcode.Invalid || !strings.Contains(errOut, "chunk") {
		t.Fatalf("a corrupted aduimg: exit %d, stderr %q; want %d naming the chunk", code, errOut, exitcode.Invalid)
	}
	if !bytes.Equal(partition(b), fx.payload) || strings.Count(board.Console(), "Flashing Raw Image") != flashes {
		t.Fatal("U-Boot flashed from a corrupted image")
	}

	// Debian's tool still finds U-Boot in its command state, and reboots it.
	debian("getvar", "version")
	if code, out, errOut := run(t, "fastboot", "--udp", board.Addr, "reboot"); code != 0 {
		t.Fatalf("reboot: exit %d, %q, %q", code, out, errOut)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := board.Wait(ctx); err != nil {
		t.Fatalf("QEMU after the reboot: %v", err)
	}
}
