package smp_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/aduflash/aduflash/internal/mcutest"
	"github.com/aduflash/aduflash/internal/peers"
	"github.com/aduflash/aduflash/smp"
)

// MCUboot's own serial recovery (v2.4.0, the C code of the bootloader, as a host program on a
// pty that keeps 128 bytes of each line as Zephyr's build does): our client uploads an image
// in 128-byte lines, the bytes land in its slot file, and its image list shows the image.
// The upload is cut halfway and resumed from the offset MCUboot reports.
func TestBootSerialPeer(t *testing.T) {
	bin, key := peers.BootSerial(t)
	s := mcutest.LoadSigner(t, key)
	dir := t.TempDir()
	pty := mcutest.StartBootSerial(t, bin, dir, "-L", "128")
	open := func() *smp.Client {
		tr, err := smp.OpenSerial(pty, 115200, smp.SerialOptions{LineSize: 128})
		if err != nil {
			t.Fatal(err)
		}
		c := smp.NewClient(tr, smp.Options{})
		t.Cleanup(func() { c.Close() })
		return c
	}
	c := open()
	ctx := context.Background()
	if r, err := c.Echo(ctx, "hello MCUboot"); err != nil || r != "hello MCUboot" {
		t.Fatalf("echo = %q, %v", r, err)
	}
	if _, err := c.Params(ctx); !errors.Is(err, smp.ErrNotSupported) {
		t.Fatalf("mcumgr params: %v, want not supported (rc 8)", err)
	}
	if n, err := c.MaxPacket(ctx); err != nil || n != smp.DefaultMaxPacket {
		t.Fatalf("packet size %d, %v", n, err)
	}

	img := s.Image(t, "1.2.3", 100<<10)
	sum := sha256.Sum256(img)
	cut, cancel := context.WithCancel(ctx)
	var acked int64
	err := c.Upload(cut, bytes.NewReader(img), int64(len(img)), sum[:], 0, func(off int64) {
		if acked = off; off > int64(len(img))/2 {
			cancel()
		}
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("the cut upload: %v", err)
	}
	c.Close()
	c = open() // a new session, as after a gateway restart
	var first int64 = -1
	if err := c.Upload(ctx, bytes.NewReader(img), int64(len(img)), sum[:], acked, func(off int64) {
		if first < 0 {
			first = off
		}
	}); err != nil {
		t.Fatal(err)
	}
	if first <= acked/2 {
		t.Errorf("the resumed upload's first acknowledged offset is %d, the cut one had reached %d", first, acked)
	}
	slot, err := os.ReadFile(filepath.Join(dir, "primary.bin"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(slot[:len(img)], img) {
		t.Fatal("MCUboot's slot file does not hold the image")
	}
	list, err := c.ImageState(ctx)
	if err != nil {
		t.Fatal(err)
	}
	st := smp.FindImage(list, mcutest.Hash(t, img))
	if st == nil || st.Version != "1.2.3" || st.Slot != 0 {
		t.Fatalf("MCUboot's image list %+v does not show the image", list)
	}
	if err := c.Reset(ctx); err != nil {
		t.Fatal(err)
	}
}
