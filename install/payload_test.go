package install

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/aduflash/aduflash/image"
	"github.com/aduflash/aduflash/image/mcuboot"
)

func TestOpenPayload(t *testing.T) {
	_, kr := key(t)
	raw := testData(3, 150<<10)
	mcu := mcubootOf(t, testData(4, 20<<10), 1)
	for _, tc := range []struct {
		name, format, version string
		file, want            []byte
		raw                   bool
	}{
		{"aduimg", FormatAduimg, "1.2.0", aduimgOf(t, raw, "1.2.0", nil), raw, false},
		{"mcuboot", FormatMCUboot, "2.0.0+0", mcu, mcu, false},
		{"raw", FormatRaw, "", raw, raw, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := OpenPayload(bytes.NewReader(tc.file), int64(len(tc.file)), kr, tc.raw)
			if err != nil {
				t.Fatal(err)
			}
			if p.Info.Format != tc.format || p.Info.RawSize != int64(len(tc.want)) || p.Info.Version != tc.version {
				t.Fatalf("info %+v, want %s %s of %d bytes", p.Info, tc.format, tc.version, len(tc.want))
			}
			got, err := io.ReadAll(p)
			if err != nil || !bytes.Equal(got, tc.want) {
				t.Fatalf("read %d bytes, %v; want the %d-byte payload", len(got), err, len(tc.want))
			}
		})
	}
}

// An image that fails is refused before the failing bytes: a header at OpenPayload, a chunk
// at its turn, an MCUboot image's signature before its TLV areas.
func TestOpenPayloadRefused(t *testing.T) {
	_, kr := key(t)
	raw := testData(5, 150<<10)
	img := aduimgOf(t, raw, "1.0.0", nil)
	badSig := bytes.Clone(img)
	badSig[104] ^= 1 // the metadata after the fixed part: signed
	if _, err := OpenPayload(bytes.NewReader(badSig), int64(len(badSig)), kr, false); !errors.Is(err, ErrImage) || !errors.Is(err, image.ErrBadSignature) {
		t.Fatalf("a bad signature: %v, want ErrImage around image.ErrBadSignature", err)
	}
	badChunk := changedChunk(t, img, 2)
	p, err := OpenPayload(bytes.NewReader(badChunk), int64(len(badChunk)), kr, false)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(p)
	if !errors.Is(err, image.ErrChunkHash) || len(got) != 2*testChunkSize {
		t.Fatalf("a bad chunk 2: %d bytes, %v; want chunks 0 and 1, then image.ErrChunkHash", len(got), err)
	}

	mcu := mcubootOf(t, testData(6, 20<<10), 1)
	mcu[0x200+5] ^= 1 // in the body
	p, err = OpenPayload(bytes.NewReader(mcu), int64(len(mcu)), kr, false)
	if err != nil {
		t.Fatal(err)
	}
	img2, _ := mcuboot.Parse(mcu)
	got, err = io.ReadAll(p)
	if !mcuboot.Rejected(err) || len(got) > img2.HashedSize() {
		t.Fatalf("a tampered MCUboot image: %d bytes, %v; want a refusal before its TLV areas (at %d)", len(got), err, img2.HashedSize())
	}

	if _, err := OpenPayload(bytes.NewReader(raw), int64(len(raw)), kr, false); !errors.Is(err, ErrRawNotAllowed) {
		t.Fatalf("a file that is no image: %v, want ErrRawNotAllowed", err)
	}
}
