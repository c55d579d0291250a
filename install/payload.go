package install

import (
	"fmt"
	"io"

	"github.com/aduflash/aduflash/image"
	"github.com/aduflash/aduflash/image/mcuboot"
)

// Payload is the bytes a local image file puts into a slot, verified as they stream, for
// a slot on the far side of a wire (U-Boot's fastboot download buffer): an aduimg's payload
// (every chunk checked before its bytes are handed out, the last one after the whole
// payload's hash), an MCUboot image whole (its TLV areas handed out after its hash and
// signature checked), a raw file as it is. Read returns the verifier's error where the
// image fails, before the failing bytes.
type Payload struct {
	io.Reader
	Info Info // the format, version and size (RawSize: how many bytes Read hands out)
}

// OpenPayload reads what the format needs before the payload from f, size bytes: an
// aduimg's header, checked against kr (its signature before anything of it is parsed), or
// an MCUboot image's header. With raw, f is taken as it is. A file that is neither image is
// refused with ErrRawNotAllowed, an image with ErrImage.
func OpenPayload(f io.ReaderAt, size int64, kr *image.Keyring, raw bool) (*Payload, error) {
	src := io.NewSectionReader(f, 0, size)
	if raw {
		return &Payload{Reader: src, Info: Info{Format: FormatRaw, RawSize: size}}, nil
	}
	prefix := make([]byte, SniffSize)
	n, err := f.ReadAt(prefix, 0)
	if err != nil && err != io.EOF {
		return nil, fmt.Errorf("%w: %w", ErrRead, err)
	}
	switch Sniff(prefix[:n]) {
	case FormatAduimg:
		h, err := image.ReadHeader(src, image.VerifyOptions{Keyring: kr})
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrImage, err)
		}
		p, err := aduimgPayload(h, src, 0)
		if err != nil {
			return nil, err
		}
		return &Payload{Reader: p.r, Info: *p.info}, nil
	case FormatMCUboot:
		rd, err := mcuboot.NewReader(src, size, kr, nil)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrImage, err)
		}
		return &Payload{Reader: rd, Info: Info{Format: FormatMCUboot, Version: rd.Header().Version.String(), RawSize: size}}, nil
	}
	return nil, fmt.Errorf("%w: the file is neither an aduimg nor an MCUboot image", ErrRawNotAllowed)
}
