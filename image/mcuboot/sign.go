package mcuboot

import (
	"bytes"
	"cmp"
	"crypto"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/aduflash/aduflash/image"
)

// KeyFormat says how the signing key is named in the image (imgtool --public-key-format).
type KeyFormat string

const (
	// KeyFormatHash adds a KEYHASH TLV: the hash of the public key (the default).
	KeyFormatHash KeyFormat = "hash"
	// KeyFormatFull adds a PUBKEY TLV holding the whole public key (for keys held in hardware).
	KeyFormatFull KeyFormat = "full"
)

// Dependency is a DEPENDENCY TLV: this image needs image number Image at least at Version.
type Dependency struct {
	Image   uint8
	Version Version
}

// CustomTLV is a vendor TLV added to the protected area (imgtool --custom-tlv).
type CustomTLV struct {
	Type  uint16
	Value []byte
}

// SignOptions are imgtool's sign options. The zero value of a field means imgtool's default
// unless its comment says otherwise.
type SignOptions struct {
	// Version is the image version (-v); the zero value is 0.0.0+0.
	Version Version
	// HeaderSize is ih_hdr_size (-H), at least 32; 0 means 32.
	HeaderSize int
	// PadHeader prepends HeaderSize erased bytes to the payload (--pad-header); without it the
	// first HeaderSize bytes of the payload must be zero and are overwritten by the header.
	PadHeader bool
	// LoadAddr (-L): when not 0, the image is loaded to RAM there (flag RAM_LOAD).
	LoadAddr uint32
	// ROMFixed (-F): the flash address the image is built for (flag ROM_FIXED); excludes LoadAddr.
	ROMFixed uint32
	// NonBootable sets the NON_BOOTABLE flag (--non-bootable).
	NonBootable bool

	// SlotSize (-S): when not 0, the image plus its trailer must fit; Pad pads to it.
	SlotSize int
	// Align, MaxAlign, MaxSectors, OverwriteOnly: the trailer options (--align, --max-align, -M,
	// --overwrite-only); see TrailerOptions.
	Align         int
	MaxAlign      int
	MaxSectors    int
	OverwriteOnly bool
	// Pad pads the image to SlotSize with erased bytes and writes the trailer magic (--pad).
	Pad bool
	// Confirm pads and sets image_ok (--confirm). As in imgtool, image_ok is not written for
	// overwrite-only images.
	Confirm bool
	// Test pads, leaving image_ok unset (--test): the same bytes as Pad.
	Test bool
	// ErasedZero: erased flash reads 0x00, not 0xff (-R 0). It fills the header padding and the
	// slot padding.
	ErasedZero bool

	// SecurityCounter, when not nil, adds the protected SEC_CNT TLV (-s); AutoSecurityCounter
	// gives the value of `-s auto`.
	SecurityCounter *uint32
	// Dependencies add protected DEPENDENCY TLVs (-d).
	Dependencies []Dependency
	// BootRecord, when not empty, adds a protected CBOR BOOT_RECORD TLV with this software type
	// (--boot-record, at most 12 characters).
	BootRecord string
	// VID and CID add protected UUID_VID / UUID_CID TLVs (--vid, --cid): a UUID in hex (with or
	// without dashes) or a name (VID: UUIDv5 in the DNS namespace; CID: in the VID's namespace).
	VID, CID string
	// CustomTLVs are added to the protected area in order (--custom-tlv), types 0xa0–0xfffe.
	CustomTLVs []CustomTLV

	// PublicKeyFormat: KeyFormatHash (default, also for "") or KeyFormatFull.
	PublicKeyFormat KeyFormat
	// Hash selects the image hash: 0 (auto: SHA-384 for ecdsa-p384, else SHA-256), 256, 384 or
	// 512, restricted as imgtool restricts it per key type (ed25519 allows 256 and 512).
	Hash int
	// Pure signs the image itself instead of its digest (--pure, ed25519 only; the hash becomes
	// SHA-512 and a SIG_PURE TLV is added).
	Pure bool
	// PadSig pads ECDSA signatures with zeros to 72 (P-256) or 103 (P-384) bytes (--pad-sig,
	// for MCUboot before 1.5).
	PadSig bool
}

