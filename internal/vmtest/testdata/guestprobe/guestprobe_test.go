// Package guestprobe is the guest side of vmtest's smoke test: it runs inside the VM
// (vmtest.InGuest) and checks the nandsim device the host asked for.
package guestprobe

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/aduflash/aduflash/internal/vmtest"
)

func sysfs(t *testing.T, dev, attr string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("/sys/class/mtd", dev, attr))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

func TestGuest(t *testing.T) {
	if !vmtest.InGuest() {
		t.Skip("runs inside a vmtest VM only")
	}
	dev := os.Getenv("ADUFLASH_MTD_DEV")
	if dev == "" {
		t.Fatal("ADUFLASH_MTD_DEV not set")
	}
	f, err := os.OpenFile(dev, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	name := filepath.Base(dev)
	if typ := sysfs(t, name, "type"); typ != "nand" {
		t.Errorf("type = %q, want nand", typ)
	}
	want := map[string]int64{"size": 128 << 20, "erasesize": 128 << 10, "writesize": 2048, "oobsize": 64, "subpagesize": 512}
	for attr, w := range want {
		got, err := strconv.ParseInt(sysfs(t, name, attr), 10, 64)
		if err != nil || got != w {
			t.Errorf("%s = %d (%v), want %d", attr, got, err, w)
		}
	}
	buf := make([]byte, 2048)
	if _, err := f.ReadAt(buf, 0); err != nil {
		t.Fatalf("read page 0: %v", err)
	}
	t.Logf("%s: %s, bad blocks %s", dev, sysfs(t, name, "name"), sysfs(t, name, "bad_blocks"))
	if bb := sysfs(t, name, "bad_blocks"); bb != "2" {
		t.Errorf("bad_blocks = %s, want 2 (badblocks=3,7)", bb)
	}
	if out := os.Getenv("ADUFLASH_VM_OUT"); out != "" {
		if err := os.WriteFile(filepath.Join(out, "page0.bin"), buf, 0o644); err != nil {
			t.Fatal(err)
		}
		info := sysfs(t, name, "size") + " " + sysfs(t, name, "erasesize") + "\n"
		if err := os.WriteFile(filepath.Join(out, "geometry.txt"), []byte(info), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
