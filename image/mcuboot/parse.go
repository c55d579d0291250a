package mcuboot

import (
	"bytes"
	"encoding/binary"
	"fmt"
)

// Image is a parsed MCUboot image: header, TLV areas and, when the data goes on past the TLV
// area (an image padded to its slot, or a slot read back from flash), the trailer.
type Image struct {
	// Size is the length of the data parsed.
	Size   int    `json:"size"`
	Header Header `json:"header"`
	// FlagNames are imgtool's names of the header flags.
	FlagNames []string `json:"flag_names"`
	// Protected is the protected TLV area (covered by the image hash), nil if there is none.
	Protected *TLVArea `json:"protected_tlv_area,omitempty"`
	// Unprotected is the TLV area holding the hash, key hash and signatures.
	Unprotected TLVArea `json:"tlv_area"`
	// Padding is the number of bytes after the TLV area (0 for an image that is not padded).
	Padding int `json:"padding"`
	// Trailer is set when the data ends with a valid trailer magic after the TLV area.
	Trailer *Trailer `json:"trailer,omitempty"`
}

// TLVArea is one TLV area: its info header and its records.
type TLVArea struct {
	Offset int    `json:"offset"`
	Magic  uint16 `json:"magic"`
	// Size is the info header's total length, including the 4-byte info header itself.
	Size    uint16 `json:"tlv_tot"`
	Records []TLV  `json:"tlvs"`
}

// TLV is one type-length-value record.
type TLV struct {
	// Offset is where the record's 4-byte header starts.
	Offset int    `json:"offset"`
	Type   uint16 `json:"type"`
	Name   string `json:"type_name"`
	Len    int    `json:"len"`
	Data   Hex    `json:"data"`
}

// HashedSize is the length of the region the image hash covers: header, body and protected TLVs.
func (img *Image) HashedSize() int {
	return int(img.Header.HeaderSize) + int(img.Header.ImageSize) + int(img.Header.ProtectedTLVSize)
}

// End is the offset just past the unprotected TLV area: the size of the image without padding.
func (img *Image) End() int { return img.Unprotected.Offset + int(img.Unprotected.Size) }

// Find returns the first record of type t, searching the protected area first, or nil.
func (img *Image) Find(t uint16) *TLV {
	if img.Protected != nil {
		for i := range img.Protected.Records {
			if img.Protected.Records[i].Type == t {
				return &img.Protected.Records[i]
			}
		}
	}
	for i := range img.Unprotected.Records {
		if img.Unprotected.Records[i].Type == t {
			return &img.Unprotected.Records[i]
		}
	}
	return nil
}

// SecurityCounter returns the value of the protected SEC_CNT TLV, if the image has one.
func (img *Image) SecurityCounter() (uint32, bool) {
	if img.Protected == nil {
		return 0, false
	}
	for _, r := range img.Protected.Records {
		if r.Type == TLVSecCnt && len(r.Data) == 4 {
			return binary.LittleEndian.Uint32(r.Data), true
		}
	}
	return 0, false
}

// IsImage reports whether prefix (at least 4 bytes) starts with the MCUboot image magic
// 0x96f3b83d stored little-endian (3d b8 f3 96), which is how imgtool writes it by default. A
// big-endian image (`imgtool --endian big`, bytes 96 f3 b8 3d) and the legacy v1 magic are
// not MCUboot images for this package: Parse names them in its ErrBadMagic message.
func IsImage(prefix []byte) bool {
	return len(prefix) >= 4 && binary.LittleEndian.Uint32(prefix) == Magic
}

// Parse reads an image: the header, both TLV areas and, if present, the trailer. It checks the
// structure the way MCUboot's TLV iterator does (magics, the protected size in the header
// matching the protected area, every record inside its area, everything inside data) but no
// hash or signature; that is Verify's job. Parse never panics and keeps no reference to data.
func Parse(data []byte) (*Image, error) {
	h, err := parseHeader(data, len(data))
	if err != nil {
		return nil, err
	}
	img := &Image{Size: len(data), Header: h, FlagNames: FlagNames(h.Flags)}
	off := h.bodyEnd()
	if img.Protected, img.Unprotected, err = parseTLVAreas(data[off:], off, len(data), h); err != nil {
		return nil, err
	}
	end := img.End()
	img.Padding = len(data) - end
	if img.Padding > 0 {
		if t, ok := ParseTrailer(data); ok && t.Offset >= end {
			img.Trailer = t
		}
	}
	return img, nil
}

// bodyEnd is where the body ends and the TLV areas start: hdr_size + img_size.
func (h Header) bodyEnd() int { return int(h.HeaderSize) + int(h.ImageSize) }

