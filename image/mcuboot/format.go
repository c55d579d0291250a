// Package mcuboot reads, writes and checks MCUboot images: the 32-byte image header, the
// protected and unprotected TLV areas, and the image trailer at the end of a slot. Images are
// byte-compatible with those of imgtool 2.4.0 (mcu-tools/mcuboot): for the same input, key and
// options, Sign produces the same bytes as `imgtool sign`, apart from signatures that are
// randomized (ECDSA, RSA-PSS); Ed25519 images are identical byte for byte.
//
// Keys are the PEM files of package image (imgtool's formats). Only little-endian images are
// written and read (imgtool's default; `imgtool --endian big` is not supported).
//
// MCU images are small, so Parse, Verify and VerifyTrusted work in memory; MaxSize caps what
// is accepted. Reader checks an image as it streams into a slot (the hash and signature at the
// end, before the last bytes are handed out), holding only the TLV areas.
package mcuboot

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/aduflash/aduflash/image"
	"github.com/aduflash/aduflash/internal/errkind"
)

// Header layout constants.
const (
	// Magic is ih_magic of a current (v2) MCUboot image, stored little-endian.
	Magic uint32 = 0x96f3b83d
	// MagicV1 is the legacy v1 magic, which this package recognises but does not read.
	MagicV1 uint32 = 0x96f3b83c
	// HeaderSize is the size of the fixed header; ih_hdr_size may be larger (padding).
	HeaderSize = 32
	// MaxSize caps the images and payloads this package accepts (128 MiB), far above any MCU slot.
	MaxSize = 128 << 20
)

// Header flags (ih_flags).
const (
	FlagPIC                uint32 = 0x0000001
	FlagEncryptedAES128    uint32 = 0x0000004
	FlagEncryptedAES256    uint32 = 0x0000008
	FlagNonBootable        uint32 = 0x0000010
	FlagRAMLoad            uint32 = 0x0000020
	FlagROMFixed           uint32 = 0x0000100
	FlagCompressedLZMA1    uint32 = 0x0000200
	FlagCompressedLZMA2    uint32 = 0x0000400
	FlagCompressedARMThumb uint32 = 0x0000800
)

var flagNames = []struct {
	name string
	bit  uint32
}{
	{"PIC", FlagPIC},
	{"ENCRYPTED_AES128", FlagEncryptedAES128},
	{"ENCRYPTED_AES256", FlagEncryptedAES256},
	{"NON_BOOTABLE", FlagNonBootable},
	{"RAM_LOAD", FlagRAMLoad},
	{"ROM_FIXED", FlagROMFixed},
	{"COMPRESSED_LZMA1", FlagCompressedLZMA1},
	{"COMPRESSED_LZMA2", FlagCompressedLZMA2},
	{"COMPRESSED_ARM_THUMB", FlagCompressedARMThumb},
}

// FlagNames returns imgtool's names of the flags set in f; bits without a name are shown as hex.
func FlagNames(f uint32) []string {
	var names []string
	for _, n := range flagNames {
		if f&n.bit != 0 {
			names = append(names, n.name)
			f &^= n.bit
		}
	}
	for bit := uint32(1); bit != 0; bit <<= 1 {
		if f&bit != 0 {
			names = append(names, fmt.Sprintf("0x%x", bit))
		}
	}
	return names
}

// TLV area magics and sizes.
const (
	TLVInfoMagic     uint16 = 0x6907 // unprotected TLV area
	TLVProtInfoMagic uint16 = 0x6908 // protected TLV area (covered by the image hash)
	TLVInfoSize             = 4      // {u16 magic, u16 total length including this info}
	TLVHeaderSize           = 4      // {u16 type, u16 length}
)

// TLV types, as imgtool 2.4.0 numbers them.
const (
	TLVKeyHash         uint16 = 0x01
	TLVPubKey          uint16 = 0x02
	TLVSHA256          uint16 = 0x10
	TLVSHA384          uint16 = 0x11
	TLVSHA512          uint16 = 0x12
	TLVRSA2048         uint16 = 0x20
	TLVECDSASig        uint16 = 0x22
	TLVRSA3072         uint16 = 0x23
	TLVEd25519         uint16 = 0x24
	TLVSigPure         uint16 = 0x25
	TLVEncRSA2048      uint16 = 0x30
	TLVEncKW           uint16 = 0x31
	TLVEncEC256        uint16 = 0x32
	TLVEncX25519       uint16 = 0x33
	TLVEncX25519SHA512 uint16 = 0x34
	TLVDependency      uint16 = 0x40
	TLVSecCnt          uint16 = 0x50
	TLVBootRecord      uint16 = 0x60
	TLVDecompSize      uint16 = 0x70
	TLVDecompSHA       uint16 = 0x71
	TLVDecompSignature uint16 = 0x72
	TLVCompDecSize     uint16 = 0x73
	TLVUUIDVID         uint16 = 0x74
	TLVUUIDCID         uint16 = 0x75

	// TLVVendorMin and TLVVendorMax bound the types imgtool accepts for custom TLVs.
	TLVVendorMin uint16 = 0x00a0
	TLVVendorMax uint16 = 0xfffe
)

