package tftpserve

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"hash/crc32"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aduflash/aduflash/image"
	"github.com/aduflash/aduflash/image/mcuboot"
)

// The catalog describes the bytes served: an aduimg's payload, an MCUboot image and a plain
// file as they are; what is not a regular file inside the folder is skipped.
func TestOpenCatalog(t *testing.T) {
	fx := newFixture(t, 300<<10+3)
	if err := os.Symlink("rootfs.aduimg", filepath.Join(fx.dir, "latest.aduimg")); err != nil {
		t.Fatal(err)
	}
	outside := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(outside, []byte("secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(fx.dir, "escape")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("sub", filepath.Join(fx.dir, "subdir-link")); err != nil {
		t.Fatal(err)
	}
	fifo := mkfifo(filepath.Join(fx.dir, "pipe")) == nil
	var verified []string
	c, err := Open(context.Background(), fx.dir, Options{Keyring: fx.keyring, Progress: func(name string, size int64) Meter {
		verified = append(verified, name)
		return nopMeter{}
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	aduimg, err := os.Stat(filepath.Join(fx.dir, "rootfs.aduimg"))
	if err != nil {
		t.Fatal(err)
	}
	want := []File{
		{Name: "app.signed.bin", Format: FormatMCUboot, Version: "1.2.0+0", Size: int64(len(fx.mcu)), FileSize: int64(len(fx.mcu))},
		{Name: "latest.aduimg", Format: FormatAduimg, Version: "1.2.0", SlotClass: "rootfs", Size: int64(len(fx.payload)), FileSize: aduimg.Size()},
		{Name: "rootfs.aduimg", Format: FormatAduimg, Version: "1.2.0", SlotClass: "rootfs", Size: int64(len(fx.payload)), FileSize: aduimg.Size()},
		{Name: "sub/boot.cmd", Format: FormatRaw, Size: int64(len(fx.raw)), FileSize: int64(len(fx.raw))},
	}
	for i, b := range [][]byte{fx.mcu, fx.payload, fx.payload, fx.raw} {
		want[i].CRC32, want[i].SHA256 = CRC32(crc32.ChecksumIEEE(b)), sha256.Sum256(b)
	}
	got := c.Files()
	if len(got) != len(want) {
		t.Fatalf("files %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("file %d:\n got %+v\nwant %+v", i, got[i], want[i])
		}
	}
	if strings.Join(verified, " ") != "app.signed.bin latest.aduimg rootfs.aduimg sub/boot.cmd" {
		t.Errorf("progress for %q", verified)
	}
	skipped := map[string]string{}
	for _, s := range c.Skipped() {
		skipped[s.Name] = s.Reason
		if strings.Contains(s.Reason, outside) {
			t.Errorf("skip reason %q names a path outside the folder", s.Reason)
		}
	}
	if !strings.Contains(skipped["escape"], "out of the folder") || !strings.Contains(skipped["subdir-link"], "not a regular file") {
		t.Errorf("skipped %q", skipped)
	}
	if fifo && !strings.Contains(skipped["pipe"], "not a regular file") {
		t.Errorf("skipped %q", skipped)
	}
}

// The CRC-32 marshals as the 8 hex digits U-Boot's crc32 prints, and back.
func TestCRC32Text(t *testing.T) {
	f := File{CRC32: 0x0a0b0c0d}
	b, err := json.Marshal(f)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"crc32":"0a0b0c0d"`) {
		t.Fatalf("JSON %s", b)
	}
	var back File
	if err := json.Unmarshal(b, &back); err != nil || back.CRC32 != f.CRC32 {
		t.Fatalf("back %v, %v", back.CRC32, err)
	}
	for _, bad := range []string{`"0a0b0c"`, `"0a0b0c0g"`, `"+a0b0c0d"`} {
		var c CRC32
		if err := json.Unmarshal([]byte(bad), &c); err == nil {
			t.Errorf("%s accepted as %v", bad, c)
		}
	}
}

// A signed image that does not verify fails Open, naming the file; nothing is served.
func TestOpenRefusesUnverifiedImages(t *testing.T) {
	other, err := image.GenerateKey(image.Ed25519, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	t.Run("aduimg of an unknown key", func(t *testing.T) {
		fx := newFixture(t, 100<<10)
		fx.signAduimg(t, "other.aduimg", fx.payload, other)
		_, err := Open(context.Background(), fx.dir, Options{Keyring: fx.keyring})
		if !errors.Is(err, image.ErrUnknownKey) || !strings.HasPrefix(err.Error(), "other.aduimg: ") {
			t.Fatalf("Open = %v, want other.aduimg: ... ErrUnknownKey", err)
		}
	})
	t.Run("aduimg with a bad chunk", func(t *testing.T) {
		fx := newFixture(t, 300<<10)
		flipByte(t, filepath.Join(fx.dir, "rootfs.aduimg"), -100)
		_, err := Open(context.Background(), fx.dir, Options{Keyring: fx.keyring})
		var ce *image.ChunkError
		if !errors.As(err, &ce) || !strings.HasPrefix(err.Error(), "rootfs.aduimg: ") {
			t.Fatalf("Open = %v, want rootfs.aduimg: a chunk error", err)
		}
	})
	t.Run("MCUboot of an unknown key", func(t *testing.T) {
		fx := newFixture(t, 100<<10)
		img, err := mcuboot.Sign(fx.payload[:10<<10], other, mcuboot.SignOptions{HeaderSize: 0x200, PadHeader: true})
		if err != nil {
			t.Fatal(err)
		}
		fx.write(t, "other.bin", img)
		_, err = Open(context.Background(), fx.dir, Options{Keyring: fx.keyring})
		if !errors.Is(err, mcuboot.ErrKeyMismatch) || !strings.HasPrefix(err.Error(), "other.bin: ") {
			t.Fatalf("Open = %v, want other.bin: ErrKeyMismatch", err)
		}
	})
	t.Run("no keys", func(t *testing.T) {
		fx := newFixture(t, 100<<10)
		_, err := Open(context.Background(), fx.dir, Options{})
		if !errors.Is(err, ErrNoTrust) {
			t.Fatalf("Open = %v, want ErrNoTrust", err)
		}
	})
	t.Run("no keys, no signed image", func(t *testing.T) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "boot.scr"), []byte("script"), 0o644); err != nil {
			t.Fatal(err)
		}
		c, err := Open(context.Background(), dir, Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if f := c.Files(); len(f) != 1 || f[0].Format != FormatRaw {
			t.Fatalf("files %+v", f)
		}
	})
}

// flipByte inverts the byte at off (from the end when negative) of a file.
func flipByte(t testing.TB, path string, off int64) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if off < 0 {
		off += int64(len(b))
	}
	b[off] ^= 0xff
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// Lookup gives only catalog names; a name that could leave the folder is an access
// violation, whatever the folder holds.
func TestLookup(t *testing.T) {
	fx := newFixture(t, 10<<10)
	c := fx.open(t)
	for _, tc := range []struct {
		name string
		want error
	}{
		{"rootfs.aduimg", nil},
		{"sub/boot.cmd", nil},
		{"missing", ErrNotFound},
		{"sub", ErrNotFound},
		{"ROOTFS.ADUIMG", ErrNotFound},
		{"", ErrOutside},
		{".", ErrOutside},
		{"/rootfs.aduimg", ErrOutside},
		{"../rootfs.aduimg", ErrOutside},
		{"sub/../rootfs.aduimg", ErrOutside},
		{"./rootfs.aduimg", ErrOutside},
		{"sub//boot.cmd", ErrOutside},
		{"sub/", ErrOutside},
		{`sub\boot.cmd`, ErrOutside},
		{`..\..\etc\passwd`, ErrOutside},
		{"/etc/passwd", ErrOutside},
	} {
		f, err := c.Lookup(tc.name)
		switch {
		case tc.want == nil && (err != nil || f.Name != tc.name):
			t.Errorf("Lookup(%q) = %+v, %v", tc.name, f, err)
		case tc.want != nil && !errors.Is(err, tc.want):
			t.Errorf("Lookup(%q) = %+v, %v; want %v", tc.name, f, err, tc.want)
		}
	}
}

// OpenFiles serves files of several folders, each under its base name (a link under its
// own), verified as Open verifies a folder's; it refuses two files of one name and what is
// not a regular file. The server sends each from its own folder.
func TestOpenFiles(t *testing.T) {
	fx := newFixture(t, 100<<10)
	link := filepath.Join(t.TempDir(), "latest.aduimg")
	if err := os.Symlink(filepath.Join(fx.dir, "rootfs.aduimg"), link); err != nil {
		t.Fatal(err)
	}
	paths := []string{filepath.Join(fx.dir, "sub", "boot.cmd"), link, filepath.Join(fx.dir, "app.signed.bin")}
	c, err := OpenFiles(context.Background(), paths, Options{Keyring: fx.keyring})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var names []string
	for _, f := range c.Files() {
		names = append(names, f.Name+":"+f.Format)
	}
	if strings.Join(names, " ") != "app.signed.bin:mcuboot boot.cmd:raw latest.aduimg:aduimg" {
		t.Fatalf("files %q", names)
	}
	if f, err := c.Lookup("latest.aduimg"); err != nil || f.SHA256 != sha256.Sum256(fx.payload) {
		t.Fatalf("latest.aduimg: %+v, %v; want the payload", f, err)
	}
	addr, _ := serve(t, &Server{Catalog: c})
	if got, _, err := get(t, addr, "latest.aduimg", 0); err != nil || !bytes.Equal(got, fx.payload) {
		t.Fatalf("latest.aduimg is not served as the payload: %v", err)
	}
	if _, err := c.Lookup("rootfs.aduimg"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a file beside a given one is served: %v", err)
	}

	other := filepath.Join(t.TempDir(), "rootfs.aduimg")
	if err := os.WriteFile(other, []byte("another"), 0o644); err != nil {
		t.Fatal(err)
	}
	for name, bad := range map[string][]string{
		"two of one name": {filepath.Join(fx.dir, "rootfs.aduimg"), other},
		"a folder":        {fx.dir},
	} {
		if _, err := OpenFiles(context.Background(), bad, Options{Keyring: fx.keyring}); !errors.Is(err, ErrNotServable) {
			t.Errorf("%s: OpenFiles = %v, want ErrNotServable", name, err)
		}
	}
	if _, err := OpenFiles(context.Background(), []string{link}, Options{}); !errors.Is(err, ErrNoTrust) {
		t.Errorf("a signed image without keys: %v, want ErrNoTrust", err)
	}
}

// Options.Raw serves a signed image as its bytes, unchecked.
func TestOpenRaw(t *testing.T) {
	fx := newFixture(t, 10<<10)
	c, err := OpenFiles(context.Background(), []string{filepath.Join(fx.dir, "rootfs.aduimg")}, Options{Raw: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	file, err := os.ReadFile(filepath.Join(fx.dir, "rootfs.aduimg"))
	if err != nil {
		t.Fatal(err)
	}
	if f := c.Files(); len(f) != 1 || f[0].Format != FormatRaw || f[0].SHA256 != sha256.Sum256(file) {
		t.Fatalf("files %+v, want the aduimg file as it is", f)
	}
}
