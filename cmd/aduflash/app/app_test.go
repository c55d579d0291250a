package app

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aduflash/aduflash/cmd/internal/clitest"
	"github.com/aduflash/aduflash/cmd/internal/exitcode"
	"github.com/aduflash/aduflash/image"
	"github.com/aduflash/aduflash/image/imagetest"
	"github.com/aduflash/aduflash/image/mcuboot"
	"github.com/aduflash/aduflash/slots/slotstest"
)

// run drives aduflash in-process the way main does.
func run(t *testing.T, args ...string) (code int, stdout, stderr string) {
	return clitest.Run(context.Background(), Run, "aduflash", args...)
}

// TestProgram: write, env, manifest, fastboot and mcu with their subcommands, script, serve,
// recover; --version;
// --help goldens.
func TestProgram(t *testing.T) { clitest.Program(t, Run, New(io.Discard, io.Discard), 23) }

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{},
		{"no-such-command"},
		{"write"},
		{"write", "a"},
		{"write", "a", "b", "c"},
		{"write", "--no-such-flag", "a", "b"},
		{"write", "--raw", "--pub", "k.pem", "a", "b"},
	} {
		code, _, _ := run(t, args...)
		if code != exitcode.Usage {
			t.Errorf("aduflash %q: exit %d, want %d", args, code, exitcode.Usage)
		}
	}
}

