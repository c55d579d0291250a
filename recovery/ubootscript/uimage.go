package ubootscript

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"time"
)

// The legacy U-Boot image header (include/image.h): 64 bytes, big-endian.
const (
	uimageMagic      = 0x27051956 // IH_MAGIC
	uimageHeaderSize = 64
	uimageNameLen    = 32 // IH_NMLEN
	osLinux          = 5  // IH_OS_LINUX
	typeScript       = 6  // IH_TYPE_SCRIPT
	compNone         = 0  // IH_COMP_NONE
)

// The architectures (mkimage -A) a script image may name; U-Boot's source ignores it.
var uimageArch = map[string]byte{"arm": 2, "arm64": 22, "x86": 3, "x86_64": 24, "riscv": 26, "mips": 5, "powerpc": 7}

// ImageOptions are the header fields of a script image.
type ImageOptions struct {
	Name string    // ih_name (mkimage -n), at most 32 bytes
	Arch string    // mkimage -A: "arm" (default), "arm64", "riscv", ...
	Time time.Time // ih_time: mkimage writes $SOURCE_DATE_EPOCH, else the input file's mtime
}

// Image returns the script as a U-Boot script image for `source`, byte for byte what
// `mkimage -A ARCH -O linux -T script -C none -n NAME -d FILE` makes of Text().
func (s *Script) Image(o ImageOptions) ([]byte, error) {
	return ScriptImage([]byte(s.Text()), o)
}

// ScriptImage wraps script text in a legacy image of type script: the 64-byte header (with
// the CRC-32 of itself and of the data), then the data: the table of part lengths (one part,
// then a zero) and the text.
func ScriptImage(text []byte, o ImageOptions) ([]byte, error) {
	arch := o.Arch
	if arch == "" {
		arch = "arm"
	}
	code, ok := uimageArch[arch]
	switch {
	case !ok:
		return nil, fmt.Errorf("%w: image architecture %q", ErrCommand, o.Arch)
	case len(o.Name) > uimageNameLen:
		return nil, fmt.Errorf("%w: image name %q is longer than %d bytes", ErrCommand, o.Name, uimageNameLen)
	case len(text) == 0:
		return nil, fmt.Errorf("%w: an empty script", ErrCommand)
	case int64(len(text)) > 1<<31:
		return nil, fmt.Errorf("%w: a script of %d bytes", ErrCommand, len(text))
	}
	out := make([]byte, uimageHeaderSize+8+len(text))
	data := out[uimageHeaderSize:]
	binary.BigEndian.PutUint32(data[0:], uint32(len(text)))
	copy(data[8:], text)

	h := out[:uimageHeaderSize]
	binary.BigEndian.PutUint32(h[0:], uimageMagic)
	binary.BigEndian.PutUint32(h[8:], uint32(o.Time.Unix()))
	binary.BigEndian.PutUint32(h[12:], uint32(len(data)))
	binary.BigEndian.PutUint32(h[24:], crc32.ChecksumIEEE(data))
	h[28], h[29], h[30], h[31] = osLinux, code, typeScript, compNone
	copy(h[32:], o.Name)
	binary.BigEndian.PutUint32(h[4:], crc32.ChecksumIEEE(h))
	return out, nil
}
