package image

import (
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/aduflash/aduflash/internal/enumname"
	"github.com/aduflash/aduflash/internal/errkind"
)

// Format constants of aduimg format version 1. docs/aduimg.md is the normative description.
const (
	// Magic is the first 8 bytes of every aduimg image.
	Magic = "\x89ADUIMG\n"
	// FormatVersion is the format version this package writes and reads.
	FormatVersion = 1

	// DefaultChunkSize is the raw chunk size Sign uses when SignOptions.ChunkSize is 0.
	DefaultChunkSize = 1 << 20
	// MinChunkSize and MaxChunkSize bound the chunk size; it must also be a multiple of ChunkAlign.
	MinChunkSize = 4 << 10
	MaxChunkSize = 64 << 20
	// ChunkAlign: chunk sizes are multiples of it, so chunks start on 4 KiB boundaries of the slot.
	ChunkAlign = 4 << 10

	// MaxHeaderSize caps the header (fixed part, metadata, chunk table, signature block).
	MaxHeaderSize = 16 << 20
	// MaxMetadataSize caps the metadata block.
	MaxMetadataSize = 1 << 20
	// SignatureSlotSize is the size of the fixed signature slot at the end of the header.
	SignatureSlotSize = 512

	// MaxZstdWindow caps the zstd window of every frame (besides the chunk size).
	MaxZstdWindow = 8 << 20

	// Limits of metadata strings, in bytes.
	MaxVersionLen   = 255   // Version: 1..255
	MaxSlotClassLen = 255   // SlotClass: 0..255
	MaxKeyLen       = 255   // compatibility and meta keys: 1..255
	MaxValueLen     = 65535 // compatibility and meta values: 0..65535

	prefixSize     = 16  // magic, version, reserved, header size
	fixedSize      = 104 // prefix and fixed fields up to the metadata block
	chunkEntrySize = 48
	sigBlockSize   = 4 + SignatureSlotSize
	minMetadata    = 2 + 1 + 2 + 2 + 2 // a 1-byte version, empty slot class, no pairs
	minHeaderSize  = fixedSize + minMetadata + sigBlockSize
	maxCreated     = 253402300799 // 9999-12-31T23:59:59Z
)

// Errors of the aduimg format. Callers test them with errors.Is; messages name the byte
// offset, chunk or field at fault. Key lookups and signatures fail with ErrUnknownKey,
// ErrRevokedKey and ErrBadSignature from keys.go. All are verdicts on the input
// (errkind.Input); all but ErrInvalidOption are verdicts on an image (Rejected).
var (
	// ErrBadMagic: the stream does not start with Magic.
	ErrBadMagic = reject("aduimg: bad magic (not an aduimg image)")
	// ErrUnsupportedVersion: the header's format version is not FormatVersion.
	ErrUnsupportedVersion = reject("aduimg: unsupported format version")
	// ErrHeaderTooLarge: the header size field exceeds MaxHeaderSize (checked before allocating),
	// or a payload would need a larger header than that.
	ErrHeaderTooLarge = reject("aduimg: header too large")
	// ErrMalformedHeader: a header field is out of range or inconsistent with another.
	ErrMalformedHeader = reject("aduimg: malformed header")
	// ErrChunkHash: a chunk's bytes are not the ones the header signs (hash mismatch, or a frame
	// that does not decode to the chunk's size). The error is a *ChunkError.
	ErrChunkHash = reject("aduimg: chunk hash mismatch")
	// ErrPayloadHash: every chunk matched but the whole-payload SHA-256 did not (a broken signer).
	ErrPayloadHash = reject("aduimg: payload hash mismatch")
	// ErrTruncated: the stream ends inside the header or a frame.
	ErrTruncated = reject("aduimg: truncated image")
	// ErrTrailingData: bytes follow the last frame.
	ErrTrailingData = reject("aduimg: trailing bytes after the last frame")
	// ErrTooLarge: the raw payload is larger than the reader allows (VerifyOptions.MaxRawSize).
	ErrTooLarge = reject("aduimg: image too large for the target")
	// ErrChunkTooLarge: the chunk size is larger than the reader allows
	// (VerifyOptions.MaxChunkSize), i.e. than the device can buffer.
	ErrChunkTooLarge = reject("aduimg: chunk size too large for the reader")
	// ErrDowngrade: the image's security counter is below the device's (Header.CheckDowngrade).
	ErrDowngrade = reject("aduimg: downgrade refused")
	// ErrPayloadSize: Sign's payload is shorter or longer than the size it was given.
	ErrPayloadSize = reject("aduimg: payload size mismatch")
	// ErrInvalidOption: a SignOptions value is out of range.
	ErrInvalidOption = errkind.New(errkind.Input, "aduimg: invalid signing option")
)