// fixture: keys, two aduimg images (rootfs, firmware), an MCUboot image, a raw file, a fake
// system and a config.
type fixture struct {
	dir, pub, otherPub, img, fw, mcu, raw, cfg, dev, cmdline string
	payload                                                  []byte
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	d := t.TempDir()
	fx := &fixture{dir: d, pub: filepath.Join(d, "k.pub.pem"), otherPub: filepath.Join(d, "o.pub.pem"),
		img: filepath.Join(d, "rootfs.aduimg"), fw: filepath.Join(d, "firmware.aduimg"), mcu: filepath.Join(d, "app.signed.bin"), raw: filepath.Join(d, "raw.bin"),
		cfg: filepath.Join(d, "aduagent.toml"), dev: filepath.Join(d, "dev"), cmdline: filepath.Join(d, "cmdline")}
	key, _ := image.GenerateKey(image.Ed25519, rand.Reader)
	other, _ := image.GenerateKey(image.Ed25519, rand.Reader)
	for path, k := range map[string]any{fx.pub: key.Public(), fx.otherPub: other.Public()} {
		b, err := image.MarshalPublicKeyPEM(k)
		if err != nil {
			t.Fatal(err)
		}
		mustWrite(t, path, b)
	}
	fx.payload = make([]byte, 3<<20+777)
	rand.Read(fx.payload)
	f, err := os.Create(fx.img)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := image.Sign(f, bytes.NewReader(fx.payload), int64(len(fx.payload)), key, image.SignOptions{
		Version: "1.2.0", SlotClass: "rootfs", ChunkSize: 256 << 10, Compression: image.CompressZstd, Created: time.Unix(1e9, 0)}); err != nil {
		t.Fatal(err)
	}
	f.Close()
	f, err = os.Create(fx.fw)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := image.Sign(f, bytes.NewReader(fx.payload[:40<<10]), 40<<10, key, image.SignOptions{
		Version: "1.0.0", SlotClass: "firmware", Created: time.Unix(1e9, 0)}); err != nil {
		t.Fatal(err)
	}
	f.Close()
	mcu, err := mcuboot.Sign(fx.payload[:100<<10], key, mcuboot.SignOptions{Version: mcuboot.Version{Major: 1}, HeaderSize: 0x200, PadHeader: true})
	if err != nil {
		t.Fatal(err)
	}
	mustWrite(t, fx.mcu, mcu)
	mustWrite(t, fx.raw, fx.payload[:1<<20])
	if err := os.MkdirAll(filepath.Join(fx.dev, "disk", "by-partlabel"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"sda2", "sda3", "sda4", "sda5"} {
		mustWrite(t, filepath.Join(fx.dev, p), make([]byte, 4<<20))
	}
	for label, p := range map[string]string{"rootfs_a": "sda2", "rootfs_b": "sda3"} {
		if err := os.Symlink("../../"+p, filepath.Join(fx.dev, "disk", "by-partlabel", label)); err != nil {
			t.Fatal(err)
		}
	}
	mustWrite(t, fx.cmdline, []byte("console=ttyS0 root=PARTLABEL=rootfs_a rootwait\n"))
	mustWrite(t, fx.cfg, []byte(`[agent]
whatever = "ignored"
[slots]
`+slotstest.RootfsA+slotstest.RootfsB+`[[slots.slot]]
class = "firmware"
bank = "A"
type = "block"
path = "/dev/sda4"
size = "64KiB"
[[slots.slot]]
class = "firmware"
bank = "B"
type = "block"
path = "/dev/sda5"
size = "64KiB"
`))
	return fx
}

func mustWrite(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func (fx *fixture) sys(args ...string) []string {
	return append([]string{"write", "--config", fx.cfg, "--dev-root", fx.dev, "--cmdline-file", fx.cmdline}, args...)
}

func TestWriteAduimgToFile(t *testing.T) {
	fx := newFixture(t)
	out := filepath.Join(fx.dir, "disk.img")
	code, stdout, stderr := run(t, "write", "--pub", fx.pub, fx.img, out)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if got, _ := os.ReadFile(out); !bytes.Equal(got, fx.payload) {
		t.Fatal("target content differs")
	}
	if !strings.Contains(stdout, "verified") || !strings.Contains(stderr, "write: done") || !strings.Contains(stderr, "verify: done") {
		t.Errorf("stdout %q stderr %q", stdout, stderr)
	}
	// Again, as JSON: nothing to write.
	code, stdout, _ = run(t, "write", "--json", "--pub", fx.pub, fx.img, out)
	var res writeResult
	if err := json.Unmarshal([]byte(stdout), &res); err != nil || code != 0 {
		t.Fatalf("exit %d, %v: %s", code, err, stdout)
	}
	if !res.OK || !res.Verified || res.Format != "aduimg" || res.Version != "1.2.0" || res.Stats.BytesWritten != 0 || res.Stats.BytesSkipped != int64(len(fx.payload)) {
		t.Errorf("result %+v", res)
	}
}

func TestWriteSlots(t *testing.T) {
	fx := newFixture(t)
	// The spare bank by both names.
	for _, target := range []string{"rootfs-b", "B/rootfs"} {
		code, _, stderr := run(t, fx.sys("--pub", fx.pub, fx.img, target)...)
		if code != 0 {
			t.Fatalf("%s: exit %d: %s", target, code, stderr)
		}
	}
	if got, _ := os.ReadFile(filepath.Join(fx.dev, "sda3")); !bytes.Equal(got[:len(fx.payload)], fx.payload) {
		t.Fatal("slot content differs")
	}
	for _, tc := range []struct {
		name string
		args []string
		code int
		msg  string
	}{
		{"active slot", fx.sys("--pub", fx.pub, fx.img, "rootfs-a"), 1, "active bank"},
		{"active device by path", fx.sys("--pub", fx.pub, fx.img, filepath.Join(fx.dev, "disk/by-partlabel/rootfs_a")), 1, "active bank"},
		{"wrong class", fx.sys("--pub", fx.pub, fx.fw, "rootfs-b"), 1, "slot rootfs-b holds rootfs"},
		{"too large for the wrong class", fx.sys("--pub", fx.pub, fx.img, "firmware-b"), 1, "raw size 3146505 exceeds the target's 65536 bytes"},
		{"too large", fx.sys("--raw", fx.raw, "firmware-b"), 1, "too large"},
		{"untrusted key", fx.sys("--pub", fx.otherPub, fx.img, "rootfs-b"), 1, "unknown signing key"},
		{"unknown slot", fx.sys("--pub", fx.pub, fx.img, "rootfs-c"), 2, "unknown slot"},
		{"no keys", fx.sys(fx.img, "rootfs-b"), 2, "aduflash write: an aduimg image needs --pub"},
		{"not an image", fx.sys("--pub", fx.pub, fx.raw, "rootfs-b"), 1, "neither an aduimg nor an MCUboot image"},
		{"missing image", fx.sys("--pub", fx.pub, filepath.Join(fx.dir, "nope"), "rootfs-b"), 3, "no such file"},
	} {
		code, _, stderr := run(t, tc.args...)
		if code != tc.code || !strings.Contains(stderr, tc.msg) {
			t.Errorf("%s: exit %d (want %d), stderr %q (want %q)", tc.name, code, tc.code, stderr, tc.msg)
		}
	}
	// Unknown running bank: refuse (exit 3).
	mustWrite(t, fx.cmdline, []byte("quiet\n"))
	if code, _, stderr := run(t, fx.sys("--pub", fx.pub, fx.img, "rootfs-b")...); code != 3 || !strings.Contains(stderr, "cannot tell which bank") {
		t.Errorf("unknown active: exit %d %q", code, stderr)
	}
}

// TestWriteForgedHeader: an image header nobody signed that announces 349 512 chunks (16 MiB)
// costs aduflash write little before it is refused: nothing when the slot is too small for it or
// the key unknown, no more than the header's bytes when only the signature refuses it.
func TestWriteForgedHeader(t *testing.T) {
	fx := newFixture(t)
	img, err := os.ReadFile(fx.img)
	if err != nil {
		t.Fatal(err)
	}
	header := imagetest.ForgedHeader(img, imagetest.MaxChunks)
	forged := filepath.Join(fx.dir, "forged.aduimg")
	mustWrite(t, forged, header)
	read := uint64(len(header))*4/3 + 1<<20 // reading the header, and the command's own needs
	for _, tc := range []struct {
		name   string
		args   []string
		msg    string
		budget uint64
	}{
		{"larger than the slot", fx.sys("--pub", fx.pub, forged, "firmware-b"), "too large", 1 << 20},
		{"unknown key", fx.sys("--pub", fx.otherPub, forged, "rootfs-b"), "unknown signing key", 1 << 20},
		{"bad signature", []string{"write", "--pub", fx.pub, forged, filepath.Join(fx.dir, "out.img")}, "bad signature", read},
	} {
		var (
			code   int
			stderr string
		)
		allocated := imagetest.AllocatedDuring(func() { code, _, stderr = run(t, tc.args...) })
		if code != exitcode.Invalid || !strings.Contains(stderr, tc.msg) {
			t.Errorf("%s: exit %d, stderr %q, want %d and %q", tc.name, code, stderr, exitcode.Invalid, tc.msg)
		}
		if allocated > tc.budget {
			t.Errorf("%s: %d bytes allocated before refusing a %d-byte header, want at most %d", tc.name, allocated, len(header), tc.budget)
		}
	}
}

func TestWriteMCUbootAndRaw(t *testing.T) {
	fx := newFixture(t)
	out := filepath.Join(fx.dir, "mcu.img")
	if code, _, stderr := run(t, "write", "--pub", fx.pub, fx.mcu, out); code != 0 {
		t.Fatalf("mcuboot: exit %d %s", code, stderr)
	}
	want, _ := os.ReadFile(fx.mcu)
	if got, _ := os.ReadFile(out); !bytes.Equal(got, want) {
		t.Fatal("mcuboot content differs")
	}
	if code, _, stderr := run(t, "write", "--pub", fx.otherPub, fx.mcu, out); code != 1 {
		t.Fatalf("mcuboot with another key: exit %d %s", code, stderr)
	}
	bad := bytes.Clone(want)
	bad[0x300] ^= 1
	mustWrite(t, fx.mcu, bad)
	if code, _, stderr := run(t, "write", "--pub", fx.pub, fx.mcu, out); code != 1 || !strings.Contains(stderr, "hash") {
		t.Fatalf("corrupt mcuboot: exit %d %s", code, stderr)
	}
	out = filepath.Join(fx.dir, "raw.img")
	code, stdout, stderr := run(t, "write", "--raw", fx.raw, out)
	if code != 0 {
		t.Fatalf("raw: exit %d %s", code, stderr)
	}
	if got, _ := os.ReadFile(out); !bytes.Equal(got, fx.payload[:1<<20]) {
		t.Fatal("raw content differs")
	}
	if !strings.Contains(stdout, fmt.Sprintf("(raw) -> %s", out)) {
		t.Errorf("stdout %q", stdout)
	}
}

// --no-verify writes the same bytes and reports that no read-back took place.
func TestWriteNoVerify(t *testing.T) {
	fx := newFixture(t)
	for _, noVerify := range []bool{false, true} {
		out := filepath.Join(fx.dir, fmt.Sprintf("raw-%v.img", noVerify))
		args := []string{"write", "--raw", "--json", fx.raw, out}
		if noVerify {
			args = append(args[:1], append([]string{"--no-verify"}, args[1:]...)...)
		}
		code, stdout, stderr := run(t, args...)
		if code != 0 {
			t.Fatalf("exit %d %s", code, stderr)
		}
		var res struct {
			Verified bool `json:"verified"`
		}
		if err := json.Unmarshal([]byte(stdout), &res); err != nil {
			t.Fatalf("%v: %s", err, stdout)
		}
		if res.Verified == noVerify {
			t.Errorf("--no-verify=%v: verified=%v", noVerify, res.Verified)
		}
		if got, _ := os.ReadFile(out); !bytes.Equal(got, fx.payload[:1<<20]) {
			t.Fatal("content differs")
		}
	}
}