// TrailerOptions returns the trailer part of the options.
func (o SignOptions) TrailerOptions() TrailerOptions {
	return TrailerOptions{Align: o.Align, MaxAlign: o.MaxAlign, MaxSectors: o.MaxSectors, OverwriteOnly: o.OverwriteOnly}
}

func (o SignOptions) erased() byte {
	if o.ErasedZero {
		return 0
	}
	return 0xff
}

// hashAlg is one of the image hashes.
type hashAlg struct {
	bits int
	tlv  uint16
	new  func() hash.Hash
}

// sum returns the hash of b.
func (h hashAlg) sum(b []byte) []byte {
	d := h.new()
	d.Write(b)
	return d.Sum(nil)
}

var hashAlgs = map[int]hashAlg{
	256: {256, TLVSHA256, sha256.New},
	384: {384, TLVSHA384, sha512.New384},
	512: {512, TLVSHA512, sha512.New},
}

func hashByTLV(t uint16) (hashAlg, bool) {
	for _, h := range hashAlgs {
		if h.tlv == t {
			return h, true
		}
	}
	return hashAlg{}, false
}

// allowedHashes lists, per key type, the hashes imgtool 2.4.0 accepts; the first is the default.
func allowedHashes(t image.KeyType) []int {
	switch t {
	case image.ECDSAP384:
		return []int{384}
	case image.Ed25519:
		return []int{256, 512}
	default:
		return []int{256}
	}
}

// allowedVerifyHashes is allowedHashes for verification: imgtool accepts SHA-512 with a P-256
// public key too.
func allowedVerifyHashes(t image.KeyType) []int {
	if t == image.ECDSAP256 {
		return []int{256, 512}
	}
	return allowedHashes(t)
}

func sigTLV(t image.KeyType) uint16 {
	switch t {
	case image.Ed25519:
		return TLVEd25519
	case image.RSA2048:
		return TLVRSA2048
	case image.RSA3072:
		return TLVRSA3072
	default:
		return TLVECDSASig
	}
}

// publicKeyBytes is what imgtool hashes into KEYHASH and stores in PUBKEY: PKCS#1 DER for RSA
// keys, SubjectPublicKeyInfo DER for the others.
func publicKeyBytes(pub crypto.PublicKey) ([]byte, error) {
	if k, ok := pub.(*rsa.PublicKey); ok {
		return x509.MarshalPKCS1PublicKey(k), nil
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", image.ErrBadKey, err)
	}
	return der, nil
}

// KeyHash returns the KEYHASH TLV value imgtool computes for pub with the image's hash
// algorithm (256, 384 or 512; 0 means that key type's default): the hash of its public bytes.
func KeyHash(pub crypto.PublicKey, hashBits int) ([]byte, error) {
	t, err := image.TypeOf(pub)
	if err != nil {
		return nil, err
	}
	if hashBits == 0 {
		hashBits = allowedHashes(t)[0]
	}
	h, ok := hashAlgs[hashBits]
	if !ok {
		return nil, fmt.Errorf("%w: hash SHA-%d is not one of 256, 384, 512", ErrBadOptions, hashBits)
	}
	b, err := publicKeyBytes(pub)
	if err != nil {
		return nil, err
	}
	return h.sum(b), nil
}

type tlvBuf struct {
	magic uint16
	buf   []byte
}

func (t *tlvBuf) add(typ uint16, data []byte) {
	t.buf = binary.LittleEndian.AppendUint16(t.buf, typ)
	t.buf = binary.LittleEndian.AppendUint16(t.buf, uint16(len(data)))
	t.buf = append(t.buf, data...)
}

func (t *tlvBuf) bytes() []byte {
	if len(t.buf) == 0 {
		return nil
	}
	b := binary.LittleEndian.AppendUint16(nil, t.magic)
	b = binary.LittleEndian.AppendUint16(b, uint16(TLVInfoSize+len(t.buf)))
	return append(b, t.buf...)
}