// Compression says how chunks are stored: every chunk of a CompressNone image is stored raw;
// a chunk of a CompressZstd image is one zstd frame, or stored raw when zstd does not make it
// smaller (Chunk.Compression tells which).
type Compression uint8

// Compression values, as stored in the header.
const (
	CompressNone Compression = 0
	CompressZstd Compression = 1
)

// ParseCompression parses "none" or "zstd".
func ParseCompression(s string) (Compression, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "none":
		return CompressNone, nil
	case "zstd":
		return CompressZstd, nil
	}
	return 0, fmt.Errorf("%w: compression %q is not one of none, zstd", ErrInvalidOption, s)
}

var compressionNames = []string{CompressNone: "none", CompressZstd: "zstd"}

// String returns "none", "zstd", or "compression(N)" for unknown values.
func (c Compression) String() string { return enumname.Name(c, "compression", compressionNames) }

// MarshalText implements encoding.TextMarshaler.
func (c Compression) MarshalText() ([]byte, error) {
	if c > CompressZstd {
		return nil, fmt.Errorf("aduimg: unknown compression %d", uint8(c))
	}
	return []byte(c.String()), nil
}

// UnmarshalText implements encoding.TextUnmarshaler.
func (c *Compression) UnmarshalText(b []byte) error {
	v, err := ParseCompression(string(b))
	if err != nil {
		return err
	}
	*c = v
	return nil
}

// Digest is a SHA-256 hash; it prints and marshals as lower-case hex.
type Digest [32]byte

// String returns the digest as lower-case hex.
func (d Digest) String() string { return hex.EncodeToString(d[:]) }

// MarshalText implements encoding.TextMarshaler (hex).
func (d Digest) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler (hex).
func (d *Digest) UnmarshalText(b []byte) error {
	if hex.DecodedLen(len(b)) != len(d) {
		return fmt.Errorf("aduimg: digest %q is not %d hex digits", b, 2*len(d))
	}
	_, err := hex.Decode(d[:], b)
	return err
}

// HexBytes is a byte string that marshals as lower-case hex.
type HexBytes []byte

// String returns the bytes as lower-case hex.
func (b HexBytes) String() string { return hex.EncodeToString(b) }