// parseHeader decodes and checks the header of an image of total bytes from b, its first
// min(total, HeaderSize) bytes: the magic, the sizes, and room for the body and a TLV area.
func parseHeader(b []byte, total int) (Header, error) {
	if total < 4 {
		return Header{}, fmt.Errorf("%w: %d bytes, shorter than the 4-byte magic", ErrTruncated, total)
	}
	le := binary.LittleEndian
	if m := le.Uint32(b); m != Magic {
		switch {
		case m == MagicV1:
			return Header{}, fmt.Errorf("%w: magic at offset 0x0 is 0x%08x, the legacy v1 magic (unsupported)", ErrBadMagic, m)
		case binary.BigEndian.Uint32(b) == Magic:
			return Header{}, fmt.Errorf("%w: magic at offset 0x0 is big-endian (imgtool --endian big, unsupported)", ErrBadMagic)
		}
		return Header{}, fmt.Errorf("%w: magic at offset 0x0 is 0x%08x, want 0x%08x", ErrBadMagic, m, Magic)
	}
	if total < HeaderSize {
		return Header{}, fmt.Errorf("%w: %d bytes, shorter than the %d-byte header", ErrTruncated, total, HeaderSize)
	}
	if total > MaxSize {
		return Header{}, fmt.Errorf("%w: %d bytes is more than the %d this tool reads", ErrTooLarge, total, MaxSize)
	}
	h := decodeHeader(b)
	if h.HeaderSize < HeaderSize {
		return Header{}, fmt.Errorf("%w: hdr_size (offset 0x8) is %d, less than %d", ErrMalformed, h.HeaderSize, HeaderSize)
	}
	off := uint64(h.HeaderSize) + uint64(h.ImageSize)
	if off > uint64(total) {
		return Header{}, fmt.Errorf("%w: hdr_size 0x%x + img_size 0x%x = 0x%x is past the end of the data (0x%x bytes)",
			ErrTruncated, h.HeaderSize, h.ImageSize, off, total)
	}
	if off+TLVInfoSize > uint64(total) {
		return Header{}, fmt.Errorf("%w: no TLV area: the data ends at 0x%x, right after the image body", ErrTruncated, total)
	}
	return h, nil
}

// parseTLVAreas parses the TLV areas at offset off (the end of the body) of data whose
// length is total: the protected area, if there is one, and the unprotected one. b holds
// data from off on: at least the 4-byte info header, and every area and info header that
// fits in total.
func parseTLVAreas(b []byte, off, total int, h Header) (*TLVArea, TLVArea, error) {
	var prot *TLVArea
	base := off
	if binary.LittleEndian.Uint16(b) == TLVProtInfoMagic {
		area, err := parseArea(b, off, total, TLVProtInfoMagic, "protected TLV area")
		if err != nil {
			return nil, TLVArea{}, err
		}
		if area.Size != h.ProtectedTLVSize {
			return nil, TLVArea{}, fmt.Errorf("%w: protected TLV area at 0x%x is 0x%x bytes, but the header's protected_tlv_size (offset 0xa) says 0x%x",
				ErrMalformed, off, area.Size, h.ProtectedTLVSize)
		}
		prot = area
		off += int(area.Size)
		if off+TLVInfoSize > total {
			return nil, TLVArea{}, fmt.Errorf("%w: no TLV area: the data ends at 0x%x, right after the protected TLV area", ErrTruncated, total)
		}
	} else if h.ProtectedTLVSize != 0 {
		return nil, TLVArea{}, fmt.Errorf("%w: the header's protected_tlv_size (offset 0xa) is 0x%x, but there is no protected TLV area at 0x%x (magic 0x%04x, want 0x%04x)",
			ErrMalformed, h.ProtectedTLVSize, off, binary.LittleEndian.Uint16(b), TLVProtInfoMagic)
	}
	area, err := parseArea(b[off-base:], off, total, TLVInfoMagic, "TLV area")
	if err != nil {
		return nil, TLVArea{}, err
	}
	return prot, *area, nil
}

// parseArea parses the TLV area at offset off of data whose length is total; b holds data
// from off on (at least the 4-byte info header, and the whole area when it fits in total).
func parseArea(b []byte, off, total int, magic uint16, what string) (*TLVArea, error) {
	le := binary.LittleEndian
	a := &TLVArea{Offset: off, Magic: le.Uint16(b), Size: le.Uint16(b[2:])}
	if a.Magic != magic {
		return nil, fmt.Errorf("%w: %s info magic at offset 0x%x is 0x%04x, want 0x%04x", ErrMalformed, what, off, a.Magic, magic)
	}
	if a.Size < TLVInfoSize {
		return nil, fmt.Errorf("%w: %s at 0x%x: total length 0x%x is shorter than its own info header", ErrMalformed, what, off, a.Size)
	}
	end := off + int(a.Size)
	if end > total {
		return nil, fmt.Errorf("%w: %s at 0x%x is 0x%x bytes, ending at 0x%x, past the end of the data (0x%x bytes)",
			ErrTruncated, what, off, a.Size, end, total)
	}
	a.Records = []TLV{}
	for p := off + TLVInfoSize; p < end; {
		if p+TLVHeaderSize > end {
			return nil, fmt.Errorf("%w: %s: TLV header at 0x%x overruns the area, which ends at 0x%x", ErrMalformed, what, p, end)
		}
		t := TLV{Offset: p, Type: le.Uint16(b[p-off:]), Len: int(le.Uint16(b[p-off+2:]))}
		t.Name = TLVName(t.Type)
		d := p + TLVHeaderSize
		if d+t.Len > end {
			return nil, fmt.Errorf("%w: %s: %s TLV (type 0x%x) at 0x%x has length 0x%x, overrunning the area, which ends at 0x%x",
				ErrMalformed, what, t.Name, t.Type, p, t.Len, end)
		}
		t.Data = bytes.Clone(b[d-off : d-off+t.Len])
		a.Records = append(a.Records, t)
		p = d + t.Len
	}
	return a, nil
}

// Hash returns the image hash TLV's value (SHA256, SHA384 or SHA512): what MCUboot and mcumgr
// name an image by in their image lists. Nil when the image has none.
func (img *Image) Hash() []byte {
	for _, t := range []uint16{TLVSHA256, TLVSHA384, TLVSHA512} {
		if tlv := img.Find(t); tlv != nil {
			return tlv.Data
		}
	}
	return nil
}