// Sign builds a signed MCUboot image from payload (the application binary) as
// `imgtool sign` does. key may be nil for an unsigned image (hash TLV only). The errors wrap
// ErrBadOptions for options out of range or in conflict, ErrBadInput for a payload that
// cannot be signed with them, ErrTooLarge when the image and its trailer exceed SlotSize (or
// the payload exceeds MaxSize), and image.ErrBadKey for unsupported keys.
func Sign(payload []byte, key crypto.Signer, o SignOptions) ([]byte, error) {
	if len(payload) > MaxSize {
		return nil, fmt.Errorf("%w: payload of %d bytes is more than the %d this tool signs", ErrTooLarge, len(payload), MaxSize)
	}
	p, err := newSignPlan(o, key)
	if err != nil {
		return nil, err
	}
	buf, err := p.body(payload)
	if err != nil {
		return nil, err
	}
	pub, err := p.signerKey(key)
	if err != nil {
		return nil, err
	}
	prot, err := p.protectedTLVs(pub.hash)
	if err != nil {
		return nil, err
	}
	buf = append(p.putHeader(buf, len(prot)), prot...)
	tlvs, err := p.tlvs(buf, key, pub)
	if err != nil {
		return nil, err
	}
	return p.fitSlot(append(buf, tlvs...))
}

// signPlan is what Sign decides from the options and the key before it reads the payload.
type signPlan struct {
	SignOptions
	trailer   TrailerOptions
	hdrSize   int
	pad       bool // pad to the slot size and write the trailer magic
	keyFormat KeyFormat
	keyType   image.KeyType // "" without a key
	hash      hashAlg
}

// newSignPlan checks the options and resolves their defaults and the hash.
func newSignPlan(o SignOptions, key crypto.Signer) (*signPlan, error) {
	p := &signPlan{SignOptions: o, hdrSize: cmp.Or(o.HeaderSize, HeaderSize), pad: o.Pad || o.Confirm || o.Test,
		keyFormat: cmp.Or(o.PublicKeyFormat, KeyFormatHash)}
	var err error
	if p.trailer, err = o.TrailerOptions().normalize(); err != nil {
		return nil, err
	}
	switch {
	case p.hdrSize < HeaderSize || p.hdrSize > 0xffff:
		return nil, fmt.Errorf("%w: header size %d is out of range %d..65535", ErrBadOptions, p.hdrSize, HeaderSize)
	case o.LoadAddr != 0 && o.ROMFixed != 0:
		return nil, fmt.Errorf("%w: cannot set the ROM-fixed address and the load address at the same time", ErrBadOptions)
	case o.SlotSize < 0 || (p.pad && o.SlotSize == 0):
		return nil, fmt.Errorf("%w: padding needs a slot size", ErrBadOptions)
	case p.keyFormat != KeyFormatHash && p.keyFormat != KeyFormatFull:
		return nil, fmt.Errorf("%w: public key format %q is not hash or full", ErrBadOptions, p.keyFormat)
	}
	if p.keyType, p.hash, err = chooseHash(o, key); err != nil {
		return nil, err
	}
	return p, nil
}

// chooseHash picks the image hash: the key decides, as imgtool's
// key_and_user_sha_to_alg_and_tlv does (SHA-256 for an unsigned image).
func chooseHash(o SignOptions, key crypto.Signer) (image.KeyType, hashAlg, error) {
	if o.Pure && o.Hash != 0 {
		return "", hashAlg{}, fmt.Errorf("%w: pure signatures use their own hash; do not select one", ErrBadOptions)
	}
	var keyType image.KeyType
	bits := cmp.Or(o.Hash, 256)
	if key != nil {
		var err error
		if keyType, err = image.TypeOf(key.Public()); err != nil {
			return "", hashAlg{}, err
		}
		allowed := allowedHashes(keyType)
		if o.Pure {
			if keyType != image.Ed25519 {
				return "", hashAlg{}, fmt.Errorf("%w: pure signatures need an ed25519 key, not %s", ErrBadOptions, keyType)
			}
			allowed = []int{512}
		}
		switch {
		case o.Hash == 0 || o.Pure:
			bits = allowed[0]
		case !slices.Contains(allowed, o.Hash):
			return "", hashAlg{}, fmt.Errorf("%w: a %s key cannot be used with SHA-%d; allowed: %v", ErrBadOptions, keyType, o.Hash, allowed)
		}
	}
	h, ok := hashAlgs[bits]
	if !ok {
		return "", hashAlg{}, fmt.Errorf("%w: hash SHA-%d is not one of 256, 384, 512", ErrBadOptions, bits)
	}
	return keyType, h, nil
}