var tlvNames = map[uint16]string{
	TLVKeyHash: "KEYHASH", TLVPubKey: "PUBKEY",
	TLVSHA256: "SHA256", TLVSHA384: "SHA384", TLVSHA512: "SHA512",
	TLVRSA2048: "RSA2048", TLVECDSASig: "ECDSASIG", TLVRSA3072: "RSA3072", TLVEd25519: "ED25519",
	TLVSigPure:    "SIG_PURE",
	TLVEncRSA2048: "ENCRSA2048", TLVEncKW: "ENCKW", TLVEncEC256: "ENCEC256",
	TLVEncX25519: "ENCX25519", TLVEncX25519SHA512: "ENCX25519_SHA512",
	TLVDependency: "DEPENDENCY", TLVSecCnt: "SEC_CNT", TLVBootRecord: "BOOT_RECORD",
	TLVDecompSize: "DECOMP_SIZE", TLVDecompSHA: "DECOMP_SHA", TLVDecompSignature: "DECOMP_SIGNATURE",
	TLVCompDecSize: "COMP_DEC_SIZE", TLVUUIDVID: "UUID_VID", TLVUUIDCID: "UUID_CID",
}

// TLVName returns imgtool's name of a TLV type, or "UNKNOWN" as `imgtool dumpinfo` prints it.
func TLVName(t uint16) string {
	if n, ok := tlvNames[t]; ok {
		return n
	}
	return "UNKNOWN"
}

// Version is the image version maj.min.rev+build of the header.
type Version struct {
	Major    uint8
	Minor    uint8
	Revision uint16
	Build    uint32
}

// String formats v as imgtool prints it: "1.2.3+4" (always with all four parts).
func (v Version) String() string {
	return fmt.Sprintf("%d.%d.%d+%d", v.Major, v.Minor, v.Revision, v.Build)
}

// Short formats v as MCUboot and mcumgr image lists show it: "1.2.3", with ".4" after it for
// a build number that is not 0.
func (v Version) Short() string {
	s := fmt.Sprintf("%d.%d.%d", v.Major, v.Minor, v.Revision)
	if v.Build != 0 {
		s += fmt.Sprintf(".%d", v.Build)
	}
	return s
}

