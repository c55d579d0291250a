package slots

import (
	"bytes"
	"io"
	mrand "math/rand/v2"
	"testing"
	"time"

	"github.com/aduflash/aduflash/image"
	"github.com/aduflash/aduflash/image/imagetest"
	"github.com/aduflash/aduflash/image/testkey"
)

func payload(n int, seed uint64) []byte {
	r := mrand.New(mrand.NewPCG(seed, 7))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	// Some erased-looking runs, as real file systems have.
	for i := 0; i+3000 < n; i += 40000 {
		copy(b[i:i+3000], bytes.Repeat([]byte{0xFF}, 3000))
	}
	return b
}

// signed is a signed aduimg image of a payload, with its verified header.
type signed struct {
	raw  []byte
	img  []byte
	h    *image.Header
	opts image.VerifyOptions
}

func makeImage(t testing.TB, raw []byte, chunk int) *signed {
	t.Helper()
	k, kr := testkey.New(t)
	out := &imagetest.Buffer{}
	if _, _, err := image.Sign(out, bytes.NewReader(raw), int64(len(raw)), k, image.SignOptions{
		Version: "1.0", SlotClass: "rootfs", ChunkSize: chunk, Compression: image.CompressZstd, Created: time.Unix(1e9, 0)}); err != nil {
		t.Fatal(err)
	}
	opts := image.VerifyOptions{Keyring: kr}
	h, err := image.ReadHeader(bytes.NewReader(out.Bytes()), opts)
	if err != nil {
		t.Fatal(err)
	}
	return &signed{raw: raw, img: out.Bytes(), h: h, opts: opts}
}

// from returns a verified payload reader from chunk i on.
func (s *signed) from(t testing.TB, chunk int) io.Reader {
	t.Helper()
	r, err := image.NewReaderAt(bytes.NewReader(s.img), chunk, s.opts)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// abFileSlots are the [[slots.slot]] entries of a rootfs in file slots /a and /b.
const abFileSlots = `[[slots.slot]]
class = "rootfs"
bank = "A"
type = "file"
path = "/a"
[[slots.slot]]
class = "rootfs"
bank = "B"
type = "file"
path = "/b"
`