// body returns the header area followed by the payload: erased bytes in front of it
// (PadHeader), or the payload's own first HeaderSize bytes, which must be zero.
func (p *signPlan) body(payload []byte) ([]byte, error) {
	buf := make([]byte, 0, p.hdrSize+len(payload)+1024)
	if p.PadHeader {
		buf = append(buf, bytes.Repeat([]byte{p.erased()}, p.hdrSize)...)
		return append(buf, payload...), nil
	}
	if len(payload) < p.hdrSize {
		return nil, fmt.Errorf("%w: the input is %d bytes, shorter than the header size %d (use --pad-header to add the header in front)", ErrBadInput, len(payload), p.hdrSize)
	}
	for i, c := range payload[:p.hdrSize] {
		if c != 0 {
			return nil, fmt.Errorf("%w: header padding was not requested and the input does not start with zeros (byte 0x%x at offset 0x%x is within the 0x%x-byte header; use --pad-header)",
				ErrBadInput, c, i, p.hdrSize)
		}
	}
	return append(buf, payload...), nil
}

// signerKey is the signing key's public bytes (the PUBKEY TLV) and their hash (KEYHASH).
type signerKey struct{ der, hash []byte }

// signerKey returns the key's public bytes and hash; without a key the hash is zeros.
func (p *signPlan) signerKey(key crypto.Signer) (signerKey, error) {
	if key == nil {
		return signerKey{hash: make([]byte, sha256.Size)}, nil
	}
	der, err := publicKeyBytes(key.Public())
	if err != nil {
		return signerKey{}, err
	}
	return signerKey{der: der, hash: p.hash.sum(der)}, nil
}

// protectedTLVs returns the protected TLV area, in imgtool's order: security counter, boot
// record, dependencies, VID, CID, custom TLVs.
func (p *signPlan) protectedTLVs(keyHash []byte) ([]byte, error) {
	prot := tlvBuf{magic: TLVProtInfoMagic}
	if p.SecurityCounter != nil {
		prot.add(TLVSecCnt, binary.LittleEndian.AppendUint32(nil, *p.SecurityCounter))
	}
	if p.BootRecord != "" {
		if n := utf8.RuneCountInString(p.BootRecord); n > 12 {
			return nil, fmt.Errorf("%w: boot record software type %q is too long (%d characters; at most 12)", ErrBadOptions, p.BootRecord, n)
		}
		v := fmt.Sprintf("%d.%d.%d", p.Version.Major, p.Version.Minor, p.Version.Revision)
		prot.add(TLVBootRecord, bootRecord(p.BootRecord, v, "SHA"+strconv.Itoa(p.hash.bits), make([]byte, p.hash.new().Size()), keyHash))
	}
	for _, d := range p.Dependencies {
		v := []byte{d.Image, 0, 0, 0, d.Version.Major, d.Version.Minor}
		v = binary.LittleEndian.AppendUint16(v, d.Version.Revision)
		v = binary.LittleEndian.AppendUint32(v, d.Version.Build)
		prot.add(TLVDependency, v)
	}
	if err := p.addUUIDs(&prot); err != nil {
		return nil, err
	}
	if err := p.addCustomTLVs(&prot); err != nil {
		return nil, err
	}
	b := prot.bytes()
	if len(b) > 0xffff {
		return nil, fmt.Errorf("%w: the protected TLVs take %d bytes, more than 65535", ErrBadOptions, len(b))
	}
	return b, nil
}

// addUUIDs adds the UUID_VID and UUID_CID TLVs (a CID name is hashed in the VID's namespace).
func (p *signPlan) addUUIDs(prot *tlvBuf) error {
	var vid []byte
	if p.VID != "" {
		var err error
		if vid, err = parseUUID(nsDNS, p.VID); err != nil {
			return fmt.Errorf("%w: --vid: %w", ErrBadOptions, err)
		}
		prot.add(TLVUUIDVID, vid)
	}
	if p.CID != "" {
		cid, err := parseUUID(vid, p.CID)
		if err != nil {
			return fmt.Errorf("%w: --cid: %w", ErrBadOptions, err)
		}
		prot.add(TLVUUIDCID, cid)
	}
	return nil
}