// MarshalText implements encoding.TextMarshaler (JSON shows the version as "1.2.3+4").
func (v Version) MarshalText() ([]byte, error) { return []byte(v.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler with ParseVersion.
func (v *Version) UnmarshalText(b []byte) error {
	p, err := ParseVersion(string(b))
	if err != nil {
		return err
	}
	*v = p
	return nil
}

// Less reports whether v is older than w, comparing major, minor, revision and then build.
func (v Version) Less(w Version) bool {
	if v.Major != w.Major {
		return v.Major < w.Major
	}
	if v.Minor != w.Minor {
		return v.Minor < w.Minor
	}
	if v.Revision != w.Revision {
		return v.Revision < w.Revision
	}
	return v.Build < w.Build
}

// ParseVersion parses "maj.min.rev+build" with later parts optional ("1", "1.2", "1.2.3",
// "1.2.3+4"), as imgtool's decode_version does: decimal numbers without leading zeros. It
// also checks the ranges of the header fields (major and minor 0–255, revision 0–65535,
// build 0–4294967295), which imgtool only discovers when packing the header.
func ParseVersion(s string) (Version, error) {
	bad := func(why string) (Version, error) {
		return Version{}, fmt.Errorf("invalid version %q: %s (want maj.min.rev+build with later parts optional)", s, why)
	}
	rest := s
	var build string
	if i := strings.IndexByte(rest, '+'); i >= 0 {
		rest, build = rest[:i], rest[i+1:]
	}
	parts := strings.Split(rest, ".")
	if len(parts) > 3 {
		return bad("too many parts")
	}
	if build != "" || strings.Contains(s, "+") {
		if len(parts) != 3 {
			return bad("+build needs maj.min.rev before it")
		}
		parts = append(parts, build)
	}
	limits := []uint64{0xff, 0xff, 0xffff, 0xffffffff}
	names := []string{"major", "minor", "revision", "build"}
	var n [4]uint64
	for i, p := range parts {
		if p == "" {
			return bad("empty " + names[i])
		}
		for _, c := range p {
			if c < '0' || c > '9' {
				return bad(names[i] + " is not a decimal number")
			}
		}
		if len(p) > 1 && p[0] == '0' {
			return bad(names[i] + " has a leading zero")
		}
		v, err := strconv.ParseUint(p, 10, 64)
		if err != nil || v > limits[i] {
			return bad(fmt.Sprintf("%s %s is out of range 0..%d", names[i], p, limits[i]))
		}
		n[i] = v
	}
	return Version{Major: uint8(n[0]), Minor: uint8(n[1]), Revision: uint16(n[2]), Build: uint32(n[3])}, nil
}

// AutoSecurityCounter is the security counter `imgtool sign -s auto` derives from a version:
// major<<24 | minor<<16 | revision (the build number is not part of it).
func AutoSecurityCounter(v Version) uint32 {
	return uint32(v.Major)<<24 + uint32(v.Minor)<<16 + uint32(v.Revision)
}

// Header is the fixed 32-byte image header.
type Header struct {
	Magic            uint32  `json:"magic"`
	LoadAddr         uint32  `json:"load_addr"`
	HeaderSize       uint16  `json:"hdr_size"`
	ProtectedTLVSize uint16  `json:"protected_tlv_size"`
	ImageSize        uint32  `json:"img_size"`
	Flags            uint32  `json:"flags"`
	Version          Version `json:"version"`
}

// MarshalBinary encodes the header as its 32 little-endian bytes (the pad word is zero).
func (h Header) MarshalBinary() ([]byte, error) {
	b := make([]byte, HeaderSize)
	le := binary.LittleEndian
	le.PutUint32(b[0:], h.Magic)
	le.PutUint32(b[4:], h.LoadAddr)
	le.PutUint16(b[8:], h.HeaderSize)
	le.PutUint16(b[10:], h.ProtectedTLVSize)
	le.PutUint32(b[12:], h.ImageSize)
	le.PutUint32(b[16:], h.Flags)
	b[20] = h.Version.Major
	b[21] = h.Version.Minor
	le.PutUint16(b[22:], h.Version.Revision)
	le.PutUint32(b[24:], h.Version.Build)
	return b, nil
}

func decodeHeader(b []byte) Header {
	le := binary.LittleEndian
	return Header{
		Magic:            le.Uint32(b[0:]),
		LoadAddr:         le.Uint32(b[4:]),
		HeaderSize:       le.Uint16(b[8:]),
		ProtectedTLVSize: le.Uint16(b[10:]),
		ImageSize:        le.Uint32(b[12:]),
		Flags:            le.Uint32(b[16:]),
		Version: Version{
			Major:    b[20],
			Minor:    b[21],
			Revision: le.Uint16(b[22:]),
			Build:    le.Uint32(b[24:]),
		},
	}
}

// Hex is a byte string that JSON shows as lower-case hex, as `imgtool dumpinfo -f json` does.
type Hex []byte

// MarshalText implements encoding.TextMarshaler.
func (h Hex) MarshalText() ([]byte, error) { return []byte(hex.EncodeToString(h)), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (h *Hex) UnmarshalText(b []byte) error {
	d, err := hex.DecodeString(string(b))
	if err != nil {
		return err
	}
	*h = d
	return nil
}

// Errors of Parse, Verify and Sign. Callers test them with errors.Is; the messages name the
// offset or field at fault. ErrBadOptions is a usage error (errkind.Usage: the options are
// the caller's arguments); the others are verdicts on the input, and all but ErrBadInput
// verdicts on an image (Rejected).
var (
	// ErrBadMagic: the data does not start with the MCUboot image magic.
	ErrBadMagic = reject("not an MCUboot image (bad magic)")
	// ErrTruncated: the data ends before the header, body or TLV area it declares.
	ErrTruncated = reject("truncated MCUboot image")
	// ErrMalformed: the header or TLV area is inconsistent (TLV info magic, lengths, sizes).
	ErrMalformed = reject("malformed MCUboot image")
	// ErrHashMismatch: the hash TLV does not match header, body and protected TLVs.
	ErrHashMismatch = reject("image hash mismatch")
	// ErrKeyMismatch: the image carries no signature for the given key (other key hash, other
	// key type, or no signature at all).
	ErrKeyMismatch = reject("no signature for the given key")
	// ErrBadSignature: the signature made for the given key does not verify. It also matches
	// image.ErrBadSignature.
	ErrBadSignature = fmt.Errorf("%w", image.ErrBadSignature)
	// ErrTooLarge: the signed image and its trailer do not fit the slot, or the input exceeds MaxSize.
	ErrTooLarge = reject("image too large")
	// ErrBadInput: the payload cannot be signed with the given options (e.g. the header area
	// holds data without --pad-header).
	ErrBadInput = errkind.New(errkind.Input, "invalid input")
	// ErrBadOptions: a sign or trailer option is out of range or contradicts another.
	ErrBadOptions = errkind.New(errkind.Usage, "invalid MCUboot options")
)

// rejection is this package's verdict on an image: invalid input (errkind.Input) that
// Rejected recognises.
type rejection struct{ text string }

func (e *rejection) Error() string           { return e.text }
func (e *rejection) ErrorKind() errkind.Kind { return errkind.Input }

func reject(text string) error { return &rejection{text: text} }

// Rejected reports whether err is this package's verdict that an image is bad (its bytes,
// its hash, its signature or its size), as opposed to a failure to read it: callers map the
// first to "invalid input".
func Rejected(err error) bool {
	var r *rejection
	return errors.As(err, &r) || errors.Is(err, ErrBadSignature)
}
