package smp_test

import (
	"context"
	"crypto/sha256"
	"testing"

	"github.com/aduflash/aduflash/devicesim/mcusim"
	"github.com/aduflash/aduflash/internal/mcutest"
	"github.com/aduflash/aduflash/smp"
)

// UploadFrame streams an image frame by frame; a frame at 0 of an image the MCU holds part of
// is answered with where it stands, and a frame at another offset with the one it expects.
func TestUploadFrame(t *testing.T) {
	s := mcutest.NewSigner(t)
	img := s.Image(t, "2.0.0", 9000)
	size, sum := int64(len(img)), sha256.Sum256(img)
	m := newMCU(t, s, mcusim.Config{})
	c := mcutest.Connect(t, m, smp.SerialOptions{}, fast)
	ctx := context.Background()
	var off int64
	for off < size/2 {
		n, next, err := c.UploadFrame(ctx, off, size, sum[:], img[off:])
		if err != nil || next != off+int64(n) || n == 0 {
			t.Fatalf("frame at %d: sent %d, next %d, %v", off, n, next, err)
		}
		off = next
	}
	if _, next, err := c.UploadFrame(ctx, 0, size, sum[:], img); err != nil || next != off {
		t.Fatalf("frame at 0 again: next %d, %v; want %d (the MCU resumes by sha)", next, err, off)
	}
	if _, next, err := c.UploadFrame(ctx, off+8, size, nil, img[off+8:]); err != nil || next != off {
		t.Fatalf("frame past the MCU's offset: next %d, %v; want %d", next, err, off)
	}
	for off < size {
		n, next, err := c.UploadFrame(ctx, off, size, sum[:], img[off:])
		if err != nil || next != off+int64(n) {
			t.Fatalf("frame at %d: sent %d, next %d, %v", off, n, next, err)
		}
		off = next
	}
	if got := m.Slot(1)[:size]; string(got) != string(img) {
		t.Fatal("the secondary slot does not hold the image")
	}
	if _, _, err := c.UploadFrame(ctx, size, size, nil, []byte{1}); err == nil {
		t.Fatal("a frame past the image's end was sent")
	}
}