// addCustomTLVs adds the vendor TLVs, each type once and in the vendor range.
func (p *signPlan) addCustomTLVs(prot *tlvBuf) error {
	seen := map[uint16]bool{}
	for _, c := range p.CustomTLVs {
		switch {
		case c.Type < TLVVendorMin || c.Type > TLVVendorMax:
			return fmt.Errorf("%w: custom TLV type 0x%04x is not between 0x%04x and 0x%04x", ErrBadOptions, c.Type, TLVVendorMin, TLVVendorMax)
		case seen[c.Type]:
			return fmt.Errorf("%w: custom TLV 0x%x given twice", ErrBadOptions, c.Type)
		case len(c.Value) > 0xffff:
			return fmt.Errorf("%w: custom TLV 0x%x is %d bytes, more than 65535", ErrBadOptions, c.Type, len(c.Value))
		}
		seen[c.Type] = true
		prot.add(c.Type, c.Value)
	}
	return nil
}

// putHeader writes the image header over the header area of buf.
func (p *signPlan) putHeader(buf []byte, protSize int) []byte {
	flags := uint32(0)
	if p.LoadAddr != 0 {
		flags |= FlagRAMLoad
	}
	if p.ROMFixed != 0 {
		flags |= FlagROMFixed
	}
	if p.NonBootable {
		flags |= FlagNonBootable
	}
	h := Header{
		Magic:            Magic,
		LoadAddr:         p.LoadAddr | p.ROMFixed,
		HeaderSize:       uint16(p.hdrSize),
		ProtectedTLVSize: uint16(protSize),
		ImageSize:        uint32(len(buf) - p.hdrSize),
		Flags:            flags,
		Version:          p.Version,
	}
	hb, _ := h.MarshalBinary()
	copy(buf, hb)
	return buf
}

// tlvs returns the TLV area of the image buf (header, payload, protected TLVs): its hash
// and, with a key, the key (its hash or itself) and the signature.
func (p *signPlan) tlvs(buf []byte, key crypto.Signer, pub signerKey) ([]byte, error) {
	digest := p.hash.sum(buf)
	tlv := tlvBuf{magic: TLVInfoMagic}
	tlv.add(p.hash.tlv, digest)
	if p.Pure {
		tlv.add(TLVSigPure, []byte{1})
	}
	if key != nil {
		if p.keyFormat == KeyFormatHash {
			tlv.add(TLVKeyHash, pub.hash)
		} else {
			tlv.add(TLVPubKey, pub.der)
		}
		sig, err := p.signature(key, buf, digest)
		if err != nil {
			return nil, err
		}
		tlv.add(sigTLV(p.keyType), sig)
	}
	if len(tlv.buf)+TLVInfoSize > 0xffff {
		return nil, fmt.Errorf("%w: the TLV area would be more than 65535 bytes", ErrBadOptions)
	}
	return tlv.bytes(), nil
}

// paddedSigSize is the ECDSA signature size --pad-sig pads to (MCUboot before 1.5).
var paddedSigSize = map[image.KeyType]int{image.ECDSAP256: 72, image.ECDSAP384: 103}

// signature signs the image as imgtool does (image.SignMessage): Ed25519 over the image
// digest (imgtool's sign_digest), or over the image itself when pure; ECDSA with SHA-256
// (P-256) or SHA-384 (P-384) over the image, ASN.1 DER; RSA-PSS with SHA-256 and a 32-byte
// salt.
func (p *signPlan) signature(key crypto.Signer, img, digest []byte) ([]byte, error) {
	msg := img
	if p.keyType == image.Ed25519 && !p.Pure {
		msg = digest
	}
	sig, err := image.SignMessage(key, msg)
	if err != nil {
		return nil, err
	}
	if n := paddedSigSize[p.keyType]; p.PadSig && len(sig) < n {
		sig = append(sig, make([]byte, n-len(sig))...)
	}
	return sig, nil
}

// fitSlot checks that the image and its trailer fit SlotSize (when set), and pads the image
// to it when asked.
func (p *signPlan) fitSlot(buf []byte) ([]byte, error) {
	if p.SlotSize <= 0 {
		return buf, nil
	}
	tsize, err := TrailerSize(p.trailer)
	if err != nil {
		return nil, err
	}
	if len(buf)+tsize > p.SlotSize {
		return nil, fmt.Errorf("%w: image size (0x%x) + trailer (0x%x) exceeds requested size 0x%x",
			ErrTooLarge, len(buf), tsize, p.SlotSize)
	}
	if p.pad {
		buf = padTo(buf, p.SlotSize, p.trailer, p.Confirm, p.erased())
	}
	return buf, nil
}

