package app

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aduflash/aduflash/cmd/internal/exitcode"
	"github.com/aduflash/aduflash/internal/gptdisk/gpttest"
	"github.com/aduflash/aduflash/recovery/ubootscript"
)

// scriptFixture adds the [uboot] and [bootloader] sections to the fixture's config and makes
// a disk image whose GPT has the banks' partitions.
func scriptFixture(t *testing.T) (fx *fixture, disk string) {
	fx = newFixture(t)
	cfg, err := os.ReadFile(fx.cfg)
	if err != nil {
		t.Fatal(err)
	}
	mustWrite(t, fx.cfg, append(cfg, []byte(`
[uboot]
load_addr = 0x40400000
load_size = "128MiB"

[bootloader]
type = "u-boot"
preset = "rauc"
`)...))
	disk = filepath.Join(fx.dir, "sdcard.img")
	gpttest.WriteFile(t, disk, 16<<20, gpttest.Banks(0x1000, 0x3000, 0x2000))
	return fx, disk
}

func TestScript(t *testing.T) {
	fx, disk := scriptFixture(t)
	t.Setenv("SOURCE_DATE_EPOCH", "1700000000")
	txt, scr := filepath.Join(fx.dir, "recover.txt"), filepath.Join(fx.dir, "recover.scr")
	code, stdout, stderr := run(t, "script", "--config", fx.cfg, "--pub", fx.pub, "--gpt", disk, "--bank", "B",
		"-o", txt, "--mkimage", scr, "--arch", "arm64", fx.img)
	if code != 0 || stdout != "" {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	text, err := os.ReadFile(txt)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(fx.payload)
	for _, want := range []string{
		// The aduimg is served as its payload under its own name, into bank B's rootfs, placed
		// by the disk's GPT; the RAUC preset's variables make bank B primary.
		"tftpboot 0x40400000 rootfs.aduimg && test \"${filesize}\" = \"300309\"",
		"setenv adu_want " + hex.EncodeToString(sum[:]),
		"part start mmc 0 rootfs_b adu_start",
		"mmc write 0x40400000 0x3000 0x1802",
		"setenv BOOT_ORDER 'B A'",
	} {
		if !strings.Contains(string(text), want) {
			t.Errorf("the script lacks %q:\n%s", want, text)
		}
	}
	for _, want := range []string{"rootfs.aduimg -> rootfs-b: 3146505 bytes", "bank B's firmware slot is not written", "bank B primary"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
	got, err := os.ReadFile(scr)
	if err != nil {
		t.Fatal(err)
	}
	want, err := ubootscript.ScriptImage(text, ubootscript.ImageOptions{Name: "aduflash recovery", Arch: "arm64", Time: time.Unix(1700000000, 0)})
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("--mkimage wrote another image than the text's (%v)", err)
	}

	// --raw with the class named; the text goes to stdout.
	code, stdout, stderr = run(t, "script", "--config", fx.cfg, "--raw", "--gpt", disk, "--check", "crc32", "rootfs="+fx.raw)
	if code != 0 || !strings.Contains(stdout, "tftpboot 0x40400000 raw.bin") || !strings.Contains(stdout, "hash crc32 0x40400000 0x100000 adu_sum") {
		t.Fatalf("--raw: exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
}

func TestScriptRefusals(t *testing.T) {
	fx, disk := scriptFixture(t)
	tampered := filepath.Join(fx.dir, "tampered.aduimg")
	b, err := os.ReadFile(fx.img)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)-100] ^= 1
	mustWrite(t, tampered, b)
	for _, tc := range []struct {
		name string
		args []string
		code int
		msg  string
	}{
		{"no GPT for a GPT slot", []string{"--pub", fx.pub, fx.img}, exitcode.Usage, "give the disk"},
		{"tampered image", []string{"--pub", fx.pub, "--gpt", disk, tampered}, exitcode.Invalid, "tampered.aduimg"},
		{"wrong key", []string{"--pub", fx.otherPub, "--gpt", disk, fx.img}, exitcode.Invalid, "rootfs.aduimg"},
		{"no trust", []string{"--gpt", disk, fx.img}, exitcode.Usage, "--raw"},
		{"raw without a class", []string{"--raw", "--gpt", disk, fx.raw}, exitcode.Usage, "CLASS="},
		{"class other than the image's", []string{"--pub", fx.pub, "--gpt", disk, "firmware=" + fx.img}, exitcode.Invalid, "signed for slot class"},
		{"unreachable slot", []string{"--pub", fx.pub, fx.fw}, exitcode.Invalid, "U-Boot knows no name for /dev/sda4"},
		{"unknown bank", []string{"--raw", "--bank", "C", "rootfs=" + fx.raw}, exitcode.Usage, `"C"`},
		{"not a GPT", []string{"--pub", fx.pub, "--gpt", fx.raw, fx.img}, exitcode.Invalid, "no valid GUID partition table"},
		{"image name of 33 bytes", []string{"--raw", "--gpt", disk, "--mkimage", filepath.Join(fx.dir, "x.scr"), "--name", strings.Repeat("n", 33), "rootfs=" + fx.raw}, exitcode.Invalid, "longer than 32"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, stderr := run(t, append([]string{"script", "--config", fx.cfg}, tc.args...)...)
			if code != tc.code || !strings.Contains(stderr, tc.msg) {
				t.Fatalf("exit %d, want %d naming %q:\n%s", code, tc.code, tc.msg, stderr)
			}
		})
	}
}