// MarshalText implements encoding.TextMarshaler (hex).
func (b HexBytes) MarshalText() ([]byte, error) { return []byte(b.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler (hex).
func (b *HexBytes) UnmarshalText(t []byte) error {
	v, err := hex.DecodeString(string(t))
	if err != nil {
		return err
	}
	*b = v
	return nil
}

// MarshalText implements encoding.TextMarshaler: a KeyID marshals as its hex form.
func (id KeyID) MarshalText() ([]byte, error) { return []byte(id.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler (the hex form ParseKeyID accepts).
func (id *KeyID) UnmarshalText(b []byte) error {
	v, err := ParseKeyID(string(b))
	if err != nil {
		return err
	}
	*id = v
	return nil
}

// Header is a parsed aduimg header. ParseHeader fills it without checking the signature;
// ReadHeader, NewReader and NewReaderAt return it only after the signature verified.
type Header struct {
	FormatVersion   int               `json:"format_version"`
	Size            int64             `json:"header_size"` // header bytes, signature block included; the first frame starts here
	ImageSize       int64             `json:"image_size"`  // header and all frames: the size of the image file
	KeyID           KeyID             `json:"key_id"`
	KeyType         KeyType           `json:"key_type"`
	Version         string            `json:"version"`
	SlotClass       string            `json:"slot_class,omitempty"`
	Compatibility   map[string]string `json:"compatibility,omitempty"`
	Meta            map[string]string `json:"meta,omitempty"`
	SecurityCounter uint64            `json:"security_counter"`
	Created         time.Time         `json:"created"` // whole seconds, UTC
	Compression     Compression       `json:"compression"`
	ChunkSize       int               `json:"chunk_size"`
	RawSize         int64             `json:"raw_size"`
	PayloadSHA256   Digest            `json:"payload_sha256"`
	Chunks          []Chunk           `json:"chunks"`
	Signature       HexBytes          `json:"signature"`

	raw    []byte  // the exact header bytes parsed or written
	sealed *Header // private deep copy made when the signature verified; nil otherwise
}

// Chunk describes one chunk: where its raw bytes belong in the payload, their SHA-256, and where
// its frame lies in the image file.
type Chunk struct {
	Index       int         `json:"index"`
	RawOffset   int64       `json:"raw_offset"` // offset of the chunk in the raw payload (slot)
	RawSize     int         `json:"raw_size"`   // ChunkSize, or less for the last chunk
	SHA256      Digest      `json:"sha256"`     // of the raw bytes
	Offset      int64       `json:"offset"`     // of the frame, from the start of the image file
	Length      int         `json:"length"`     // of the frame in the image file
	Compression Compression `json:"compression"`
}

// Verified reports whether h came from ReadHeader, NewReader or NewReaderAt, i.e. its
// signature was checked against a keyring.
func (h *Header) Verified() bool { return h.sealed != nil }

// Encoded returns a copy of the exact header bytes (Size bytes) h was parsed from or written as,
// e.g. to keep in a resume journal and check again later with ReadHeader.
func (h *Header) Encoded() []byte { return append([]byte(nil), h.raw...) }

// CheckDowngrade returns an error wrapping ErrDowngrade when the image's security counter is
// below deviceCounter, the lowest counter the device still accepts (equal is accepted).
func (h *Header) CheckDowngrade(deviceCounter uint64) error {
	if h.SecurityCounter < deviceCounter {
		return fmt.Errorf("%w: image %q has security counter %d, below the device's minimum %d",
			ErrDowngrade, h.Version, h.SecurityCounter, deviceCounter)
	}
	return nil
}

func (h *Header) clone() *Header {
	c := *h // raw is shared: nothing writes to it
	c.sealed = nil
	c.Signature = append(HexBytes(nil), h.Signature...)
	c.Chunks = append([]Chunk(nil), h.Chunks...)
	c.Compatibility = cloneMap(h.Compatibility)
	c.Meta = cloneMap(h.Meta)
	return &c
}

func cloneMap(m map[string]string) map[string]string {
	if m == nil {
		return nil
	}
	c := make(map[string]string, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}

// IsImage reports whether prefix starts with the aduimg magic.
func IsImage(prefix []byte) bool {
	return len(prefix) >= len(Magic) && string(prefix[:len(Magic)]) == Magic
}

// Key type codes in the header.
func keyTypeCode(t KeyType) byte {
	for i, k := range KeyTypes {
		if k == t {
			return byte(i + 1)
		}
	}
	return 0
}

func keyTypeFromCode(c byte) (KeyType, bool) {
	switch c {
	case 1:
		return Ed25519, true
	case 2:
		return ECDSAP256, true
	case 3:
		return ECDSAP384, true
	case 4:
		return RSA2048, true
	case 5:
		return RSA3072, true
	}
	return "", false
}

// sigLenOK reports whether a signature of n bytes can belong to key type t.
func sigLenOK(t KeyType, n int) (ok bool, want string) {
	switch t {
	case Ed25519:
		return n == 64, "64"
	case ECDSAP256:
		return n >= 8 && n <= 72, "8..72"
	case ECDSAP384:
		return n >= 8 && n <= 104, "8..104"
	case RSA2048:
		return n == 256, "256"
	case RSA3072:
		return n == 384, "384"
	}
	return false, "?"
}

func chunkCountFor(rawSize uint64, chunkSize uint64) uint64 {
	n := rawSize / chunkSize
	if rawSize%chunkSize != 0 {
		n++
	}
	return n
}

func checkChunkSize(cs uint64) error {
	if cs < MinChunkSize || cs > MaxChunkSize || cs%ChunkAlign != 0 {
		return fmt.Errorf("chunk size %d is not a multiple of %d in [%d, %d]", cs, ChunkAlign, MinChunkSize, MaxChunkSize)
	}
	return nil
}

// identifier checks a version, slot class or key: valid UTF-8 without control characters.
func checkIdent(s string) error {
	if !utf8.ValidString(s) {
		return errors.New("not valid UTF-8")
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return fmt.Errorf("contains control character %U", r)
		}
	}
	return nil
}

func checkValue(s string) error {
	if !utf8.ValidString(s) {
		return errors.New("not valid UTF-8")
	}
	return nil
}

// ---- encoding ----

func le16(b []byte, v uint16) { b[0], b[1] = byte(v), byte(v>>8) }
func le32(b []byte, v uint32) {
	for i := 0; i < 4; i++ {
		b[i] = byte(v >> (8 * i))
	}
}
func le64(b []byte, v uint64) {
	for i := 0; i < 8; i++ {
		b[i] = byte(v >> (8 * i))
	}
}
func get16(b []byte) uint16 { return uint16(b[0]) | uint16(b[1])<<8 }
func get32(b []byte) uint32 {
	return uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24
}
func get64(b []byte) uint64 { return uint64(get32(b)) | uint64(get32(b[4:]))<<32 }

func appendStr(b []byte, s string) []byte {
	var l [2]byte
	le16(l[:], uint16(len(s)))
	return append(append(b, l[:]...), s...)
}

// encodeMetadata builds the metadata block, checking every limit.
func encodeMetadata(version, slotClass string, compat, meta map[string]string) ([]byte, error) {
	if version == "" || len(version) > MaxVersionLen {
		return nil, fmt.Errorf("version %q must be 1..%d bytes", version, MaxVersionLen)
	}
	if err := checkIdent(version); err != nil {
		return nil, fmt.Errorf("version %q: %w", version, err)
	}
	if len(slotClass) > MaxSlotClassLen {
		return nil, fmt.Errorf("slot class %q is longer than %d bytes", slotClass, MaxSlotClassLen)
	}
	if err := checkIdent(slotClass); err != nil {
		return nil, fmt.Errorf("slot class %q: %w", slotClass, err)
	}
	b := appendStr(nil, version)
	b = appendStr(b, slotClass)
	for _, set := range []struct {
		name string
		m    map[string]string
	}{{"compatibility", compat}, {"meta", meta}} {
		if len(set.m) > math.MaxUint16 {
			return nil, fmt.Errorf("%s has %d entries, more than %d", set.name, len(set.m), math.MaxUint16)
		}
		keys := slices.Sorted(maps.Keys(set.m))
		var n [2]byte
		le16(n[:], uint16(len(keys)))
		b = append(b, n[:]...)
		for _, k := range keys {
			v := set.m[k]
			if k == "" || len(k) > MaxKeyLen {
				return nil, fmt.Errorf("%s key %q must be 1..%d bytes", set.name, k, MaxKeyLen)
			}
			if err := checkIdent(k); err != nil {
				return nil, fmt.Errorf("%s key %q: %w", set.name, k, err)
			}
			if len(v) > MaxValueLen {
				return nil, fmt.Errorf("%s[%q] is longer than %d bytes", set.name, k, MaxValueLen)
			}
			if err := checkValue(v); err != nil {
				return nil, fmt.Errorf("%s[%q]: %w", set.name, k, err)
			}
			b = appendStr(b, k)
			b = appendStr(b, v)
		}
	}
	if len(b) > MaxMetadataSize {
		return nil, fmt.Errorf("metadata takes %d bytes, more than %d", len(b), MaxMetadataSize)
	}
	return b, nil
}

func headerSize(metaLen int, chunks uint64) uint64 {
	return fixedSize + uint64(metaLen) + chunkEntrySize*chunks + sigBlockSize
}

// marshalSigned encodes the signed part of h (everything before the signature block).
// meta is the encoded metadata block of h.
func marshalSigned(h *Header, meta []byte) ([]byte, error) {
	code := keyTypeCode(h.KeyType)
	if code == 0 {
		return nil, fmt.Errorf("%w: key type %q", ErrBadKey, h.KeyType)
	}
	hs := headerSize(len(meta), uint64(len(h.Chunks)))
	if hs > MaxHeaderSize {
		return nil, fmt.Errorf("%w: %d chunks and %d bytes of metadata need a %d-byte header, more than %d; use a larger chunk size",
			ErrHeaderTooLarge, len(h.Chunks), len(meta), hs, MaxHeaderSize)
	}
	b := make([]byte, fixedSize, int(hs))
	copy(b, Magic)
	le16(b[8:], FormatVersion)
	le32(b[12:], uint32(hs))
	copy(b[16:32], h.KeyID[:])
	b[32] = code
	b[33] = byte(h.Compression)
	le32(b[36:], uint32(h.ChunkSize))
	le64(b[40:], uint64(h.RawSize))
	le64(b[48:], h.SecurityCounter)
	le64(b[56:], uint64(h.Created.Unix()))
	le32(b[64:], uint32(len(h.Chunks)))
	le32(b[68:], uint32(len(meta)))
	copy(b[72:104], h.PayloadSHA256[:])
	b = append(b, meta...)
	var e [chunkEntrySize]byte
	for _, c := range h.Chunks {
		copy(e[0:32], c.SHA256[:])
		le64(e[32:], uint64(c.Offset))
		le32(e[40:], uint32(c.Length))
		e[44] = byte(c.Compression)
		b = append(b, e[:]...)
	}
	return b, nil
}

func appendSigBlock(b, sig []byte) []byte {
	var blk [sigBlockSize]byte
	le16(blk[0:], uint16(len(sig)))
	copy(blk[4:], sig)
	return append(b, blk[:]...)
}

// ---- parsing ----

func malformed(off int, field, format string, args ...any) error {
	return fmt.Errorf("%w: header offset %d (%s): %s", ErrMalformedHeader, off, field, fmt.Sprintf(format, args...))
}

// checkPrefix validates the first 16 bytes and returns the header size they announce.
func checkPrefix(p []byte) (int, error) {
	if !IsImage(p) {
		return 0, fmt.Errorf("%w: header offset 0: got % x, want % x", ErrBadMagic, p[:min(len(p), len(Magic))], Magic)
	}
	if v := get16(p[8:]); v != FormatVersion {
		return 0, fmt.Errorf("%w: header offset 8: format version %d (this reader supports %d)", ErrUnsupportedVersion, v, FormatVersion)
	}
	if r := get16(p[10:]); r != 0 {
		return 0, malformed(10, "reserved", "must be 0, is %#04x", r)
	}
	hs := get32(p[12:])
	if hs > MaxHeaderSize {
		return 0, fmt.Errorf("%w: header offset 12: header size %d exceeds the limit of %d bytes", ErrHeaderTooLarge, hs, MaxHeaderSize)
	}
	if hs < minHeaderSize {
		return 0, malformed(12, "header size", "%d is below the minimum of %d bytes", hs, minHeaderSize)
	}
	return int(hs), nil
}

// parseHeaderBytes parses and validates a complete header (no signature check).
func parseHeaderBytes(b []byte) (*Header, error) {
	if len(b) < fixedSize {
		return nil, fmt.Errorf("%w: header is %d bytes, shorter than its %d-byte fixed part", ErrTruncated, len(b), fixedSize)
	}
	h, n, ml, err := parseFixed(b[:fixedSize])
	if err != nil {
		return nil, err
	}
	if h.Size != int64(len(b)) {
		return nil, fmt.Errorf("%w: header size field says %d bytes, have %d", ErrTruncated, h.Size, len(b))
	}
	if err := parseMetadata(h, b[fixedSize:fixedSize+ml], fixedSize); err != nil {
		return nil, err
	}
	if err := parseChunks(h, b, fixedSize+ml, n); err != nil {
		return nil, err
	}
	if h.Signature, err = parseSignature(b, h.KeyType); err != nil {
		return nil, err
	}
	h.raw = b
	return h, nil
}

// parseFixed parses and validates the fixed part b (the first fixedSize bytes of a header):
// everything a reader can check before it reads the rest. It returns the header's fixed fields,
// its chunk count and its metadata size.
func parseFixed(b []byte) (h *Header, chunks, metaSize int, err error) {
	hs, err := checkPrefix(b)
	if err != nil {
		return nil, 0, 0, err
	}
	h = &Header{FormatVersion: FormatVersion, Size: int64(hs)}
	copy(h.KeyID[:], b[16:32])
	kt, ok := keyTypeFromCode(b[32])
	if !ok {
		return nil, 0, 0, malformed(32, "key type", "unknown key type code %d", b[32])
	}
	h.KeyType = kt
	h.Compression = Compression(b[33])
	if h.Compression > CompressZstd {
		return nil, 0, 0, malformed(33, "compression", "unknown compression code %d", b[33])
	}
	if r := get16(b[34:]); r != 0 {
		return nil, 0, 0, malformed(34, "reserved", "must be 0, is %#04x", r)
	}
	cs := uint64(get32(b[36:]))
	if err := checkChunkSize(cs); err != nil {
		return nil, 0, 0, malformed(36, "chunk size", "%v", err)
	}
	h.ChunkSize = int(cs)
	raw := get64(b[40:])
	h.SecurityCounter = get64(b[48:])
	created := int64(get64(b[56:]))
	if created < 0 || created > maxCreated {
		return nil, 0, 0, malformed(56, "created", "%d is not a Unix time in 1970..9999", created)
	}
	h.Created = time.Unix(created, 0).UTC()
	n := uint64(get32(b[64:]))
	ml := uint64(get32(b[68:]))
	copy(h.PayloadSHA256[:], b[72:104])
	if want := chunkCountFor(raw, cs); n != want {
		return nil, 0, 0, malformed(64, "chunk count", "%d, but raw size %d in chunks of %d needs %d", n, raw, cs, want)
	}
	// n ≤ 2^32 and cs ≤ 2^26, so raw ≤ n*cs < 2^58: it fits an int64.
	h.RawSize = int64(raw)
	if ml > MaxMetadataSize {
		return nil, 0, 0, malformed(68, "metadata size", "%d exceeds the limit of %d bytes", ml, MaxMetadataSize)
	}
	if want := headerSize(int(ml), n); want != uint64(hs) {
		return nil, 0, 0, malformed(12, "header size", "%d, but %d bytes of metadata and %d chunks make %d", hs, ml, n, want)
	}
	return h, int(n), int(ml), nil
}

// parseChunks parses the n entries of the chunk table, which starts at header offset base of
// b, into h.Chunks and sets h.ImageSize.
func parseChunks(h *Header, b []byte, base, n int) error {
	cs := int64(h.ChunkSize)
	h.Chunks = make([]Chunk, n)
	off := h.Size
	for i := range h.Chunks {
		eo := base + i*chunkEntrySize
		e := b[eo : eo+chunkEntrySize]
		c := &h.Chunks[i]
		c.Index = i
		c.RawOffset = int64(i) * cs
		c.RawSize = int(min(cs, h.RawSize-c.RawOffset))
		copy(c.SHA256[:], e[0:32])
		fo := get64(e[32:])
		fl := get32(e[40:])
		if fo != uint64(off) {
			return malformed(eo+32, fmt.Sprintf("chunk %d frame offset", i), "%d, want %d (frames follow the header back to back)", fo, off)
		}
		c.Offset = off
		c.Length = int(fl)
		c.Compression = Compression(e[44])
		switch c.Compression {
		case CompressNone:
			if c.Length != c.RawSize {
				return malformed(eo+40, fmt.Sprintf("chunk %d frame length", i), "%d, but a stored chunk is its raw size %d", fl, c.RawSize)
			}
		case CompressZstd:
			if h.Compression != CompressZstd {
				return malformed(eo+44, fmt.Sprintf("chunk %d compression", i), "zstd chunk in an image with compression none")
			}
			if c.Length < 1 || c.Length > c.RawSize {
				return malformed(eo+40, fmt.Sprintf("chunk %d frame length", i), "%d, want 1..%d (the raw size)", fl, c.RawSize)
			}
		default:
			return malformed(eo+44, fmt.Sprintf("chunk %d compression", i), "unknown compression code %d", e[44])
		}
		if e[45] != 0 || e[46] != 0 || e[47] != 0 {
			return malformed(eo+45, fmt.Sprintf("chunk %d reserved", i), "must be 0, is % x", e[45:48])
		}
		off += int64(fl)
	}
	h.ImageSize = off
	return nil
}

// parseSignature checks the signature block at the end of the header b (length plausible for
// key type kt, reserved and padding zero) and returns the signature.
func parseSignature(b []byte, kt KeyType) (HexBytes, error) {
	so := len(b) - sigBlockSize
	sl := int(get16(b[so:]))
	if r := get16(b[so+2:]); r != 0 {
		return nil, malformed(so+2, "reserved", "must be 0, is %#04x", r)
	}
	if ok, want := sigLenOK(kt, sl); !ok {
		return nil, malformed(so, "signature length", "%d bytes, a %s signature has %s", sl, kt, want)
	}
	slot := b[so+4:]
	for i := sl; i < len(slot); i++ {
		if slot[i] != 0 {
			return nil, malformed(so+4+i, "signature padding", "must be 0, is %#02x", slot[i])
		}
	}
	return append(HexBytes(nil), slot[:sl]...), nil
}

// parseMetadata parses the metadata block m, which starts at header offset base.
func parseMetadata(h *Header, m []byte, base int) error {
	pos := 0
	str := func(field string, minLen, maxLen int, check func(string) error) (string, error) {
		if len(m)-pos < 2 {
			return "", malformed(base+pos, field, "metadata ends before the length of this string")
		}
		l := int(get16(m[pos:]))
		if l < minLen || l > maxLen {
			return "", malformed(base+pos, field, "length %d, want %d..%d", l, minLen, maxLen)
		}
		if len(m)-pos-2 < l {
			return "", malformed(base+pos, field, "length %d runs past the end of the metadata block", l)
		}
		s := string(m[pos+2 : pos+2+l])
		if err := check(s); err != nil {
			return "", malformed(base+pos+2, field, "%q: %v", s, err)
		}
		pos += 2 + l
		return s, nil
	}
	var err error
	if h.Version, err = str("version", 1, MaxVersionLen, checkIdent); err != nil {
		return err
	}
	if h.SlotClass, err = str("slot class", 0, MaxSlotClassLen, checkIdent); err != nil {
		return err
	}
	for _, name := range []string{"compatibility", "meta"} {
		if len(m)-pos < 2 {
			return malformed(base+pos, name+" count", "metadata ends before this field")
		}
		cnt := int(get16(m[pos:]))
		pos += 2
		var set map[string]string
		prev := ""
		for i := 0; i < cnt; i++ {
			ko := base + pos
			k, err := str(fmt.Sprintf("%s[%d] key", name, i), 1, MaxKeyLen, checkIdent)
			if err != nil {
				return err
			}
			if i > 0 && k <= prev {
				return malformed(ko, fmt.Sprintf("%s[%d] key", name, i), "%q does not sort after %q (keys are unique, in ascending byte order)", k, prev)
			}
			v, err := str(fmt.Sprintf("%s[%q] value", name, k), 0, MaxValueLen, checkValue)
			if err != nil {
				return err
			}
			if set == nil {
				set = make(map[string]string, min(cnt, 64))
			}
			set[k] = v
			prev = k
		}
		if name == "compatibility" {
			h.Compatibility = set
		} else {
			h.Meta = set
		}
	}
	if pos != len(m) {
		return malformed(base+pos, "metadata size", "%d bytes left over after the last field", len(m)-pos)
	}
	return nil
}