func padTo(buf []byte, slot int, t TrailerOptions, confirm bool, erased byte) []byte {
	out := make([]byte, slot)
	copy(out, buf)
	p := out[len(buf):]
	for i := range p {
		p[i] = erased
	}
	copy(out[slot-MagicSize:], TrailerMagic(t.MaxAlign))
	if confirm && !t.OverwriteOnly {
		out[slot+Layout(t.MaxAlign).ImageOK] = FlagSet
	}
	return out
}

// bootRecord encodes the CBOR map imgtool's create_sw_component_data builds (PSA software
// component: type, version, signer id, measurement description, measurement value), with
// cbor2's canonical-length heads and the keys in imgtool's insertion order.
func bootRecord(swType, version, desc string, measurement, signerID []byte) []byte {
	b := []byte{0xa5}
	b = cborHead(b, 0, 1)
	b = cborText(b, swType)
	b = cborHead(b, 0, 4)
	b = cborText(b, version)
	b = cborHead(b, 0, 5)
	b = cborHead(b, 2, uint64(len(signerID)))
	b = append(b, signerID...)
	b = cborHead(b, 0, 6)
	b = cborText(b, desc)
	b = cborHead(b, 0, 2)
	b = cborHead(b, 2, uint64(len(measurement)))
	return append(b, measurement...)
}

func cborText(b []byte, s string) []byte {
	return append(cborHead(b, 3, uint64(len(s))), s...)
}

func cborHead(b []byte, major byte, n uint64) []byte {
	m := major << 5
	switch {
	case n < 24:
		return append(b, m|byte(n))
	case n <= 0xff:
		return append(b, m|24, byte(n))
	case n <= 0xffff:
		return binary.BigEndian.AppendUint16(append(b, m|25), uint16(n))
	case n <= 0xffffffff:
		return binary.BigEndian.AppendUint32(append(b, m|26), uint32(n))
	}
	return binary.BigEndian.AppendUint64(append(b, m|27), n)
}

// nsDNS is uuid.NAMESPACE_DNS.
var nsDNS = []byte{0x6b, 0xa7, 0xb8, 0x10, 0x9d, 0xad, 0x11, 0xd1, 0x80, 0xb4, 0x00, 0xc0, 0x4f, 0xd4, 0x30, 0xc8}

// imgtool's UUID patterns use the class [0-9A-f], which is every byte from '0' to '9' and 'A'
// to 'f', and re.match anchors them at the start only.
var (
	uuidDashed = regexp.MustCompile("^[0-9A-f]{8}-[0-9A-f]{4}-[0-9A-f]{4}-[0-9A-f]{4}-[0-9A-f]{12}")
	uuidRaw    = regexp.MustCompile("^[0-9A-f]{32}")
)

// parseUUID is imgtool's parse_uuid: a dashed or raw hex UUID, or a printable name hashed
// into a version 5 UUID in namespace ns (an error without one). The result is padded or cut
// to 16 bytes as struct.pack('16s') does.
func parseUUID(ns []byte, v string) ([]byte, error) {
	var u []byte
	switch {
	case uuidDashed.MatchString(v):
		b, err := pyFromHex(strings.ReplaceAll(v, "-", ""))
		if err != nil {
			return nil, fmt.Errorf("UUID %q: %w", v, err)
		}
		u = b
	case uuidRaw.MatchString(v):
		b, err := pyFromHex(v)
		if err != nil {
			return nil, fmt.Errorf("UUID %q: %w", v, err)
		}
		u = b
	case isPrintable(v):
		if ns == nil {
			return nil, fmt.Errorf("unknown namespace for UUID %q (give --vid too)", v)
		}
		h := sha1.New()
		h.Write(ns)
		h.Write([]byte(v))
		u = h.Sum(nil)[:16]
		u[6] = u[6]&0x0f | 0x50
		u[8] = u[8]&0x3f | 0x80
	default:
		return nil, fmt.Errorf("unknown UUID format: %q", v)
	}
	out := make([]byte, 16)
	copy(out, u)
	return out, nil
}

