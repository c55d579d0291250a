package app

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aduflash/aduflash/cmd/internal/exitcode"
	"github.com/aduflash/aduflash/image"
	"github.com/aduflash/aduflash/image/mcuboot"
)

const fitConfig = `[agent]
ignored = true
[slots]
reserve_blocks = 4
[[slots.slot]]
class = "rootfs"
bank = "A"
type = "block"
partlabel = "rootfs_a"
size = "1MiB"
[[slots.slot]]
class = "rootfs"
bank = "B"
type = "block"
partlabel = "rootfs_b"
size = "1MiB"
[[slots.slot]]
class = "kernel"
bank = "A"
type = "nand"
mtd = "kernel_a"
size = "1MiB"
erase_size = "128KiB"
[[slots.slot]]
class = "kernel"
bank = "B"
type = "nand"
mtd = "kernel_b"
size = "1MiB"
erase_size = "128KiB"
[[slots.slot]]
class = "firmware"
bank = "A"
type = "nor"
mtd = "mcu"
size = "64KiB"
mcuboot_align = 4
[[slots.slot]]
class = "firmware"
bank = "B"
type = "nor"
mtd = "mcu"
offset = "64KiB"
size = "64KiB"
mcuboot_align = 4
`

func signFit(t *testing.T, dir, name, class string, size int) string {
	t.Helper()
	k, _ := image.GenerateKey(image.Ed25519, rand.Reader)
	path := filepath.Join(dir, name)
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, _, err := image.Sign(f, bytes.NewReader(make([]byte, size)), int64(size), k, image.SignOptions{
		Version: "1.0", SlotClass: class, ChunkSize: 64 << 10, Created: time.Unix(1e9, 0)}); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestCheckFit(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "aduagent.toml")
	if err := os.WriteFile(cfg, []byte(fitConfig), 0o644); err != nil {
		t.Fatal(err)
	}
	rootfs := signFit(t, dir, "rootfs.aduimg", "rootfs", 1<<20)       // exactly the slot
	kernelOK := signFit(t, dir, "k-ok.aduimg", "kernel", 512<<10)     // 1 MiB − 4×128 KiB reserve
	kernelBig := signFit(t, dir, "k-big.aduimg", "kernel", 512<<10+1) // one byte into the reserve
	other := signFit(t, dir, "x.aduimg", "nosuch", 10)
	k, _ := image.GenerateKey(image.Ed25519, rand.Reader)
	// MCUboot: trailer for align 4 is 1584 bytes.
	mk := func(name string, body int) string {
		img, err := mcuboot.Sign(make([]byte, body), k, mcuboot.SignOptions{HeaderSize: 0x200, PadHeader: true})
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, name)
		os.WriteFile(p, img, 0o644)
		return p
	}
	probe := mk("probe.bin", 1000)
	data, _ := os.ReadFile(probe)
	overhead := len(data) - 1000
	mcuOK := mk("mcu-ok.bin", 64<<10-1584-overhead)
	mcuBig := mk("mcu-big.bin", 64<<10-1584-overhead+1)

	code, out, errOut := run(t, "check-fit", "--config", cfg, rootfs, kernelOK)
	if code != 0 {
		t.Fatalf("exit %d: %s%s", code, out, errOut)
	}
	if !strings.Contains(out, "rootfs-b") || !strings.Contains(out, "kernel-a") || strings.Contains(out, "NO") {
		t.Errorf("table:\n%s", out)
	}
	code, out, _ = run(t, "check-fit", "--config", cfg, "--class", "firmware", mcuOK)
	if code != 0 {
		t.Fatalf("mcuboot that fits: exit %d\n%s", code, out)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{kernelBig}, "1 bytes too large"},
		{[]string{"--class", "firmware", mcuBig}, "1 bytes too large"},
		{[]string{mcuOK}, "give --class"},
		{[]string{other}, `no slot of class "nosuch"`},
		{[]string{cfg}, "neither an aduimg nor an MCUboot image"},
	} {
		code, out, _ := run(t, append([]string{"check-fit", "--config", cfg}, tc.args...)...)
		if code != exitcode.Invalid || !strings.Contains(out, tc.want) {
			t.Errorf("%v: exit %d, want 1 and %q in\n%s", tc.args, code, tc.want, out)
		}
	}
	code, out, _ = run(t, "check-fit", "--config", cfg, "--json", rootfs, kernelBig)
	var res fitResult
	if err := json.Unmarshal([]byte(out), &res); err != nil || code != 1 || res.Fits || len(res.Rows) != 4 {
		t.Fatalf("json: exit %d, %v: %s", code, err, out)
	}
	if r := res.Rows[2]; r.Slot != "kernel-a" || r.Needs != 512<<10+1 || r.Reserve != 512<<10 || r.Available != 512<<10 || r.Fits {
		t.Errorf("kernel row %+v", r)
	}
	if code, _, _ := run(t, "check-fit", rootfs); code != exitcode.Usage {
		t.Errorf("no --config: exit %d", code)
	}
	if code, _, _ := run(t, "check-fit", "--config", cfg, filepath.Join(dir, "missing")); code != exitcode.IO {
		t.Errorf("missing image: exit %d", code)
	}
}
