package image

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"testing"
)

// TestLayoutExample checks the example of docs/aduimg.md §11 byte by byte, so the document and
// the code cannot drift apart.
func TestLayoutExample(t *testing.T) {
	key := fuzzKey()
	data := payload(5000, 99)
	opts := SignOptions{Version: "1.0", ChunkSize: 4096, Created: testCreated, SecurityCounter: 3}
	img, h := sign(t, key, data, opts)
	hx := func(b []byte) string { return hex.EncodeToString(b) }
	id, _ := KeyIDOf(key.Public())
	c0 := sha256.Sum256(data[:4096])
	c1 := sha256.Sum256(data[4096:])
	all := sha256.Sum256(data)
	for _, c := range []struct {
		off  int
		want string
	}{
		{0x00, "89414455494d470a" + "0100" + "0000" + "d7020000"},
		{0x10, hx(id[:])},
		{0x20, "01" + "00" + "0000" + "00100000" + "8813000000000000"},
		{0x30, "0300000000000000" + hx(le64b(uint64(testCreated.Unix())))},
		{0x40, "02000000" + "0b000000" + hx(all[:])},
		{0x68, "0300312e30" + "0000" + "0000" + "0000"},
		{0x73, hx(c0[:]) + "d702000000000000" + "00100000" + "00000000"},
		{0xa3, hx(c1[:]) + "d712000000000000" + "88030000" + "00000000"},
		{0xd3, "4000" + "0000"},
		{0xd7 + 64, hx(make([]byte, 448))},
	} {
		want, _ := hex.DecodeString(c.want)
		if got := img[c.off : c.off+len(want)]; !bytes.Equal(got, want) {
			t.Errorf("offset %#x: % x, want % x", c.off, got, want)
		}
	}
	if h.Size != 727 || len(img) != 5727 || !bytes.Equal(img[727:], data) {
		t.Errorf("header %d bytes, image %d bytes", h.Size, len(img))
	}
	if err := VerifyMessage(key.Public(), img[:727-516], img[0xd7:0xd7+64]); err != nil {
		t.Errorf("the signature does not cover bytes [0, H-516): %v", err)
	}
}

func le64b(v uint64) []byte {
	b := make([]byte, 8)
	le64(b, v)
	return b
}

func TestZstdWindow(t *testing.T) {
	for cs, want := range map[int]int{4096: 4096, 12 << 10: 8 << 10, 1 << 20: 1 << 20, 12 << 20: 8 << 20, 64 << 20: 8 << 20} {
		if got := zstdWindow(cs); got != want {
			t.Errorf("zstdWindow(%d) = %d, want %d", cs, got, want)
		}
	}
}
