package agent

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/aduflash/aduflash/adu"
	"github.com/aduflash/aduflash/image"
	"github.com/aduflash/aduflash/image/imagetest"
	"github.com/aduflash/aduflash/install"
	"github.com/aduflash/aduflash/slots"
)

// TestInstallForgedHeader: an image header nobody signed that announces 349 512 chunks (16 MiB)
// costs the install path little before it is refused: nothing when the key or the slot's size
// refuse it from the header's fixed part, no more than the header's bytes when only the
// signature does (its chunk table is never parsed).
func TestInstallForgedHeader(t *testing.T) {
	dir := t.TempDir()
	cmdline := filepath.Join(dir, "cmdline")
	if err := os.WriteFile(cmdline, []byte("adu.slot=A\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var doc string
	for _, s := range []struct{ class, size string }{{"rootfs", "2GiB"}, {"kernel", "64MiB"}, {"data", ""}} {
		for _, bank := range []string{"A", "B"} {
			doc += fmt.Sprintf("[[slots.slot]]\nclass = %q\nbank = %q\ntype = \"file\"\npath = %q\n",
				s.class, bank, filepath.Join(dir, s.class+"-"+bank))
			if s.size != "" { // none: a file slot of no size, which bounds nothing
				doc += fmt.Sprintf("size = %q\n", s.size)
			}
		}
	}
	cfg, err := slots.ParseConfig([]byte("[slots]\n" + doc))
	if err != nil {
		t.Fatal(err)
	}
	layout := slots.NewLayout(cfg, slots.Env{Cmdline: cmdline})
	header := imagetest.ForgedHeader(makeImage(t, payload(1, 8<<10), "2.0", nil), imagetest.MaxChunks)
	sum := sha256.Sum256(header)
	src := Source{URL: newServer(t).put("forged.aduimg", header), Size: int64(len(header)), SHA256: sum[:]}
	other, err := image.NewKeyring()
	if err != nil {
		t.Fatal(err)
	}
	// The download costs about 1 MiB (its 256 KiB buffer, the HTTP client); reading the header
	// up to 4/3 of its size (its buffer grows as the stream delivers).
	const download = 2 << 20
	read := uint64(len(header))*4/3 + download
	for _, tc := range []struct {
		name    string
		slot    string
		keyring *image.Keyring
		want    error
		erc     adu.ExtendedResultCode
		budget  uint64
	}{
		{"unknown key", "rootfs-b", other, image.ErrUnknownKey, ERCImageUnknownKey, download},
		{"larger than the slot", "kernel-b", getKeys(t).kr, image.ErrTooLarge, ERCImageTooLarge, download},
		{"bad signature", "rootfs-b", getKeys(t).kr, image.ErrBadSignature, ERCImageSignature, read},
		// The agent reads no header larger than MaxHeaderSize, whatever the slot's size.
		{"larger than the agent reads, large slot", "rootfs-b", getKeys(t).kr, image.ErrHeaderTooLarge, ERCImage, download},
		{"larger than the agent reads, unsized slot", "data-b", getKeys(t).kr, image.ErrHeaderTooLarge, ERCImage, download},
	} {
		slot, err := layout.Slot(tc.slot)
		if err != nil {
			t.Fatal(err)
		}
		target, err := layout.Prepare(slot)
		if err != nil {
			t.Fatal(err)
		}
		in := &install.Installer{Keyring: tc.keyring, Retry: fastRetry(), MaxChunkSize: DefaultMaxChunkSize}
		if tc.want == image.ErrHeaderTooLarge {
			in.MaxHeaderSize = MaxHeaderSize
		}
		allocated := imagetest.AllocatedDuring(func() { _, err = in.Install(context.Background(), src, target, nil) })
		if _, erc := ResultFor(err); !errors.Is(err, tc.want) || erc != tc.erc {
			t.Errorf("%s: %v (erc %s), want %v (erc %s)", tc.name, err, erc, tc.want, tc.erc)
		}
		if allocated > tc.budget {
			t.Errorf("%s: %d bytes allocated before refusing a %d-byte header, want at most %d", tc.name, allocated, len(header), tc.budget)
		}
	}
}

// The agent's installer reads no header larger than MaxHeaderSize.
func TestInstallerHeaderLimit(t *testing.T) {
	d := newDevice(t, payload(1, 64<<10))
	if in := d.agent(nil).installer("rootfs"); in.MaxHeaderSize != MaxHeaderSize || in.MaxChunkSize != DefaultMaxChunkSize {
		t.Errorf("installer limits: header %d, chunk %d", in.MaxHeaderSize, in.MaxChunkSize)
	}
}