// pyFromHex is bytes.fromhex: hex digit pairs, spaces allowed between pairs.
func pyFromHex(s string) ([]byte, error) {
	s = strings.ReplaceAll(s, " ", "")
	b, err := hex.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("not hex: %w", err)
	}
	return b, nil
}

// isPrintable approximates Python's str.isprintable: no control, format or separator
// characters other than the space.
func isPrintable(s string) bool {
	for _, r := range s {
		if r == ' ' {
			continue
		}
		if !unicode.IsPrint(r) {
			return false
		}
	}
	return utf8.ValidString(s)
}

// ParseDependencies parses imgtool's -d syntax, "(IMAGE_ID,VERSION), ...", as imgtool does.
func ParseDependencies(s string) ([]Dependency, error) {
	images := depImageRe.FindAllStringSubmatch(s, -1)
	if len(images) == 0 {
		return nil, fmt.Errorf("image dependency format is invalid: %q", s)
	}
	versions := depVersionRe.FindAllStringSubmatch(s, -1)
	if len(images) != len(versions) {
		return nil, fmt.Errorf("there's a mismatch between the number of dependency images and versions in %q", s)
	}
	deps := make([]Dependency, len(images))
	for i := range images {
		n, err := strconv.ParseUint(images[i][1], 10, 8)
		if err != nil {
			return nil, fmt.Errorf("dependency image number %s is out of range 0..255", images[i][1])
		}
		v, err := ParseVersion(versions[i][1])
		if err != nil {
			return nil, err
		}
		deps[i] = Dependency{Image: uint8(n), Version: v}
	}
	return deps, nil
}

var (
	depImageRe   = regexp.MustCompile(`\((\d+)`)
	depVersionRe = regexp.MustCompile(`,\s*([0-9.+]+)\)`)
)

// ParseCustomTLV parses a custom TLV as imgtool's --custom-tlv TAG VALUE does: TAG is a number
// (0x… hex allowed) between 0xa0 and 0xfffe; VALUE starting with "0x" is hex, anything else is
// taken as UTF-8 text.
func ParseCustomTLV(tag, value string) (CustomTLV, error) {
	t, err := ParseNumber(tag)
	if err != nil {
		return CustomTLV{}, fmt.Errorf("custom TLV tag %q: %w", tag, err)
	}
	if t < uint64(TLVVendorMin) || t > uint64(TLVVendorMax) {
		if _, known := tlvNames[uint16(t)]; known && t <= 0xffff {
			return CustomTLV{}, fmt.Errorf("custom TLV 0x%x conflicts with predefined TLV %s", t, TLVName(uint16(t)))
		}
		return CustomTLV{}, fmt.Errorf("invalid custom TLV type value 0x%04x, allowed value should be between 0x%04x and 0x%04x", t, TLVVendorMin, TLVVendorMax)
	}
	c := CustomTLV{Type: uint16(t)}
	if rest, ok := strings.CutPrefix(value, "0x"); ok {
		if len(rest)%2 != 0 {
			return CustomTLV{}, fmt.Errorf("custom TLV 0x%x: hex value has an odd length", t)
		}
		b, err := pyFromHex(rest)
		if err != nil {
			return CustomTLV{}, fmt.Errorf("custom TLV 0x%x: %w", t, err)
		}
		c.Value = b
	} else {
		c.Value = []byte(value)
	}
	return c, nil
}

// ParseNumber parses an integer as Python's int(s, 0) does, which is how imgtool reads sizes
// and addresses: decimal without leading zeros, or 0x/0o/0b prefixed, underscores allowed
// between digits.
func ParseNumber(s string) (uint64, error) {
	t := strings.TrimSpace(s)
	if len(t) > 1 && t[0] == '0' {
		switch t[1] {
		case 'x', 'X', 'o', 'O', 'b', 'B':
		default:
			if strings.Trim(t, "0_") != "" {
				return 0, fmt.Errorf("%q is not a valid integer (a leading zero needs 0x, 0o or 0b)", s)
			}
		}
	}
	v, err := strconv.ParseUint(t, 0, 64)
	if err != nil {
		return 0, fmt.Errorf("%q is not a valid integer; use 0x, 0o or 0b prefixes as necessary", s)
	}
	return v, nil
}
